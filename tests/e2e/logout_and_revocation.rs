//! Ending sessions: QSESS.DEL (log out), QSESS.REVOKEUSER and QSESS.REVOKE, and the tombstones that
//! keep an ended session id from ever coming back.

use qsess_record::DeleteReason;
use std::time::Duration;

use crate::support::change_stream_deletes::{delete_entries_after, delete_entry_of};
use crate::support::commands::{
    key_exists, send_command_expecting_integer, send_command_words, sorted_keys_and_stream_length, stream_length,
};
use crate::support::server_clock::server_clock_ms;
use crate::support::session_keys::{handle_of, session_key_of, tombstone_key_of, user_index_key_of};
use qsess_tests::{eventually, RedisServer};
use redis::{Connection, Value};

const REVOKED_ID_MESSAGE: &str = "session id was revoked and cannot be used again";

fn create_user_session(con: &mut Connection, session_id: &str, user_id: &str) {
    let version = send_command_expecting_integer(con, &["QSESS.SET", session_id, "USER", user_id]);
    assert_eq!(version, 1, "{session_id} should be new");
}

fn session_is_live_according_to_peek(con: &mut Connection, session_id: &str) -> bool {
    !matches!(send_command_words(con, &["QSESS.PEEK", session_id]).unwrap(), Value::Nil)
}

fn index_score_of_session(con: &mut Connection, user_id: &str, session_id: &str) -> Option<f64> {
    redis::cmd("ZSCORE").arg(user_index_key_of(user_id)).arg(handle_of(session_id)).query(con).unwrap()
}

#[test]
fn del_counts_only_live_sessions_and_removes_record_and_index_member() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    create_user_session(&mut con, "del-a", "42");
    create_user_session(&mut con, "del-b", "42");
    send_command_expecting_integer(&mut con, &["QSESS.SET", "del-anon", "ANON"]);

    let ended = send_command_expecting_integer(&mut con, &["QSESS.DEL", "del-a", "del-a", "never-existed", "del-anon"]);
    assert_eq!(ended, 2, "duplicates and unknown ids are not counted");

    for ended_id in ["del-a", "del-anon"] {
        assert!(!key_exists(&mut con, &session_key_of(ended_id)), "{ended_id} record still there");
        assert!(key_exists(&mut con, &tombstone_key_of(ended_id)), "{ended_id} has no tombstone");
        assert!(!session_is_live_according_to_peek(&mut con, ended_id));
    }
    assert_eq!(index_score_of_session(&mut con, "42", "del-a"), None, "index member of del-a not removed");
    assert!(index_score_of_session(&mut con, "42", "del-b").is_some(), "del-b was left alone");
    assert!(session_is_live_according_to_peek(&mut con, "del-b"));
    // An id Redis does not hold may still live in the mirror (Redis lost it): it is ended anyway.
    assert!(key_exists(&mut con, &tombstone_key_of("never-existed")), "an id Redis lacks is tombstoned too");

    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.DEL", "del-a", "del-anon"]), 0);
}

#[test]
fn del_tombstone_lives_no_longer_than_the_setting_nor_the_session() {
    let server = RedisServer::builder().module_arg("tombstone-ttl-ms", 5000).start();
    let mut con = server.connection();
    send_command_expecting_integer(&mut con, &["QSESS.SET", "short-lived", "USER", "42", "IDLE", "3000"]);
    create_user_session(&mut con, "long-lived", "42");
    send_command_expecting_integer(&mut con, &["QSESS.SET", "long-lived", "DATA", "v2"]);

    let flat_record: Vec<Value> = redis::cmd("QSESS.PEEK").arg("short-lived").query(&mut con).unwrap();
    let short_expires = flat_record.chunks_exact(2).find(|pair| pair[0] == Value::BulkString(b"expires".to_vec()));
    let Some([_, Value::Int(short_expires)]) = short_expires else { panic!("no expires in {flat_record:?}") };
    let before_ms = server_clock_ms(&mut con);
    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.DEL", "short-lived", "long-lived"]), 2);
    let after_ms = server_clock_ms(&mut con);

    let short_ttl: i64 = redis::cmd("PTTL").arg(tombstone_key_of("short-lived")).query(&mut con).unwrap();
    assert!((1..=3000).contains(&short_ttl), "tombstone outlives the 3 s the session had left: PTTL {short_ttl}");
    let short_end: i64 = redis::cmd("PEXPIRETIME").arg(tombstone_key_of("short-lived")).query(&mut con).unwrap();
    assert_eq!(short_end, *short_expires, "the tombstone should end exactly when the session would have");
    let long_ttl: i64 = redis::cmd("PTTL").arg(tombstone_key_of("long-lived")).query(&mut con).unwrap();
    assert!((1..=5000).contains(&long_ttl), "tombstone outlives tombstone-ttl-ms 5000: PTTL {long_ttl}");
    let long_end: i64 = redis::cmd("PEXPIRETIME").arg(tombstone_key_of("long-lived")).query(&mut con).unwrap();
    assert!((before_ms + 5000..=after_ms + 5000).contains(&long_end), "tombstone-ttl-ms 5000 not applied: {long_end}");

    // The tombstone holds the version of the `del` change: the last version plus one.
    let tombstone: String = redis::cmd("GET").arg(tombstone_key_of("long-lived")).query(&mut con).unwrap();
    assert_eq!(tombstone, "3");
}

