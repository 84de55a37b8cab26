//! `LIMIT n` on QSESS.SET and QSESS.NEW: the owner keeps at most n live sessions, and the oldest by
//! creation are revoked (tombstoned, stream `del` why=limit).

use std::time::Duration;

use crate::support::change_stream_deletes::{delete_entries_after, delete_entry_of};
use crate::support::commands::{
    key_exists, send_command_expecting_integer, send_command_words, sorted_keys_and_stream_length, stream_length,
};
use crate::support::server_clock::{server_clock_ms, wait_until_server_clock_is_past};
use crate::support::session_keys::{handle_of, session_key_of, tombstone_key_of, user_index_key_of};
use qsess_record::DeleteReason;
use qsess_tests::{eventually, RedisServer};
use redis::{Connection, Value};

/// Creates sessions for `user_id` one after another, each with a strictly later creation time.
fn create_sessions_in_creation_order(con: &mut Connection, user_id: &str, session_ids: &[&str]) {
    for session_id in session_ids {
        let before = server_clock_ms(con);
        wait_until_server_clock_is_past(con, before);
        assert_eq!(send_command_expecting_integer(con, &["QSESS.SET", session_id, "USER", user_id]), 1);
    }
    let after = server_clock_ms(con);
    wait_until_server_clock_is_past(con, after);
}

fn sorted_byuser_handles(con: &mut Connection, user_id: &str) -> Vec<String> {
    let mut handles: Vec<String> = redis::cmd("QSESS.BYUSER").arg(user_id).query(con).unwrap();
    handles.sort();
    handles
}

fn sorted_handles_of(session_ids: &[&str]) -> Vec<String> {
    let mut handles: Vec<String> = session_ids.iter().map(|id| handle_of(id)).collect();
    handles.sort();
    handles
}

#[test]
fn limit_revokes_the_oldest_sessions_by_creation() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    create_sessions_in_creation_order(&mut con, "42", &["first", "second", "third"]);
    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.SET", "unrelated", "USER", "7"]), 1);
    let before = stream_length(&mut con);

    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.SET", "fourth", "USER", "42", "LIMIT", "2"]), 1);

    assert_eq!(sorted_byuser_handles(&mut con, "42"), sorted_handles_of(&["third", "fourth"]));
    assert_eq!(sorted_byuser_handles(&mut con, "7"), sorted_handles_of(&["unrelated"]), "other users untouched");
    let mut deletes = delete_entries_after(&mut con, before);
    deletes.sort_by(|a, b| a.handle.cmp(&b.handle));
    let mut expected = vec![
        delete_entry_of("first", Some("42"), 2, DeleteReason::Limit),
        delete_entry_of("second", Some("42"), 2, DeleteReason::Limit),
    ];
    expected.sort_by(|a, b| a.handle.cmp(&b.handle));
    assert_eq!(deletes, expected);
    for revoked in ["first", "second"] {
        assert!(key_exists(&mut con, &tombstone_key_of(revoked)), "{revoked} has no tombstone");
        let error = send_command_words(&mut con, &["QSESS.SET", revoked, "USER", "42"]).expect_err(revoked);
        assert!(error.to_string().contains("revoked"), "{revoked}: {error}");
    }
}

#[test]
fn limit_on_an_update_keeps_the_session_being_written_even_if_it_is_oldest() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    create_sessions_in_creation_order(&mut con, "42", &["oldest", "middle", "newest"]);
    let before = stream_length(&mut con);

    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.SET", "oldest", "DATA", "x", "LIMIT", "2"]), 2);

    assert_eq!(sorted_byuser_handles(&mut con, "42"), sorted_handles_of(&["oldest", "newest"]));
    assert_eq!(delete_entries_after(&mut con, before), [delete_entry_of("middle", Some("42"), 2, DeleteReason::Limit)]);

    // A limit the owner is already within revokes nothing.
    let before = stream_length(&mut con);
    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.SET", "newest", "LIMIT", "5"]), 2);
    assert!(delete_entries_after(&mut con, before).is_empty());
    assert_eq!(sorted_byuser_handles(&mut con, "42"), sorted_handles_of(&["oldest", "newest"]));
}

