//! The three races read-through must never lose: a late `SET ... XX` after logout, a revoke racing a
//! miss reload, and a reload of a row whose delete has not reached Postgres yet. None may bring a
//! revoked session back, in Redis or in the mirror.

use std::time::Duration;

use qsess_tests::{eventually, Daemon};
use redis::{Connection, Value};

use crate::support::mirror::mirror_row;
use crate::support::read_through::{
    answered_within, counter, del_key, exists, get, join_get, pause, raw_record, restore, resume, set_session,
    spawn_get, timed_get, wait_miss_waits, Stack,
};
use crate::support::session_keys::{handle_of, not_found_key_of, session_key_of, tombstone_key_of};

/// Long enough that a waiting GET can only be answered by something the test did.
const MISS_TIMEOUT_MS: &str = "20000";
/// How long a waiting GET may take to be woken once its answer exists.
const WAKE_DEADLINE: Duration = Duration::from_secs(3);

fn late_set_xx(con: &mut Connection, sid: &str) -> Value {
    redis::cmd("QSESS.SET").arg(sid).arg("XX").arg("DATA").arg("late write").query(con).unwrap()
}

#[test]
fn a_late_set_xx_after_logout_writes_nothing_even_after_redis_lost_everything() {
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", MISS_TIMEOUT_MS)]);
    let mut con = stack.con();
    let version = set_session(&mut con, "late", "fay");
    stack.wait_mirrored("late", version);
    let ended: i64 = redis::cmd("QSESS.DEL").arg("late").query(&mut con).unwrap();
    assert_eq!(ended, 1);
    let row = stack.wait_ended("late", "logout");

    let written = counter(&mut con, "qsess_stream_entries_written");
    assert_eq!(late_set_xx(&mut con, "late"), Value::Nil);
    assert!(!exists(&mut con, &session_key_of("late")), "the late write stored a record");
    assert_eq!(counter(&mut con, "qsess_stream_entries_written"), written, "the late write streamed a change");
    let (reply, _) = timed_get(&mut con, "late");
    assert_eq!(reply, Value::Nil);
    assert_eq!(counter(&mut con, "qsess_reload_requests"), 0, "a tombstoned id asked for a reload");

    // Redis loses everything, tombstone included: the mirror still says the session ended.
    drop(con);
    stack.redis.restart_empty();
    stack.wait_loader(true);
    let mut con = stack.con();
    assert_eq!(late_set_xx(&mut con, "late"), Value::Nil);
    assert!(!exists(&mut con, &session_key_of("late")), "the late write stored a record after the restart");
    assert_eq!(counter(&mut con, "qsess_stream_entries_written"), 0, "the late write streamed a change");
    assert_eq!(get(&mut con, "late"), Value::Nil, "the logged-out session came back after the restart");
    assert_eq!(counter(&mut con, "qsess_reload_requests"), 1, "the mirror was not asked");
    assert_eq!(counter(&mut con, "qsess_miss_timeouts"), 0, "answered by the timeout, not the loader");
    assert!(exists(&mut con, &not_found_key_of("late")), "the mirror's answer was not 'not found'");
    assert_eq!(get(&mut con, "late"), Value::Nil);
    assert_eq!(mirror_row(&mut stack.pg, &handle_of("late")).as_ref(), Some(&row), "the mirror row changed");
}