#[test]
fn del_writes_one_logout_entry_per_ended_session_with_the_next_version() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    create_user_session(&mut con, "logout-a", "42");
    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.SET", "logout-a", "DATA", "x"]), 2);
    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.SET", "logout-a", "DATA", "y"]), 3);
    send_command_expecting_integer(&mut con, &["QSESS.SET", "logout-anon", "ANON"]);
    let before = stream_length(&mut con);

    let ended = send_command_expecting_integer(&mut con, &["QSESS.DEL", "logout-a", "logout-anon", "logout-a", "x"]);
    assert_eq!(ended, 2);

    // One entry per ended session, and one for "x", which Redis does not hold but the mirror might:
    // its version is unknown, so it carries the largest, which ends whatever the mirror has.
    assert_eq!(stream_length(&mut con), before + 3, "exactly one entry per ended id");
    let deletes = delete_entries_after(&mut con, before);
    let expected = [
        delete_entry_of("logout-a", Some("42"), 4, DeleteReason::Logout),
        delete_entry_of("logout-anon", None, 2, DeleteReason::Logout),
        delete_entry_of("x", None, i64::MAX as u64, DeleteReason::Logout),
    ];
    assert_eq!(deletes, expected);
}

#[test]
fn after_logout_a_late_xx_update_finds_nothing_and_a_plain_set_is_refused() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    create_user_session(&mut con, "late-writer", "42");
    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.DEL", "late-writer"]), 1);
    let before = sorted_keys_and_stream_length(&mut con);

    let reply = send_command_words(&mut con, &["QSESS.SET", "late-writer", "XX", "DATA", "cart=3"]).unwrap();
    assert_eq!(reply, Value::Nil, "an XX update of an ended session must not bring it back");
    for words in [&["QSESS.SET", "late-writer"][..], &["QSESS.SET", "late-writer", "USER", "42", "DATA", "d"]] {
        let error = send_command_words(&mut con, words).expect_err("SET of a logged-out id");
        assert!(error.to_string().contains(REVOKED_ID_MESSAGE), "{words:?}: {error}");
    }
    assert_eq!(sorted_keys_and_stream_length(&mut con), before, "a refused write wrote something");
    assert!(!session_is_live_according_to_peek(&mut con, "late-writer"));
}

#[test]
fn revokeuser_ends_every_session_of_the_user_and_leaves_other_users_alone() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let victims = ["everywhere-1", "everywhere-2", "everywhere-3"];
    for session_id in victims {
        create_user_session(&mut con, session_id, "42");
    }
    create_user_session(&mut con, "bystander-1", "7");
    create_user_session(&mut con, "bystander-2", "7");
    let before = stream_length(&mut con);

    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.REVOKEUSER", "42"]), 3);

    let byuser: Vec<String> = redis::cmd("QSESS.BYUSER").arg("42").query(&mut con).unwrap();
    assert!(byuser.is_empty(), "sessions left after REVOKEUSER: {byuser:?}");
    assert!(!key_exists(&mut con, &user_index_key_of("42")), "the emptied index should be gone");
    let mut bystanders: Vec<String> = redis::cmd("QSESS.BYUSER").arg("7").query(&mut con).unwrap();
    bystanders.sort();
    let mut expected = vec![handle_of("bystander-1"), handle_of("bystander-2")];
    expected.sort();
    assert_eq!(bystanders, expected);

    let deletes = delete_entries_after(&mut con, before);
    assert_eq!(deletes.len(), 3, "{deletes:?}");
    let mut revoked_handles: Vec<String> = deletes.iter().map(|entry| entry.handle.clone()).collect();
    revoked_handles.sort();
    let mut victim_handles: Vec<String> = victims.iter().map(|id| handle_of(id)).collect();
    victim_handles.sort();
    assert_eq!(revoked_handles, victim_handles);
    assert!(deletes.iter().all(|entry| entry.reason == DeleteReason::Revoke && entry.version == 2), "{deletes:?}");

    for session_id in victims {
        assert_eq!(send_command_words(&mut con, &["QSESS.GET", session_id]).unwrap(), Value::Nil);
        let error = send_command_words(&mut con, &["QSESS.SET", session_id, "USER", "42"]).expect_err(session_id);
        assert!(error.to_string().contains(REVOKED_ID_MESSAGE), "{session_id}: {error}");
    }
    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.REVOKEUSER", "42"]), 0);
}

