//! QSESS.ROTATE: the session moves to a new id with its data, owner and creation time; the old id is
//! dead and tombstoned; every refusal leaves the keyspace untouched.

use crate::support::commands::{
    borrowed_pairs, qsess_command_error_text, qsess_command_reply, session_field_integer, session_field_text,
    snapshot_of_every_key_dump_and_expiry,
};
use crate::support::qsess_client::QsessClient;
use crate::support::session_keys::{change_stream_key, handle_of, session_key_of, tombstone_key_of, user_index_key_of};
use qsess_record::{ChangeRecord, DeleteReason, Handle};
use qsess_tests::RedisServer;
use redis::{Connection, Value};

/// Field/value pairs of every change stream entry, oldest first.
fn change_stream_entry_fields(con: &mut Connection) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    let entries: Vec<(String, Vec<Vec<u8>>)> =
        redis::cmd("XRANGE").arg(change_stream_key(0)).arg("-").arg("+").query(con).unwrap();
    entries
        .into_iter()
        .map(|(_, flat)| flat.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect())
        .collect()
}

#[test]
fn rotate_moves_the_session_to_the_new_id_and_tombstones_the_old_one() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let created = ["old-id", "DATA", "cart=3", "USER", "u1", "IP", "192.0.2.1", "UA", "agent"];
    qsess_command_reply(&mut con, "QSESS.SET", &created);
    qsess_command_reply(&mut con, "QSESS.SET", &["old-id", "DATA", "cart=4"]);
    let before = QsessClient::new(&mut con).peek("old-id").unwrap();

    assert_eq!(qsess_command_reply(&mut con, "QSESS.ROTATE", &["old-id", "new-id"]), Value::Int(3));
    assert_eq!(QsessClient::new(&mut con).peek("old-id"), None);
    assert_eq!(qsess_command_reply(&mut con, "QSESS.GET", &["old-id"]), Value::Nil);
    let after = QsessClient::new(&mut con).peek("new-id").expect("the new id is live");
    assert_eq!(session_field_text(&after, "handle"), Some(handle_of("new-id")));
    assert_eq!(session_field_integer(&after, "ver"), 3);
    for kept in ["data", "user", "ip", "ua"] {
        assert_eq!(session_field_text(&after, kept), session_field_text(&before, kept), "{kept}");
    }
    for kept in ["created", "idle", "abs"] {
        assert_eq!(session_field_integer(&after, kept), session_field_integer(&before, kept), "{kept}");
    }

    let new_handle = handle_of("new-id");
    let old_record_exists: i64 = redis::cmd("EXISTS").arg(session_key_of("old-id")).query(&mut con).unwrap();
    assert_eq!(old_record_exists, 0);
    let tombstone: Option<String> = redis::cmd("GET").arg(tombstone_key_of("old-id")).query(&mut con).unwrap();
    assert_eq!(tombstone.as_deref(), Some("3"), "the tombstone holds the delete version");
    let tombstone_ttl: i64 = redis::cmd("PTTL").arg(tombstone_key_of("old-id")).query(&mut con).unwrap();
    assert!(tombstone_ttl > 0, "tombstone TTL {tombstone_ttl}");

    let members: Vec<String> =
        redis::cmd("ZRANGE").arg(user_index_key_of("u1")).arg(0).arg(-1).query(&mut con).unwrap();
    assert_eq!(members, std::slice::from_ref(&new_handle));
    let listed: Vec<String> = redis::cmd("QSESS.BYUSER").arg("u1").query(&mut con).unwrap();
    assert_eq!(listed, std::slice::from_ref(&new_handle));
    let score: i64 = redis::cmd("ZSCORE").arg(user_index_key_of("u1")).arg(&new_handle).query(&mut con).unwrap();
    assert_eq!(score, session_field_integer(&after, "expires"));

    let entries = change_stream_entry_fields(&mut con);
    let parsed: Vec<ChangeRecord<'_>> =
        entries.iter().map(|e| ChangeRecord::parse(&borrowed_pairs(e)).unwrap()).collect();
    let [.., ended, moved] = parsed.as_slice() else { panic!("too few entries: {parsed:?}") };
    let expected_end = ChangeRecord::Delete {
        handle: Handle::from_session_id(b"old-id"),
        user: Some(b"u1"),
        version: 3,
        reason: DeleteReason::Rotate,
    };
    assert_eq!(ended, &expected_end);
    assert!(
        matches!(moved, ChangeRecord::Set { handle, user: Some(b"u1"), version: 3, .. } if handle.as_str() == new_handle),
        "{moved:?}"
    );

    let reuse = qsess_command_error_text(&mut con, "QSESS.SET", &["old-id", "DATA", "x"]);
    assert!(reuse.starts_with("ERR session id was revoked and cannot be used again"), "{reuse}");
}

