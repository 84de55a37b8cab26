//! QSESS.BYUSER: a user's live sessions by handle, soonest expiry first, with or without metadata,
//! also on a read-only replica.

use std::time::Duration;

use crate::support::commands::send_command_words;
use crate::support::qsess_client::QsessClient;
use crate::support::session_keys::{handle_of, session_key_of, user_index_key_of};
use qsess_tests::{eventually, RedisServer};
use redis::Value;

fn text_of_reply_word(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).unwrap(),
        Value::SimpleString(text) => text.clone(),
        other => panic!("expected a string, got {other:?}"),
    }
}

fn field_of<'a>(pairs: &'a [(String, Value)], name: &str) -> &'a Value {
    &pairs.iter().find(|(field, _)| field == name).unwrap_or_else(|| panic!("no field {name} in {pairs:?}")).1
}

#[test]
fn byuser_lists_handles_of_live_sessions_soonest_expiry_first() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    for (session_id, idle) in [("middle", "200000"), ("latest", "300000"), ("soonest", "100000")] {
        QsessClient::new(&mut con).set_expecting_version(session_id, &["USER", "42", "IDLE", idle]);
    }
    QsessClient::new(&mut con).set_expecting_version("other-user", &["USER", "43"]);
    QsessClient::new(&mut con).set_expecting_version("ended", &["USER", "42"]);
    assert_eq!(QsessClient::new(&mut con).del(&["ended"]), 1);

    let handles = QsessClient::new(&mut con).byuser_handles("42");
    let expected: Vec<String> = ["soonest", "middle", "latest"].map(handle_of).to_vec();
    assert_eq!(handles, expected);
    for handle in &handles {
        assert_eq!(handle.len(), 22, "{handle}");
        assert!(handle.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'), "{handle}");
    }

    // Sliding one session's expiry past the others moves it to the end.
    QsessClient::new(&mut con).set_expecting_version("soonest", &["IDLE", "400000"]);
    let expected: Vec<String> = ["middle", "latest", "soonest"].map(handle_of).to_vec();
    assert_eq!(QsessClient::new(&mut con).byuser_handles("42"), expected);
}

#[test]
fn byuser_withmeta_carries_the_device_fields_in_order() {
    let server = RedisServer::builder().start();
    let mut resp2 = server.connection();
    let mut resp3 = server.connection_resp3();
    let with_device = ["USER", "42", "IP", "198.51.100.7", "UA", "Firefox/128", "IDLE", "60000"];
    QsessClient::new(&mut resp2).set_expecting_version("desktop", &with_device);
    QsessClient::new(&mut resp2).set_expecting_version("bare", &["USER", "42", "DATA", "secret-data"]);

    for con in [&mut resp2, &mut resp3] {
        let sessions = QsessClient::new(con).byuser_with_meta("42");
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        let names: Vec<&str> = sessions[0].iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(names, ["handle", "ip", "ua", "device", "created", "seen", "expires"]);
        let names: Vec<&str> = sessions[1].iter().map(|(field, _)| field.as_str()).collect();
        assert_eq!(names, ["handle", "created", "seen", "expires"], "absent fields are omitted, data never shown");

        let desktop = &sessions[0];
        assert_eq!(text_of_reply_word(field_of(desktop, "handle")), handle_of("desktop"));
        assert_eq!(text_of_reply_word(field_of(desktop, "ip")), "198.51.100.7");
        assert_eq!(text_of_reply_word(field_of(desktop, "ua")), "Firefox/128");
        assert_eq!(text_of_reply_word(field_of(desktop, "device")), "Firefox 128", "summarised from the user agent");
        let peeked = QsessClient::new(con).peek("desktop").unwrap();
        for name in ["created", "seen", "expires"] {
            assert_eq!(field_of(desktop, name), field_of(&peeked, name), "{name} differs from PEEK");
        }
        assert_eq!(text_of_reply_word(field_of(&sessions[1], "handle")), handle_of("bare"));
    }
}