#[test]
fn revokeuser_except_keeps_exactly_the_given_session() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    for session_id in ["others-1", "current", "others-2"] {
        create_user_session(&mut con, session_id, "42");
    }

    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.REVOKEUSER", "42", "EXCEPT", "current"]), 2);

    let remaining: Vec<String> = redis::cmd("QSESS.BYUSER").arg("42").query(&mut con).unwrap();
    assert_eq!(remaining, [handle_of("current")]);
    assert!(session_is_live_according_to_peek(&mut con, "current"));
    assert!(!key_exists(&mut con, &tombstone_key_of("current")));
    for revoked in ["others-1", "others-2"] {
        assert!(!session_is_live_according_to_peek(&mut con, revoked), "{revoked} survived");
        assert!(key_exists(&mut con, &tombstone_key_of(revoked)), "{revoked} has no tombstone");
    }
}

#[test]
fn revoke_by_handle_ends_only_sessions_of_that_user() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    create_user_session(&mut con, "laptop", "42");
    create_user_session(&mut con, "phone", "42");
    create_user_session(&mut con, "someone-elses", "7");
    let laptop = handle_of("laptop");
    let foreign = handle_of("someone-elses");
    let before = stream_length(&mut con);

    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.REVOKE", "42", &laptop, &foreign, &laptop]), 1);
    assert!(!session_is_live_according_to_peek(&mut con, "laptop"));
    assert!(session_is_live_according_to_peek(&mut con, "phone"));
    assert!(session_is_live_according_to_peek(&mut con, "someone-elses"), "another user's session was revoked");
    assert_eq!(
        delete_entries_after(&mut con, before),
        [delete_entry_of("laptop", Some("42"), 2, DeleteReason::Revoke)]
    );

    let unchanged = sorted_keys_and_stream_length(&mut con);
    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.REVOKE", "7", &laptop]), 0);
    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.REVOKE", "42", &foreign]), 0);
    assert_eq!(sorted_keys_and_stream_length(&mut con), unchanged);
}

#[test]
fn revoke_with_a_malformed_handle_fails_and_writes_nothing() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    create_user_session(&mut con, "kept", "42");
    let kept = handle_of("kept");
    let before = sorted_keys_and_stream_length(&mut con);

    for malformed in ["not-a-handle", "kept", &format!("{kept}x"), "ungWv48Bz+pBQUDeXa4iIw"] {
        let error = send_command_words(&mut con, &["QSESS.REVOKE", "42", &kept, malformed]).expect_err(malformed);
        assert!(error.to_string().contains("invalid handle"), "{malformed}: {error}");
    }
    assert_eq!(sorted_keys_and_stream_length(&mut con), before);
    assert!(session_is_live_according_to_peek(&mut con, "kept"));
}