#[test]
fn new_with_limit_one_logs_out_every_other_session() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    create_sessions_in_creation_order(&mut con, "42", &["earlier-1", "earlier-2"]);
    let before = stream_length(&mut con);

    let minted: String = redis::cmd("QSESS.NEW").arg("USER").arg("42").arg("LIMIT").arg("1").query(&mut con).unwrap();

    assert_eq!(sorted_byuser_handles(&mut con, "42"), [handle_of(&minted)]);
    let deletes = delete_entries_after(&mut con, before);
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(deletes.iter().all(|entry| entry.reason == DeleteReason::Limit), "{deletes:?}");
}

#[test]
fn limit_on_an_anonymous_session_is_refused_and_writes_nothing() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.SET", "guest", "ANON"]), 1);
    let before = sorted_keys_and_stream_length(&mut con);

    let attempts = [
        &["QSESS.SET", "new-guest", "ANON", "LIMIT", "1"][..],
        &["QSESS.SET", "new-guest", "LIMIT", "1"],
        &["QSESS.SET", "guest", "DATA", "x", "LIMIT", "3"],
        &["QSESS.NEW", "LIMIT", "2"],
    ];
    for words in attempts {
        let error = send_command_words(&mut con, words).expect_err("LIMIT without an owner must fail");
        assert!(error.to_string().contains("LIMIT needs an owner"), "{words:?}: {error}");
    }
    assert_eq!(sorted_keys_and_stream_length(&mut con), before);
    let version: Value = redis::cmd("QSESS.PEEK").arg("guest").query(&mut con).unwrap();
    assert_ne!(version, Value::Nil);
}

#[test]
fn limit_counts_sessions_whose_record_vanished_as_gone_not_revoked() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    create_sessions_in_creation_order(&mut con, "42", &["vanished", "survivor"]);
    let vanished = handle_of("vanished");
    let deleted: i64 = redis::cmd("DEL").arg(session_key_of("vanished")).query(&mut con).unwrap();
    assert_eq!(deleted, 1);
    let before = stream_length(&mut con);

    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.SET", "latest", "USER", "42", "LIMIT", "2"]), 1);

    assert_eq!(sorted_byuser_handles(&mut con, "42"), sorted_handles_of(&["survivor", "latest"]));
    assert!(delete_entries_after(&mut con, before).is_empty(), "a vanished session is not revoked");
    assert!(!key_exists(&mut con, &tombstone_key_of("vanished")), "a vanished session gets no tombstone");
    assert!(!key_exists(&mut con, &tombstone_key_of("survivor")));
    let score: Option<f64> = redis::cmd("ZSCORE").arg(user_index_key_of("42")).arg(&vanished).query(&mut con).unwrap();
    assert_eq!(score, None, "the vanished session should be dropped from the index");
}

#[test]
fn limit_never_revokes_a_session_that_now_belongs_to_another_user() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    // User 42's short session expires while 42's index lives on; the same id then becomes user 7's.
    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.SET", "shared", "USER", "42", "IDLE", "200"]), 1);
    create_sessions_in_creation_order(&mut con, "42", &["older-42"]);
    eventually(Duration::from_secs(5), "the 200 ms session to expire", || {
        match redis::cmd("QSESS.PEEK").arg("shared").query::<Value>(&mut con).unwrap() {
            Value::Nil => Ok(()),
            other => Err(format!("still live: {other:?}")),
        }
    });
    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.SET", "shared", "USER", "7"]), 1);
    let before = stream_length(&mut con);

    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.SET", "newest-42", "USER", "42", "LIMIT", "1"]), 1);

    assert_eq!(sorted_byuser_handles(&mut con, "7"), [handle_of("shared")], "user 7 lost a session");
    assert_eq!(sorted_byuser_handles(&mut con, "42"), [handle_of("newest-42")]);
    let deletes = delete_entries_after(&mut con, before);
    assert_eq!(deletes, [delete_entry_of("older-42", Some("42"), 2, DeleteReason::Limit)]);
}
