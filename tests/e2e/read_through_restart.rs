//! Sessions Redis lost come back from the mirror exactly as they were: after Redis restarted empty
//! while the daemon ran, and after a record key was evicted (simulated by `DEL` of the raw key).
//! Owner indexes fill again as the sessions are read, and the restored read itself is not activity.

use redis::{Connection, Value};

use crate::support::read_through::{
    byuser, counter, del_key, exists, get, get_notouch, raw_record, set_session, sorted_handles, Stack,
};
use crate::support::session_keys::{handle_of, session_key_of, user_index_key_of};

/// Generous: a miss must be answered by the loader, never by this timeout.
const LONG_MISS_TIMEOUT_MS: &str = "10000";

/// Sessions of several shapes: owned and anonymous, IPv4 and IPv6, binary data, own timeouts, updated.
fn create_sessions(con: &mut Connection) -> Vec<(&'static str, i64)> {
    let mut created = Vec::new();
    for sid in ["rt-jane-laptop", "rt-jane-phone"] {
        created.push((sid, set_session(con, sid, "jane")));
    }
    let version: i64 = redis::cmd("QSESS.SET")
        .arg("rt-jane-phone")
        .arg("XX")
        .arg("DATA")
        .arg(b"\x00\xffbinary\r\n".as_slice())
        .query(con)
        .unwrap();
    created[1].1 = version;
    let anonymous: i64 = redis::cmd("QSESS.SET")
        .arg("rt-anonymous")
        .arg("DATA")
        .arg("cart=3")
        .arg("IP")
        .arg("2001:db8::1")
        .arg("IDLE")
        .arg(600_000)
        .arg("ABSOLUTE")
        .arg(7_200_000)
        .query(con)
        .unwrap();
    created.push(("rt-anonymous", anonymous));
    let bob: i64 =
        redis::cmd("QSESS.SET").arg("rt-bob").arg("USER").arg("bob").arg("ABSOLUTE").arg(0).query(con).unwrap();
    created.push(("rt-bob", bob));
    created
}

#[test]
fn after_redis_restarts_empty_every_mirrored_session_comes_back_unchanged() {
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", LONG_MISS_TIMEOUT_MS)]);
    let mut con = stack.con();
    let sessions = create_sessions(&mut con);
    for (sid, version) in &sessions {
        stack.wait_mirrored(sid, *version);
    }
    let before: Vec<Value> = sessions.iter().map(|(sid, _)| get_notouch(&mut con, sid)).collect();
    for reply in &before {
        assert!(matches!(reply, Value::Array(fields) if !fields.is_empty()), "{reply:?}");
    }
    drop(con);

    stack.redis.restart_empty();
    stack.wait_loader(true);
    let mut con = stack.con();
    assert!(!exists(&mut con, &session_key_of("rt-jane-laptop")));

    // Listing Jane's sessions reloads all of them from the mirror, before she reads any.
    assert_eq!(byuser(&mut con, "jane"), sorted_handles(&["rt-jane-laptop", "rt-jane-phone"]));
    assert!(exists(&mut con, &session_key_of("rt-jane-laptop")));
    assert_eq!(get(&mut con, "rt-jane-laptop"), before[0], "rt-jane-laptop came back different");
    assert_eq!(get(&mut con, "rt-jane-phone"), before[1], "rt-jane-phone came back different");
    // Sessions of nobody's index come back one read at a time.
    assert_eq!(get(&mut con, "rt-anonymous"), before[2], "rt-anonymous came back different");
    assert_eq!(get(&mut con, "rt-bob"), before[3], "rt-bob came back different");
    assert_eq!(byuser(&mut con, "bob"), sorted_handles(&["rt-bob"]));
    assert_eq!(counter(&mut con, "qsess_restores"), 4);
    assert_eq!(counter(&mut con, "qsess_miss_timeouts"), 0);

    // The restored read was not activity: reading again (a hit now) shows the same record, and
    // nothing reached the change stream.
    for ((sid, _), reply) in sessions.iter().zip(&before) {
        assert_eq!(&get(&mut con, sid), reply, "{sid} changed on its second read");
    }
    assert_eq!(counter(&mut con, "qsess_stream_entries_written"), 0, "a restore or a read wrote a change");
    // One request for Jane's list, one each for the anonymous session and Bob's (read before listed).
    assert_eq!(counter(&mut con, "qsess_reload_requests"), 3);
    stack.daemon.assert_running();
}