/// A session the mirror holds and Redis lost; a GET of it waits (the daemon is paused) while
/// `revoke` ends it from another connection. The GET must answer nil, the session stay gone, and the
/// mirror end it.
fn revoke_racing_a_reload(revoke: impl FnOnce(&mut Connection)) {
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", MISS_TIMEOUT_MS)]);
    let mut con = stack.con();
    let version = set_session(&mut con, "raced", "gus");
    stack.wait_mirrored("raced", version);
    del_key(&mut con, &session_key_of("raced"));
    let waits = counter(&mut con, "qsess_miss_waits");

    pause(&mut stack.daemon);
    let waiting = spawn_get(&stack.redis, "raced");
    wait_miss_waits(&mut con, waits + 1);
    revoke(&mut con);
    // The revoke answers the waiting client itself, through the tombstone, while the loader sleeps.
    let answered_before_the_loader = answered_within(WAKE_DEADLINE, || waiting.is_finished());
    resume(&mut stack.daemon);
    let (reply, took) = join_get(waiting);
    assert_eq!(reply, Value::Nil, "the GET racing the revoke got the session back (after {took:?})");
    assert!(answered_before_the_loader, "the revoke did not wake the waiting GET; it was answered after {took:?}");

    assert!(exists(&mut con, &tombstone_key_of("raced")), "the revoke left no tombstone");
    assert_eq!(get(&mut con, "raced"), Value::Nil, "the revoked session came back");
    assert!(!exists(&mut con, &session_key_of("raced")));
    eventually(Duration::from_secs(30), "the mirror to end the revoked session", || {
        match mirror_row(&mut stack.pg, &handle_of("raced")) {
            Some(row) if row.ended_ms.is_some() && !row.live => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(get(&mut con, "raced"), Value::Nil, "the revoked session came back");
}

#[test]
fn a_logout_racing_a_miss_reload_wins() {
    revoke_racing_a_reload(|con| {
        let _: i64 = redis::cmd("QSESS.DEL").arg("raced").query(con).unwrap();
    });
}

#[test]
fn a_revoke_by_handle_racing_a_miss_reload_wins() {
    revoke_racing_a_reload(|con| {
        let _: i64 = redis::cmd("QSESS.REVOKE").arg("gus").arg(handle_of("raced")).query(con).unwrap();
    });
}

#[test]
fn a_logout_of_a_session_redis_lost_is_final() {
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", MISS_TIMEOUT_MS)]);
    let mut con = stack.con();
    let version = set_session(&mut con, "lost-then-logout", "hal");
    stack.wait_mirrored("lost-then-logout", version);
    del_key(&mut con, &session_key_of("lost-then-logout"));

    // The user logs out while Redis does not hold the session (it was evicted, or Redis restarted).
    let _: i64 = redis::cmd("QSESS.DEL").arg("lost-then-logout").query(&mut con).unwrap();
    assert_eq!(get(&mut con, "lost-then-logout"), Value::Nil, "the session came back after its logout");
    eventually(Duration::from_secs(30), "the mirror to end the logged-out session", || {
        match mirror_row(&mut stack.pg, &handle_of("lost-then-logout")) {
            Some(row) if row.ended_ms.is_some() && !row.live => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn a_reload_of_a_row_whose_delete_is_not_mirrored_yet_is_refused() {
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", MISS_TIMEOUT_MS)]);
    let mut con = stack.con();
    let version = set_session(&mut con, "unmirrored-del", "ivy");
    stack.wait_mirrored("unmirrored-del", version);
    let record = raw_record(&mut con, "unmirrored-del").expect("the record");

    stack.daemon.terminate();
    let status = stack.daemon.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "qsess-syncd exited with {status}");
    let ended: i64 = redis::cmd("QSESS.DEL").arg("unmirrored-del").query(&mut con).unwrap();
    assert_eq!(ended, 1);
    let row = mirror_row(&mut stack.pg, &handle_of("unmirrored-del")).expect("the row");
    assert!(row.live, "the delete reached the mirror with the daemon stopped: {row:?}");

    // The reload the loader would send, with the row as the mirror still has it.
    assert_eq!(restore(&mut con, &handle_of("unmirrored-del"), &record).as_deref(), Ok("REVOKED"));
    assert!(!exists(&mut con, &session_key_of("unmirrored-del")), "the refused restore wrote the record");
    assert_eq!(get(&mut con, "unmirrored-del"), Value::Nil);

    // The daemon comes back: the session stays gone while it mirrors the delete, and after.
    stack.daemon = Daemon::start(stack.redis.url(), stack.db.url(), &[]);
    stack.wait_loader(true);
    let requests = counter(&mut con, "qsess_reload_requests");
    assert_eq!(get(&mut con, "unmirrored-del"), Value::Nil);
    assert_eq!(counter(&mut con, "qsess_reload_requests"), requests, "a tombstoned id asked for a reload");
    stack.wait_ended("unmirrored-del", "logout");
    assert_eq!(restore(&mut con, &handle_of("unmirrored-del"), &record).as_deref(), Ok("REVOKED"));
    assert_eq!(get(&mut con, "unmirrored-del"), Value::Nil);
}
