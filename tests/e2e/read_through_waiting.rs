//! How a miss waits: once per id however many clients wait, never without a loader (none attached, a
//! dead one whose lease lapsed, inside MULTI or a script), at most `qsess.miss-timeout-ms` when the
//! loader dies meanwhile, and not at all for an id the loader just reported missing.

use std::thread;
use std::time::Duration;

use qsess_tests::{eventually, Daemon};
use redis::Value;

use crate::support::read_through::{
    counter, del_key, exists, get, get_notouch, join_get, pause, redis_with, resume, set_session, spawn_get,
    stream_length, timed_get, wait_miss_waits, Stack,
};
use crate::support::session_keys::{miss_stream_key, not_found_key_of, session_key_of};

/// A wait this long would be obvious next to an immediate answer.
const SLOW_MISS_TIMEOUT_MS: u64 = 5000;
/// What "at once" means on a busy two-core machine, far below [`SLOW_MISS_TIMEOUT_MS`].
const AT_ONCE: Duration = Duration::from_millis(1000);

fn assert_nil_at_once(reply: &Value, took: Duration, what: &str) {
    assert_eq!(reply, &Value::Nil, "{what}");
    assert!(took < AT_ONCE, "{what}: the miss waited {took:?}");
}

#[test]
fn fifty_clients_missing_one_session_cause_one_reload_and_get_the_same_record() {
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", "30000")]);
    let mut con = stack.con();
    let version = set_session(&mut con, "herd", "ann");
    stack.wait_mirrored("herd", version);
    let expected = get_notouch(&mut con, "herd");
    del_key(&mut con, &session_key_of("herd"));
    let requests = counter(&mut con, "qsess_reload_requests");
    let waits = counter(&mut con, "qsess_miss_waits");
    let connections: Vec<_> = (0..50).map(|_| stack.redis.connection()).collect();

    // With the daemon paused, every client is surely waiting when the answer comes.
    pause(&mut stack.daemon);
    let threads: Vec<_> = connections.into_iter().map(|mut con| thread::spawn(move || get(&mut con, "herd"))).collect();
    wait_miss_waits(&mut con, waits + 50);
    assert_eq!(counter(&mut con, "qsess_reload_requests"), requests + 1, "one request for fifty misses");
    assert_eq!(stream_length(&mut con, &miss_stream_key(0)), 1, "one entry on the miss stream");
    resume(&mut stack.daemon);

    for (n, thread) in threads.into_iter().enumerate() {
        let reply = thread.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload));
        assert_eq!(reply, expected, "client {n} got another answer");
    }
    assert_eq!(counter(&mut con, "qsess_reload_requests"), requests + 1);
    assert_eq!(counter(&mut con, "qsess_restores"), 1);
    assert_eq!(counter(&mut con, "qsess_miss_timeouts"), 0);
    assert_eq!(get(&mut con, "herd"), expected);
}

#[test]
fn without_a_loader_a_miss_answers_nil_at_once() {
    let redis = redis_with(&[("qsess.miss-timeout-ms", &SLOW_MISS_TIMEOUT_MS.to_string())]);
    let mut con = redis.connection();
    set_session(&mut con, "no-loader", "bo");
    del_key(&mut con, &session_key_of("no-loader"));
    let (reply, took) = timed_get(&mut con, "no-loader");
    assert_nil_at_once(&reply, took, "a lost session with no daemon ever started");
    let (reply, took) = timed_get(&mut con, "never-existed");
    assert_nil_at_once(&reply, took, "an unknown id with no daemon ever started");
    assert_eq!(counter(&mut con, "qsess_reload_requests"), 0);
    assert!(!exists(&mut con, &miss_stream_key(0)), "a miss was requested with no loader");
}