#[test]
fn rotate_of_an_anonymous_session_keeps_it_anonymous() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_command_reply(&mut con, "QSESS.SET", &["anon-old", "DATA", "d"]);
    assert_eq!(qsess_command_reply(&mut con, "QSESS.ROTATE", &["anon-old", "anon-new"]), Value::Int(2));
    let after = QsessClient::new(&mut con).peek("anon-new").unwrap();
    assert_eq!(session_field_text(&after, "user"), None);
    assert_eq!(session_field_text(&after, "data").as_deref(), Some("d"));
    let index_keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}*", user_index_key_of(""))).query(&mut con).unwrap();
    assert!(index_keys.is_empty(), "{index_keys:?}");
}

#[test]
fn rotate_of_a_missing_session_is_nil_and_writes_nothing() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_command_reply(&mut con, "QSESS.SET", &["bystander", "USER", "u1"]);
    let before = snapshot_of_every_key_dump_and_expiry(&mut con);
    assert_eq!(qsess_command_reply(&mut con, "QSESS.ROTATE", &["never-existed", "fresh"]), Value::Nil);
    assert_eq!(snapshot_of_every_key_dump_and_expiry(&mut con), before);
    assert_eq!(QsessClient::new(&mut con).peek("fresh"), None);
}

#[test]
fn rotate_onto_an_id_in_use_is_refused_and_changes_nothing() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_command_reply(&mut con, "QSESS.SET", &["first", "USER", "u1", "DATA", "one"]);
    qsess_command_reply(&mut con, "QSESS.SET", &["second", "USER", "u2", "DATA", "two"]);
    let before = snapshot_of_every_key_dump_and_expiry(&mut con);
    let error = qsess_command_error_text(&mut con, "QSESS.ROTATE", &["first", "second"]);
    assert_eq!(error, "ERR the new session id is already in use");
    assert_eq!(snapshot_of_every_key_dump_and_expiry(&mut con), before);
    let second = QsessClient::new(&mut con).peek("second").unwrap();
    assert_eq!(session_field_text(&second, "data").as_deref(), Some("two"));
}

#[test]
fn rotate_onto_the_same_id_is_refused_and_changes_nothing() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_command_reply(&mut con, "QSESS.SET", &["same", "USER", "u1"]);
    let before = snapshot_of_every_key_dump_and_expiry(&mut con);
    let error = qsess_command_error_text(&mut con, "QSESS.ROTATE", &["same", "same"]);
    assert_eq!(error, "ERR old and new session ids are the same");
    assert_eq!(snapshot_of_every_key_dump_and_expiry(&mut con), before);
}

#[test]
fn rotate_onto_a_previously_deleted_id_is_refused_and_changes_nothing() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_command_reply(&mut con, "QSESS.SET", &["logged-out", "USER", "u1"]);
    assert_eq!(qsess_command_reply(&mut con, "QSESS.DEL", &["logged-out"]), Value::Int(1));
    qsess_command_reply(&mut con, "QSESS.SET", &["current", "USER", "u1", "DATA", "d"]);
    let before = snapshot_of_every_key_dump_and_expiry(&mut con);
    let error = qsess_command_error_text(&mut con, "QSESS.ROTATE", &["current", "logged-out"]);
    assert_eq!(error, "ERR session id was revoked and cannot be used again; mint a new one with QSESS.NEW");
    assert_eq!(snapshot_of_every_key_dump_and_expiry(&mut con), before);
    assert!(QsessClient::new(&mut con).peek("current").is_some());
    assert_eq!(QsessClient::new(&mut con).peek("logged-out"), None);
}
