//! QSESS.BYUSER: a user's live sessions by handle, soonest expiry first, with or without metadata,
//! also on a read-only replica.

use std::time::Duration;

use crate::commands_support::{handle_text_of_session_id, send_command_words};
use qsess_tests::{eventually, RedisServer};
use redis::{Connection, Value};

fn set_session_expecting_a_version(con: &mut Connection, words: &[&str]) -> i64 {
    match send_command_words(con, words) {
        Ok(Value::Int(version)) => version,
        other => panic!("{words:?} answered {other:?}, expected a version"),
    }
}

fn byuser_handles(con: &mut Connection, user_id: &str) -> Vec<String> {
    redis::cmd("QSESS.BYUSER").arg(user_id).query(con).unwrap()
}

fn text_of_reply_word(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).unwrap(),
        Value::SimpleString(text) => text.clone(),
        other => panic!("expected a string, got {other:?}"),
    }
}

/// A map reply (RESP3) or its flattened field/value array (RESP2) as ordered pairs.
fn ordered_pairs_of_map_reply(value: &Value) -> Vec<(String, Value)> {
    match value {
        Value::Map(pairs) => pairs.iter().map(|(field, value)| (text_of_reply_word(field), value.clone())).collect(),
        Value::Array(flat) => {
            assert_eq!(flat.len() % 2, 0, "odd field/value array: {flat:?}");
            flat.chunks_exact(2).map(|pair| (text_of_reply_word(&pair[0]), pair[1].clone())).collect()
        }
        other => panic!("expected a map, got {other:?}"),
    }
}

fn field_of<'a>(pairs: &'a [(String, Value)], name: &str) -> &'a Value {
    &pairs.iter().find(|(field, _)| field == name).unwrap_or_else(|| panic!("no field {name} in {pairs:?}")).1
}

fn byuser_with_meta_as_pairs(con: &mut Connection, user_id: &str) -> Vec<Vec<(String, Value)>> {
    let reply: Value = redis::cmd("QSESS.BYUSER").arg(user_id).arg("WITHMETA").query(con).unwrap();
    match reply {
        Value::Array(sessions) => sessions.iter().map(ordered_pairs_of_map_reply).collect(),
        other => panic!("BYUSER WITHMETA answered {other:?}"),
    }
}

fn peek_as_pairs(con: &mut Connection, session_id: &str) -> Vec<(String, Value)> {
    let reply: Value = redis::cmd("QSESS.PEEK").arg(session_id).query(con).unwrap();
    ordered_pairs_of_map_reply(&reply)
}

#[test]
fn byuser_lists_handles_of_live_sessions_soonest_expiry_first() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    for (session_id, idle) in [("middle", "200000"), ("latest", "300000"), ("soonest", "100000")] {
        set_session_expecting_a_version(&mut con, &["QSESS.SET", session_id, "USER", "42", "IDLE", idle]);
    }
    set_session_expecting_a_version(&mut con, &["QSESS.SET", "other-user", "USER", "43"]);
    set_session_expecting_a_version(&mut con, &["QSESS.SET", "ended", "USER", "42"]);
    assert_eq!(set_session_expecting_a_version(&mut con, &["QSESS.DEL", "ended"]), 1);

    let handles = byuser_handles(&mut con, "42");
    let expected: Vec<String> = ["soonest", "middle", "latest"].map(handle_text_of_session_id).to_vec();
    assert_eq!(handles, expected);
    for handle in &handles {
        assert_eq!(handle.len(), 22, "{handle}");
        assert!(handle.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'), "{handle}");
    }

    // Sliding one session's expiry past the others moves it to the end.
    set_session_expecting_a_version(&mut con, &["QSESS.SET", "soonest", "IDLE", "400000"]);
    let expected: Vec<String> = ["middle", "latest", "soonest"].map(handle_text_of_session_id).to_vec();
    assert_eq!(byuser_handles(&mut con, "42"), expected);
}

#[test]
fn byuser_withmeta_carries_the_device_fields_in_order() {
    let server = RedisServer::builder().start();
    let mut resp2 = server.connection();
    let mut resp3 = server.connection_resp3();
    let with_device =
        ["QSESS.SET", "desktop", "USER", "42", "IP", "198.51.100.7", "UA", "Firefox/128", "IDLE", "60000"];
    set_session_expecting_a_version(&mut resp2, &with_device);
    set_session_expecting_a_version(&mut resp2, &["QSESS.SET", "bare", "USER", "42", "DATA", "secret-data"]);

    for con in [&mut resp2, &mut resp3] {
        let sessions = byuser_with_meta_as_pairs(con, "42");
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        let names: Vec<&str> = sessions[0].iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(names, ["handle", "ip", "ua", "device", "created", "seen", "expires"]);
        let names: Vec<&str> = sessions[1].iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(names, ["handle", "created", "seen", "expires"], "absent fields are omitted, data never shown");

        let desktop = &sessions[0];
        assert_eq!(text_of_reply_word(field_of(desktop, "handle")), handle_text_of_session_id("desktop"));
        assert_eq!(text_of_reply_word(field_of(desktop, "ip")), "198.51.100.7");
        assert_eq!(text_of_reply_word(field_of(desktop, "ua")), "Firefox/128");
        assert_eq!(text_of_reply_word(field_of(desktop, "device")), "Firefox 128", "summarised from the user agent");
        let peeked = peek_as_pairs(con, "desktop");
        for name in ["created", "seen", "expires"] {
            assert_eq!(field_of(desktop, name), field_of(&peeked, name), "{name} differs from PEEK");
        }
        assert_eq!(text_of_reply_word(field_of(&sessions[1], "handle")), handle_text_of_session_id("bare"));
    }
}