#[test]
fn byuser_of_a_user_without_sessions_is_empty() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    assert!(QsessClient::new(&mut con).byuser_handles("nobody").is_empty());
    assert!(QsessClient::new(&mut con).byuser_with_meta("nobody").is_empty());

    QsessClient::new(&mut con).set_expecting_version("only", &["USER", "42"]);
    QsessClient::new(&mut con).del(&["only"]);
    assert!(QsessClient::new(&mut con).byuser_handles("42").is_empty());
    assert!(QsessClient::new(&mut con).byuser_with_meta("42").is_empty());
}

#[test]
fn byuser_skips_a_session_whose_record_was_deleted_behind_qsess_back() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    QsessClient::new(&mut con).set_expecting_version("evicted", &["USER", "42"]);
    QsessClient::new(&mut con).set_expecting_version("kept", &["USER", "42", "IDLE", "3600000"]);
    let evicted_handle = handle_of("evicted");
    let deleted: i64 = redis::cmd("DEL").arg(session_key_of("evicted")).query(&mut con).unwrap();
    assert_eq!(deleted, 1);
    let score: Option<f64> =
        redis::cmd("ZSCORE").arg(user_index_key_of("42")).arg(&evicted_handle).query(&mut con).unwrap();
    assert!(score.is_some(), "the index still names the evicted session, so BYUSER must check the record");

    assert_eq!(QsessClient::new(&mut con).byuser_handles("42"), [handle_of("kept")]);
    let sessions = QsessClient::new(&mut con).byuser_with_meta("42");
    assert_eq!(sessions.len(), 1);
    assert_eq!(text_of_reply_word(field_of(&sessions[0], "handle")), handle_of("kept"));
}

#[test]
fn byuser_skips_a_session_once_it_has_expired() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    QsessClient::new(&mut con).set_expecting_version("short", &["USER", "42", "IDLE", "200"]);
    QsessClient::new(&mut con).set_expecting_version("long", &["USER", "42"]);
    let long_only = [handle_of("long")];

    eventually(Duration::from_secs(5), "BYUSER to drop the expired session", || {
        let handles = QsessClient::new(&mut con).byuser_handles("42");
        if handles == long_only {
            Ok(())
        } else {
            Err(format!("BYUSER 42 = {handles:?}"))
        }
    });
    let sessions = QsessClient::new(&mut con).byuser_with_meta("42");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    // No write has pruned the index, so BYUSER itself filtered the expired member out.
    let score: Option<f64> =
        redis::cmd("ZSCORE").arg(user_index_key_of("42")).arg(handle_of("short")).query(&mut con).unwrap();
    assert!(score.is_some(), "expected the expired member to still be in the index");
}

#[test]
fn byuser_works_on_a_read_only_replica_where_set_and_get_are_refused() {
    let primary = RedisServer::builder().start();
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_for_sync();
    let mut primary_con = primary.connection();
    QsessClient::new(&mut primary_con).set_expecting_version("r1", &["USER", "42", "IP", "192.0.2.1"]);
    QsessClient::new(&mut primary_con).set_expecting_version("r2", &["USER", "42", "IDLE", "60000"]);
    replica.wait_caught_up(&primary);

    let mut replica_con = replica.connection();
    let on_replica = QsessClient::new(&mut replica_con).byuser_handles("42");
    assert_eq!(on_replica, ["r2", "r1"].map(handle_of));
    assert_eq!(on_replica, QsessClient::new(&mut primary_con).byuser_handles("42"));
    assert_eq!(
        QsessClient::new(&mut replica_con).byuser_with_meta("42"),
        QsessClient::new(&mut primary_con).byuser_with_meta("42")
    );

    for words in [&["QSESS.SET", "r1", "DATA", "x"][..], &["QSESS.GET", "r1"], &["QSESS.SET", "r3", "USER", "42"]] {
        let error = send_command_words(&mut replica_con, words).expect_err("a replica must refuse writes");
        assert_eq!(error.code(), Some("READONLY"), "{words:?}: {error}");
    }
    assert_eq!(QsessClient::new(&mut replica_con).byuser_handles("42").len(), 2);
}