#[test]
fn logout_everywhere_inside_multi_reaches_stream_and_replica_whole() {
    let primary = RedisServer::builder().start();
    let replica = RedisServer::builder().replica_of(&primary).start();
    replica.wait_for_sync();
    let mut con = primary.connection();
    let victims = ["multi-1", "multi-2", "multi-3"];
    for session_id in victims {
        create_user_session(&mut con, session_id, "42");
    }
    let before = stream_length(&mut con);

    let replies: Vec<Value> = redis::pipe()
        .atomic()
        .cmd("QSESS.SET")
        .arg("unrelated")
        .arg("USER")
        .arg("7")
        .cmd("QSESS.REVOKEUSER")
        .arg("42")
        .cmd("QSESS.PEEK")
        .arg("multi-1")
        .query(&mut con)
        .unwrap();
    assert_eq!(replies, [Value::Int(1), Value::Int(3), Value::Nil]);

    let deletes = delete_entries_after(&mut con, before);
    assert_eq!(deletes.len(), 3, "{deletes:?}");
    assert!(deletes.iter().all(|entry| entry.reason == DeleteReason::Revoke), "{deletes:?}");
    replica.wait_caught_up(&primary);
    let mut replica_con = replica.connection();
    assert_eq!(delete_entries_after(&mut replica_con, before), deletes, "replica stream differs");
    for session_id in victims {
        assert!(!key_exists(&mut replica_con, &session_key_of(session_id)), "{session_id} on replica");
        assert!(key_exists(&mut replica_con, &tombstone_key_of(session_id)), "{session_id} tombstone on replica");
    }
    assert!(key_exists(&mut replica_con, &session_key_of("unrelated")));
    assert!(!key_exists(&mut replica_con, &user_index_key_of("42")));
}

#[test]
fn revoke_and_revokeuser_end_vanished_sessions_without_counting_them() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    for session_id in ["vanished-1", "vanished-2", "live"] {
        create_user_session(&mut con, session_id, "42");
    }
    for vanished in ["vanished-1", "vanished-2"] {
        let deleted: i64 = redis::cmd("DEL").arg(session_key_of(vanished)).query(&mut con).unwrap();
        assert_eq!(deleted, 1);
    }
    let before = stream_length(&mut con);

    let vanished_handle = handle_of("vanished-1");
    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.REVOKE", "42", &vanished_handle]), 0);
    assert_eq!(index_score_of_session(&mut con, "42", "vanished-1"), None, "stale member kept by REVOKE");
    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.REVOKEUSER", "42"]), 1, "only the live one counts");
    assert_eq!(index_score_of_session(&mut con, "42", "vanished-2"), None, "stale member kept by REVOKEUSER");

    // A session Redis lost may still live in the mirror: the vanished ones are ended there too, and
    // tombstoned here so no reload brings them back; they just are not counted as ended in Redis.
    let deletes = delete_entries_after(&mut con, before);
    let mut ended_handles: Vec<String> = deletes.iter().map(|entry| entry.handle.clone()).collect();
    ended_handles.sort();
    let mut expected: Vec<String> =
        ["vanished-1", "vanished-2", "live"].iter().map(|session_id| handle_of(session_id)).collect();
    expected.sort();
    assert_eq!(ended_handles, expected);
    assert!(key_exists(&mut con, &tombstone_key_of("vanished-1")));
    assert!(key_exists(&mut con, &tombstone_key_of("vanished-2")));
}

/// A session of user 42 expires, leaving its member in 42's index (which lives on for 42's other
/// session); the same id is then created for user 7. Returns the handle both users have known.
fn expired_session_id_reused_by_another_user(con: &mut Connection) -> String {
    send_command_expecting_integer(con, &["QSESS.SET", "shared-cookie", "USER", "42", "IDLE", "200"]);
    create_user_session(con, "long-lived-42", "42");
    eventually(Duration::from_secs(5), "the 200 ms session to expire", || {
        match session_is_live_according_to_peek(con, "shared-cookie") {
            true => Err("still live".to_owned()),
            false => Ok(()),
        }
    });
    create_user_session(con, "shared-cookie", "7");
    handle_of("shared-cookie")
}

#[test]
fn revoke_ignores_a_handle_that_now_belongs_to_another_users_session() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let shared = expired_session_id_reused_by_another_user(&mut con);

    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.REVOKE", "42", &shared]), 0);
    assert!(session_is_live_according_to_peek(&mut con, "shared-cookie"), "REVOKE 42 ended user 7's session");
}

#[test]
fn revokeuser_never_ends_a_session_that_now_belongs_to_another_user() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let shared = expired_session_id_reused_by_another_user(&mut con);

    assert_eq!(send_command_expecting_integer(&mut con, &["QSESS.REVOKEUSER", "42"]), 1, "only long-lived-42 is 42's");
    assert!(session_is_live_according_to_peek(&mut con, "shared-cookie"), "REVOKEUSER 42 ended user 7's session");
    let user_7: Vec<String> = redis::cmd("QSESS.BYUSER").arg("7").query(&mut con).unwrap();
    assert_eq!(user_7, [shared]);
}