#[test]
fn byuser_of_a_user_without_sessions_is_empty() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    assert!(byuser_handles(&mut con, "nobody").is_empty());
    assert!(byuser_with_meta_as_pairs(&mut con, "nobody").is_empty());

    set_session_expecting_a_version(&mut con, &["QSESS.SET", "only", "USER", "42"]);
    set_session_expecting_a_version(&mut con, &["QSESS.DEL", "only"]);
    assert!(byuser_handles(&mut con, "42").is_empty());
    assert!(byuser_with_meta_as_pairs(&mut con, "42").is_empty());
}

#[test]
fn byuser_skips_a_session_whose_record_was_deleted_behind_qsess_back() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    set_session_expecting_a_version(&mut con, &["QSESS.SET", "evicted", "USER", "42"]);
    set_session_expecting_a_version(&mut con, &["QSESS.SET", "kept", "USER", "42", "IDLE", "3600000"]);
    let evicted_handle = handle_text_of_session_id("evicted");
    let deleted: i64 = redis::cmd("DEL").arg(format!("qs:{{0}}:s:{evicted_handle}")).query(&mut con).unwrap();
    assert_eq!(deleted, 1);
    let score: Option<f64> = redis::cmd("ZSCORE").arg("qs:{0}:u:42").arg(&evicted_handle).query(&mut con).unwrap();
    assert!(score.is_some(), "the index still names the evicted session, so BYUSER must check the record");

    assert_eq!(byuser_handles(&mut con, "42"), [handle_text_of_session_id("kept")]);
    let sessions = byuser_with_meta_as_pairs(&mut con, "42");
    assert_eq!(sessions.len(), 1);
    assert_eq!(text_of_reply_word(field_of(&sessions[0], "handle")), handle_text_of_session_id("kept"));
}

#[test]
fn byuser_skips_a_session_once_it_has_expired() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    set_session_expecting_a_version(&mut con, &["QSESS.SET", "short", "USER", "42", "IDLE", "200"]);
    set_session_expecting_a_version(&mut con, &["QSESS.SET", "long", "USER", "42"]);
    let long_only = [handle_text_of_session_id("long")];

    eventually(Duration::from_secs(5), "BYUSER to drop the expired session", || {
        let handles = byuser_handles(&mut con, "42");
        if handles == long_only {
            Ok(())
        } else {
            Err(format!("BYUSER 42 = {handles:?}"))
        }
    });
    let sessions = byuser_with_meta_as_pairs(&mut con, "42");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    // No write has pruned the index, so BYUSER itself filtered the expired member out.
    let score: Option<f64> =
        redis::cmd("ZSCORE").arg("qs:{0}:u:42").arg(handle_text_of_session_id("short")).query(&mut con).unwrap();
    assert!(score.is_some(), "expected the expired member to still be in the index");
}

#[test]
fn byuser_works_on_a_read_only_replica_where_set_and_get_are_refused() {
    let primary = RedisServer::builder().start();
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_for_sync();
    let mut primary_con = primary.connection();
    set_session_expecting_a_version(&mut primary_con, &["QSESS.SET", "r1", "USER", "42", "IP", "192.0.2.1"]);
    set_session_expecting_a_version(&mut primary_con, &["QSESS.SET", "r2", "USER", "42", "IDLE", "60000"]);
    replica.wait_caught_up(&primary);

    let mut replica_con = replica.connection();
    let on_replica = byuser_handles(&mut replica_con, "42");
    assert_eq!(on_replica, ["r2", "r1"].map(handle_text_of_session_id));
    assert_eq!(on_replica, byuser_handles(&mut primary_con, "42"));
    assert_eq!(byuser_with_meta_as_pairs(&mut replica_con, "42"), byuser_with_meta_as_pairs(&mut primary_con, "42"));

    for words in [&["QSESS.SET", "r1", "DATA", "x"][..], &["QSESS.GET", "r1"], &["QSESS.SET", "r3", "USER", "42"]] {
        let error = send_command_words(&mut replica_con, words).expect_err("a replica must refuse writes");
        assert_eq!(error.code(), Some("READONLY"), "{words:?}: {error}");
    }
    assert_eq!(byuser_handles(&mut replica_con, "42").len(), 2);
}
