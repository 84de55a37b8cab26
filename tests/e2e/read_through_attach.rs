//! A miss sent the moment the loader (re)attaches is answered by the loader, not by the timeout: the
//! loader must read every request made after its lease was granted.

use std::time::{Duration, Instant};

use redis::{Connection, Value};

use crate::support::read_through::{counter, get_notouch, loader_attached, set_session, timed_get, Stack};

const MISS_TIMEOUT_MS: u64 = 2000;
/// Redis restarts, each followed by a read as soon as the loader is back.
const ROUNDS: usize = 12;

/// A first miss the loader never answered.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug, in the failure message
struct Missed {
    round: usize,
    waited: Duration,
    miss_timeouts: u64,
    reload_requests: u64,
    restores: u64,
    answered_when_asked_again: bool,
}

#[test]
fn the_first_miss_after_the_loader_attaches_is_answered() {
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", &MISS_TIMEOUT_MS.to_string())]);
    let mut con = stack.con();
    let version = set_session(&mut con, "first-miss", "joe");
    stack.wait_mirrored("first-miss", version);
    let expected = get_notouch(&mut con, "first-miss");
    drop(con);

    let mut timed_out = Vec::new();
    for round in 0..ROUNDS {
        stack.redis.restart_empty();
        let mut con = stack.con();
        wait_attached_closely(&mut con);
        let (reply, took) = timed_get(&mut con, "first-miss");
        if reply == Value::Nil {
            let missed = Missed {
                round,
                waited: took,
                miss_timeouts: counter(&mut con, "qsess_miss_timeouts"),
                reload_requests: counter(&mut con, "qsess_reload_requests"),
                restores: counter(&mut con, "qsess_restores"),
                // The loader is alive: asked again, it answers.
                answered_when_asked_again: timed_get(&mut con, "first-miss").0 == expected,
            };
            timed_out.push(missed);
        } else {
            assert_eq!(reply, expected, "round {round}: the session came back different");
            assert!(took < Duration::from_millis(MISS_TIMEOUT_MS), "round {round}: took {took:?}");
        }
    }
    assert!(
        timed_out.is_empty(),
        "{} of {ROUNDS} first misses after the loader attached were not answered by it: {timed_out:#?}",
        timed_out.len()
    );
}

/// Polls `INFO qsess` without pausing until the loader is attached, so that the next command arrives
/// as close after the lease was granted as a client can manage: a real client's miss can come at any
/// moment, including this one.
fn wait_attached_closely(con: &mut Connection) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !loader_attached(con) {
        assert!(Instant::now() < deadline, "the loader did not attach within 30 s");
    }
}
