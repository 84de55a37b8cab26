//! The hardening findings that are not about ACLs (those are in access_control.rs): out-of-range restores,
//! a BYUSER that times out, check-then-write holes, bounded work per call and per user, memory under
//! `noeviction`, the id length rule and MONITOR. Each test names the finding it proves fixed.

use std::time::Duration;

use crate::support::commands::{
    send_command_expecting_success, send_command_words, snapshot_of_every_key_dump_and_expiry,
};
use crate::support::server_clock::server_clock_ms;
use crate::support::session_keys::{change_stream_key, handle_of, user_revocation_key};
use crate::support::session_records::restorable_record;
use qsess_record::SessionRecord;
use qsess_tests::RedisServer;
use redis::{Connection, Value};

/// A restore payload owned by "mia", created at `created_ms`, with the given limits.
fn record(version: u64, created_ms: u64, idle_ms: u64, absolute_deadline_ms: u64) -> Vec<u8> {
    let plain = restorable_record(Some(b"mia"), version, created_ms, idle_ms, b"from the mirror");
    SessionRecord { absolute_deadline_ms, ..plain }.encode()
}

fn restore(con: &mut Connection, sid: &str, payload: &[u8]) -> redis::RedisResult<Value> {
    redis::cmd("QSESS.RESTORE").arg(0).arg(handle_of(sid)).arg(payload).query(con)
}

fn digest(con: &mut Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(con).unwrap()
}

/// Finding 2: an immortal or unreplicable restore is refused before anything is written.
#[test]
fn restores_with_out_of_range_times_or_versions_write_nothing_and_replicas_agree() {
    let primary = RedisServer::builder().start();
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_for_sync();
    let mut con = primary.connection();
    let now_ms = server_clock_ms(&mut con) as u64;
    let cases = [
        ("idle reaching u64::MAX", record(1, now_ms, u64::MAX - now_ms, 0)),
        ("idle past i64::MAX", record(1, now_ms, i64::MAX as u64, 0)),
        ("absolute deadline in year 300000", record(1, now_ms, 0, 9_000_000_000_000_000)),
        ("creation in the far future", record(1, u64::MAX / 2, 60_000, 0)),
        ("version that cannot be incremented", record(u64::MAX, now_ms, 60_000, 0)),
        ("version zero", record(0, now_ms, 60_000, 0)),
    ];
    for (what, payload) in cases {
        let before = snapshot_of_every_key_dump_and_expiry(&mut con);
        let error = restore(&mut con, "restored-session-0001", &payload).expect_err(what);
        assert!(error.to_string().contains("out of range"), "{what}: {error}");
        assert_eq!(before, snapshot_of_every_key_dump_and_expiry(&mut con), "{what} wrote something");
    }
    // A sane one still works, and the replica holds exactly what the primary holds.
    let sane = restore(&mut con, "restored-session-0001", &record(3, now_ms, 60_000, 0)).unwrap();
    assert_eq!(sane, Value::SimpleString("RESTORED".into()));
    replica.wait_for_sync();
    assert_eq!(digest(&mut con), digest(&mut replica.connection()));
    assert!(!replica.log().contains("CRITICAL"), "{}", replica.log());
}

/// Finding 3: a BYUSER whose reload never comes answers an array, not nil.
#[test]
fn byuser_of_an_unknown_user_answers_an_array_when_its_reload_times_out() {
    let server = RedisServer::builder().module_arg("miss-timeout-ms", 50).start();
    let mut loader = server.connection();
    // A loader that never answers: the lease is held, nobody restores.
    send_command_expecting_success(&mut loader, &["QSESS.LOADER", "5000"]);
    let mut con = server.connection();
    let reply = send_command_expecting_success(&mut con, &["QSESS.BYUSER", "nobody-known"]);
    assert_eq!(reply, Value::Array(Vec::new()));
    let reply = send_command_expecting_success(&mut con, &["QSESS.BYUSER", "nobody-else", "WITHMETA"]);
    assert_eq!(reply, Value::Array(Vec::new()));
}