#[test]
fn after_the_daemon_stops_misses_answer_nil_at_once() {
    let miss_timeout = SLOW_MISS_TIMEOUT_MS.to_string();
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", &miss_timeout)]);
    let mut con = stack.con();
    for sid in ["gone-1", "gone-2"] {
        let version = set_session(&mut con, sid, "cy");
        stack.wait_mirrored(sid, version);
        del_key(&mut con, &session_key_of(sid));
    }

    // A clean stop detaches at once.
    stack.daemon.terminate();
    let status = stack.daemon.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "qsess-syncd exited with {status}");
    assert_eq!(counter(&mut con, "qsess_loader_attached"), 0, "the daemon did not detach on its way out");
    let (reply, took) = timed_get(&mut con, "gone-1");
    assert_nil_at_once(&reply, took, "a lost session after the daemon stopped");

    // A killed daemon holds clients only until its lease lapses.
    stack.daemon = Daemon::start(stack.redis.url(), stack.db.url(), &[]);
    stack.wait_loader(true);
    stack.daemon.kill_9();
    stack.wait_loader(false);
    let requests = counter(&mut con, "qsess_reload_requests");
    let (reply, took) = timed_get(&mut con, "gone-2");
    assert_nil_at_once(&reply, took, "a lost session after the daemon's lease lapsed");
    assert_eq!(counter(&mut con, "qsess_reload_requests"), requests, "a miss was requested with no loader");
}

#[test]
fn inside_multi_and_scripts_a_miss_is_nil_at_once_even_with_a_loader() {
    let miss_timeout = SLOW_MISS_TIMEOUT_MS.to_string();
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", &miss_timeout)]);
    let mut con = stack.con();
    let version = set_session(&mut con, "in-multi", "di");
    stack.wait_mirrored("in-multi", version);
    let expected = get_notouch(&mut con, "in-multi");
    del_key(&mut con, &session_key_of("in-multi"));

    let started = std::time::Instant::now();
    let (reply,): (Value,) = redis::pipe().atomic().cmd("QSESS.GET").arg("in-multi").query(&mut con).unwrap();
    assert_nil_at_once(&reply, started.elapsed(), "QSESS.GET inside MULTI/EXEC");
    let started = std::time::Instant::now();
    let reply: Value = redis::cmd("EVAL")
        .arg("return redis.call('QSESS.GET', KEYS[1])")
        .arg(1)
        .arg("in-multi")
        .query(&mut con)
        .unwrap();
    // A Lua nil reply reaches the client as nil.
    assert_nil_at_once(&reply, started.elapsed(), "QSESS.GET from a script");
    assert_eq!(counter(&mut con, "qsess_reload_requests"), 0, "a miss that cannot wait asked for a reload");

    // Outside a transaction the same miss waits for the loader and gets the session.
    assert!(counter(&mut con, "qsess_loader_attached") == 1);
    assert_eq!(get(&mut con, "in-multi"), expected);
}

#[test]
fn clients_waiting_when_the_daemon_dies_get_nil_at_their_timeout() {
    const MISS_TIMEOUT_MS: u64 = 1500;
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", &MISS_TIMEOUT_MS.to_string())]);
    let mut con = stack.con();
    let version = set_session(&mut con, "orphaned", "ed");
    stack.wait_mirrored("orphaned", version);
    del_key(&mut con, &session_key_of("orphaned"));
    let waits = counter(&mut con, "qsess_miss_waits");

    // The daemon is frozen (lease still held), three clients start waiting, then it dies.
    pause(&mut stack.daemon);
    let threads: Vec<_> = (0..3).map(|_| spawn_get(&stack.redis, "orphaned")).collect();
    wait_miss_waits(&mut con, waits + 3);
    stack.daemon.kill_9();
    for thread in threads {
        let (reply, took) = join_get(thread);
        assert_eq!(reply, Value::Nil, "a client waiting for a dead loader got {reply:?}");
        let timeout = Duration::from_millis(MISS_TIMEOUT_MS);
        assert!(
            took >= timeout - Duration::from_millis(100) && took < timeout + Duration::from_secs(3),
            "the wait took {took:?}, not about the {timeout:?} timeout"
        );
    }
    assert_eq!(counter(&mut con, "qsess_miss_timeouts"), 3);

    // Once the lease lapsed, misses no longer wait.
    stack.wait_loader(false);
    let requests = counter(&mut con, "qsess_reload_requests");
    let (reply, took) = timed_get(&mut con, "orphaned");
    assert_eq!(reply, Value::Nil);
    assert!(took < Duration::from_millis(MISS_TIMEOUT_MS / 2), "the miss waited {took:?} with no loader");
    assert_eq!(counter(&mut con, "qsess_reload_requests"), requests);
}