#[test]
fn an_evicted_record_and_its_index_entry_come_back_on_the_next_read() {
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", LONG_MISS_TIMEOUT_MS)]);
    let mut con = stack.con();
    let laptop = set_session(&mut con, "ev-laptop", "kim");
    let phone = set_session(&mut con, "ev-phone", "kim");
    stack.wait_mirrored("ev-laptop", laptop);
    stack.wait_mirrored("ev-phone", phone);
    let laptop_before = get_notouch(&mut con, "ev-laptop");
    let phone_before = get_notouch(&mut con, "ev-phone");
    let laptop_score: f64 =
        redis::cmd("ZSCORE").arg(user_index_key_of("kim")).arg(handle_of("ev-laptop")).query(&mut con).unwrap();

    // Only the record is evicted: the index still names it, but BYUSER lists what Redis holds.
    del_key(&mut con, &session_key_of("ev-laptop"));
    assert_eq!(byuser(&mut con, "kim"), sorted_handles(&["ev-phone"]));
    // PEEK never waits and never asks for a reload.
    let peeked: Value = redis::cmd("QSESS.PEEK").arg("ev-laptop").query(&mut con).unwrap();
    assert_eq!(peeked, Value::Nil);
    assert_eq!(counter(&mut con, "qsess_reload_requests"), 0, "PEEK asked for a reload");

    assert_eq!(get(&mut con, "ev-laptop"), laptop_before, "the evicted session came back different");
    assert_eq!(counter(&mut con, "qsess_reload_requests"), 1);
    assert_eq!(byuser(&mut con, "kim"), sorted_handles(&["ev-laptop", "ev-phone"]));
    let score: f64 =
        redis::cmd("ZSCORE").arg(user_index_key_of("kim")).arg(handle_of("ev-laptop")).query(&mut con).unwrap();
    assert_eq!(score, laptop_score, "the index entry is scored by the session's expiry");

    // The record and the whole index are evicted: listing Kim's sessions reloads them from the mirror.
    del_key(&mut con, &session_key_of("ev-phone"));
    del_key(&mut con, &user_index_key_of("kim"));
    assert_eq!(byuser(&mut con, "kim"), sorted_handles(&["ev-laptop", "ev-phone"]));
    assert_eq!(get(&mut con, "ev-phone"), phone_before, "the evicted session came back different");
    let ttl: i64 = redis::cmd("PTTL").arg(session_key_of("ev-phone")).query(&mut con).unwrap();
    assert!(ttl > 0, "the restored record has no expiry: PTTL {ttl}");

    // The stored bytes are the mirror's: a second GET is a plain hit, and nothing was streamed
    // beyond the two creations.
    assert_eq!(get(&mut con, "ev-phone"), phone_before);
    assert_eq!(counter(&mut con, "qsess_reload_requests"), 2);
    assert_eq!(counter(&mut con, "qsess_stream_entries_written"), 2);
    assert!(raw_record(&mut con, "ev-laptop").is_some());
}

#[test]
fn a_restored_session_keeps_its_device_summary_when_the_user_agent_is_not_stored() {
    // With ua-mode none the record keeps only the device summary; the mirror has it in `device`.
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", LONG_MISS_TIMEOUT_MS), ("qsess.ua-mode", "none")]);
    let mut con = stack.con();
    let version = set_session(&mut con, "dev-laptop", "lee");
    let row = stack.wait_mirrored("dev-laptop", version);
    let before = get_notouch(&mut con, "dev-laptop");
    let Value::Array(fields) = &before else { panic!("GET replied {before:?}") };
    assert!(fields.contains(&Value::BulkString(b"device".to_vec())), "no device before: {before:?}");
    assert!(row.user_agent.is_none(), "ua-mode none stored a user agent: {row:?}");

    del_key(&mut con, &session_key_of("dev-laptop"));
    let after = get(&mut con, "dev-laptop");
    assert_ne!(after, Value::Nil, "the session did not come back");
    assert_eq!(after, before, "the restored session lost fields the mirror holds");
}