/// Finding 6: REVOKEUSER checks the key it writes last before it ends anything.
#[test]
fn revokeuser_with_a_foreign_revocation_key_refuses_before_ending_sessions() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    send_command_expecting_success(&mut con, &["QSESS.SET", "revoked-later-0001", "USER", "42"]);
    send_command_expecting_success(&mut con, &["LPUSH", &user_revocation_key(0, "42"), "not a revocation time"]);
    let before = snapshot_of_every_key_dump_and_expiry(&mut con);
    let error = send_command_words(&mut con, &["QSESS.REVOKEUSER", "42"]).expect_err("foreign r: key");
    assert_eq!(error.code(), Some("WRONGTYPE"), "{error}");
    assert_eq!(before, snapshot_of_every_key_dump_and_expiry(&mut con), "the sessions were ended anyway");
}

/// Finding 6: a change stream whose ids ran out refuses writes before the record or index changes.
#[test]
fn an_exhausted_change_stream_refuses_writes_without_writing_half() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    send_command_expecting_success(&mut con, &["QSESS.SET", "existing-session-01", "USER", "42"]);
    let max_id = "18446744073709551615-18446744073709551615";
    send_command_expecting_success(&mut con, &["XADD", &change_stream_key(0), max_id, "f", "v"]);
    let before = snapshot_of_every_key_dump_and_expiry(&mut con);
    for words in [
        &["QSESS.SET", "fresh-session-0001", "USER", "42", "DATA", "x"][..],
        &["QSESS.SET", "existing-session-01", "DATA", "changed"],
        &["QSESS.DEL", "existing-session-01"],
        &["QSESS.REVOKEUSER", "42"],
    ] {
        let error = send_command_words(&mut con, words).expect_err("no stream id left");
        assert!(error.to_string().contains("can take no more entries"), "{words:?}: {error}");
        assert_eq!(before, snapshot_of_every_key_dump_and_expiry(&mut con), "{words:?} wrote half");
    }
}

/// Finding 7: one user cannot hold more than qsess.max-sessions-per-user sessions, LIMIT still works,
/// and one call ends at most 500 ids.
#[test]
fn sessions_per_user_and_ids_per_call_are_bounded_with_clear_errors() {
    let server = RedisServer::builder().module_arg("max-sessions-per-user", 3).start();
    let mut con = server.connection();
    for n in 0..3 {
        send_command_expecting_success(&mut con, &["QSESS.SET", &format!("capped-session-{n}"), "USER", "42"]);
    }
    let error = send_command_words(&mut con, &["QSESS.SET", "capped-session-3", "USER", "42"]).expect_err("cap");
    assert!(error.to_string().contains("max-sessions-per-user"), "{error}");
    let error = send_command_words(&mut con, &["QSESS.NEW", "USER", "42"]).expect_err("cap");
    assert!(error.to_string().contains("max-sessions-per-user"), "{error}");
    // Moving a session to the full user counts too; updating one of its sessions does not.
    send_command_expecting_success(&mut con, &["QSESS.SET", "other-user-session", "USER", "7"]);
    assert!(send_command_words(&mut con, &["QSESS.SET", "other-user-session", "USER", "42"]).is_err());
    send_command_expecting_success(&mut con, &["QSESS.SET", "capped-session-0", "DATA", "still fine"]);
    // LIMIT makes room itself: the oldest session goes.
    send_command_expecting_success(&mut con, &["QSESS.SET", "capped-session-3", "USER", "42", "LIMIT", "3"]);
    let listed: Vec<String> = redis::cmd("QSESS.BYUSER").arg("42").query(&mut con).unwrap();
    assert_eq!(listed.len(), 3);

    let ids: Vec<String> = (0..501).map(|n| format!("many-ids-{n:04}")).collect();
    let error = redis::cmd("QSESS.DEL").arg(&ids).query::<Value>(&mut con).expect_err("501 ids");
    assert!(error.to_string().contains("at most 500 ids"), "{error}");
    assert_eq!(redis::cmd("QSESS.DEL").arg(&ids[..500]).query::<i64>(&mut con).unwrap(), 0);
}