#[test]
fn an_unknown_id_costs_one_lookup_per_negative_cache_period() {
    let miss_timeout = SLOW_MISS_TIMEOUT_MS.to_string();
    let stack = Stack::start(&[("qsess.miss-timeout-ms", &miss_timeout), ("qsess.negative-cache-ms", "60000")]);
    let mut con = stack.con();
    let (reply, took) = timed_get(&mut con, "random-cookie-1");
    assert_eq!(reply, Value::Nil);
    assert!(took < Duration::from_millis(SLOW_MISS_TIMEOUT_MS / 2), "the loader's answer took {took:?}");
    assert_eq!(counter(&mut con, "qsess_reload_requests"), 1);
    assert_eq!(counter(&mut con, "qsess_miss_timeouts"), 0, "answered by the timeout, not the loader");
    assert!(exists(&mut con, &not_found_key_of("random-cookie-1")), "no negative-cache marker");

    let hits = counter(&mut con, "qsess_negative_cache_hits");
    for _ in 0..10 {
        let (reply, took) = timed_get(&mut con, "random-cookie-1");
        assert_nil_at_once(&reply, took, "a cached unknown id");
    }
    assert_eq!(counter(&mut con, "qsess_reload_requests"), 1, "repeated misses of a known-missing id asked again");
    assert_eq!(counter(&mut con, "qsess_negative_cache_hits"), hits + 10);

    // With a short negative cache, the id is looked up again once its marker lapsed.
    let _: () = redis::cmd("CONFIG").arg("SET").arg("qsess.negative-cache-ms").arg(300).query(&mut con).unwrap();
    assert_eq!(get(&mut con, "random-cookie-2"), Value::Nil);
    assert_eq!(counter(&mut con, "qsess_reload_requests"), 2);
    eventually(Duration::from_secs(10), "the short-lived marker to lapse", || {
        match exists(&mut con, &not_found_key_of("random-cookie-2")) {
            false => Ok(()),
            true => Err("marker still there".to_owned()),
        }
    });
    assert_eq!(get(&mut con, "random-cookie-2"), Value::Nil);
    assert_eq!(counter(&mut con, "qsess_reload_requests"), 3);
}

/// A waiting GET whose key turns out unreadable when it is woken answers the same error, and moves the
/// same counter, as the command itself would: the wake-up answer runs through the commands' guard.
#[test]
fn a_waiting_get_woken_on_a_key_of_another_type_answers_wrongtype_and_counts_an_error() {
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", "30000")]);
    let mut con = stack.con();
    let waits = counter(&mut con, "qsess_miss_waits");
    pause(&mut stack.daemon);
    let mut waiting_con = stack.redis.connection();
    let waiting = thread::spawn(move || redis::cmd("QSESS.GET").arg("wrong-kind").query::<Value>(&mut waiting_con));
    wait_miss_waits(&mut con, waits + 1);
    let errors = counter(&mut con, "qsess_errors");

    // A list push signals the key as ready: the waiter wakes on a key qsess cannot read.
    let session_key = session_key_of("wrong-kind");
    redis::cmd("RPUSH").arg(&session_key).arg("not a record").exec(&mut con).unwrap();
    let reply = waiting.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload));
    resume(&mut stack.daemon);

    let error = reply.expect_err("the woken GET must answer an error");
    assert_eq!(error.code(), Some("WRONGTYPE"), "{error}");
    assert!(error.detail().unwrap_or_default().contains(&session_key), "{error}");
    assert_eq!(counter(&mut con, "qsess_errors"), errors + 1, "the error was not counted");
    assert_eq!(counter(&mut con, "qsess_panics"), 0);
}