/// Finding 8: when Redis is full, ids it does not hold cannot be used to fill it; logging out works.
#[test]
fn unknown_ids_cannot_fill_a_full_redis_but_logout_still_works() {
    let server = RedisServer::builder().server_arg("--maxmemory-policy", "noeviction").start();
    let mut con = server.connection();
    send_command_expecting_success(&mut con, &["QSESS.SET", "held-session-0001", "USER", "42"]);
    send_command_expecting_success(&mut con, &["CONFIG", "SET", "maxmemory", "1"]);
    let before = snapshot_of_every_key_dump_and_expiry(&mut con);
    for n in 0..50 {
        let error = send_command_words(&mut con, &["QSESS.DEL", &format!("never-held-{n:04}")]).expect_err("full");
        assert_eq!(error.code(), Some("OOM"), "{error}");
    }
    assert_eq!(before, snapshot_of_every_key_dump_and_expiry(&mut con), "unknown ids wrote tombstones");
    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.DEL", "held-session-0001"]), Value::Int(1));
    send_command_expecting_success(&mut con, &["CONFIG", "SET", "maxmemory", "0"]);
    // With memory back, an unknown id is ended (tombstoned) as before.
    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.DEL", "never-held-0000"]), Value::Int(0));
    let error = send_command_words(&mut con, &["QSESS.SET", "never-held-0000"]).expect_err("tombstoned");
    assert!(error.to_string().contains("revoked"), "{error}");
}

/// Finding 10: the id length rule, a setting operators whose applications choose ids turn on.
#[test]
fn a_minimum_session_id_length_refuses_short_ids_everywhere() {
    let server = RedisServer::builder().module_arg("min-session-id-bytes", 16).start();
    let mut con = server.connection();
    for words in [
        &["QSESS.SET", "short", "DATA", "x"][..],
        &["QSESS.GET", "short"],
        &["QSESS.PEEK", "short"],
        &["QSESS.DEL", "short"],
    ] {
        let error = send_command_words(&mut con, words).expect_err("too short");
        assert!(error.to_string().contains("at least 16 are required"), "{words:?}: {error}");
    }
    send_command_expecting_success(&mut con, &["QSESS.SET", "sixteen-bytes-id", "DATA", "x"]);
    let minted: String = redis::cmd("QSESS.NEW").query(&mut con).unwrap();
    assert!(minted.len() >= 16);
    send_command_expecting_success(&mut con, &["CONFIG", "SET", "qsess.min-session-id-bytes", "1"]);
    send_command_expecting_success(&mut con, &["QSESS.SET", "short", "DATA", "x"]);
}

/// Finding 5: QSESS.NEW's data and address never show in MONITOR.
#[test]
fn monitor_never_shows_what_qsess_new_was_given() {
    let server = RedisServer::builder().start();
    let mut monitor = server.connection();
    monitor.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(send_command_expecting_success(&mut monitor, &["MONITOR"]), Value::Okay);
    let mut con = server.connection();
    send_command_expecting_success(
        &mut con,
        &["QSESS.NEW", "USER", "42", "DATA", "secret-payload-71", "IP", "198.51.100.71"],
    );
    send_command_expecting_success(&mut con, &["PING", "monitor-end-marker"]);
    let mut lines = Vec::new();
    loop {
        let line = format!("{:?}", monitor.recv_response().unwrap());
        let done = line.contains("monitor-end-marker");
        lines.push(line);
        if done {
            break;
        }
    }
    let seen = lines.join("\n");
    assert!(!seen.contains("secret-payload-71") && !seen.contains("198.51.100.71"), "{seen}");
}
