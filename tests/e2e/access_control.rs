//! What a restricted ACL user can and cannot do (README, Security): the application recipe reaches the
//! session commands only; key patterns apply to the keys qsess really writes; the internal commands
//! need the daemon's recipe; and nothing a refusal records holds a raw session id.

use crate::support::acl_recipes::APPLICATION_ACL_RULES;
use crate::support::commands::{send_command_expecting_success, send_command_words};
use crate::support::server_clock::server_clock_ms;
use crate::support::session_keys::{bucket_key_prefix, handle_of};
use crate::support::session_records::restorable_record;
use qsess_tests::{RedisServer, ServerName};
use redis::{Connection, Value};

const APP_PASSWORD: &str = "app-password-7f3a";

/// README's application recipe, enabled with the test's password.
fn application_recipe() -> Vec<&'static str> {
    ["on", ">app-password-7f3a"].into_iter().chain(APPLICATION_ACL_RULES.iter().copied()).collect()
}

fn user_connection(server: &RedisServer, admin: &mut Connection, name: &str, rules: &[&str]) -> Connection {
    let mut words = vec!["ACL", "SETUSER", name];
    words.extend_from_slice(rules);
    assert_eq!(send_command_expecting_success(admin, &words), Value::Okay);
    let mut con = server.connection();
    send_command_expecting_success(&mut con, &["AUTH", name, APP_PASSWORD]);
    con
}

fn refusal(con: &mut Connection, words: &[&str]) -> redis::RedisError {
    send_command_words(con, words).expect_err(&format!("{words:?} must be refused"))
}

/// A record as qsess-syncd would restore it, with a forged owner and version.
fn forged_record(con: &mut Connection, owner: &str) -> Vec<u8> {
    let now_ms = server_clock_ms(con) as u64;
    restorable_record(Some(owner.as_bytes()), 99, now_ms, 600_000, b"forged").encode()
}

#[test]
fn the_application_recipe_cannot_reach_the_internal_commands() {
    let server = RedisServer::builder().start();
    let mut admin = server.connection();
    send_command_expecting_success(
        &mut admin,
        &["QSESS.SET", "victim-cookie-0123456789", "USER", "alice", "DATA", "d"],
    );
    let mut app = user_connection(&server, &mut admin, "app", &application_recipe());

    let victim = handle_of("victim-cookie-0123456789");
    let record = forged_record(&mut admin, "mallory");
    for words in [
        vec!["QSESS.RESTORE".as_bytes(), b"0", victim.as_bytes(), &record],
        vec![b"QSESS.RESTOREUSER", b"0", b"alice"],
        vec![b"QSESS.LOADER", b"60000"],
        vec![b"QSESS.LOADER", b"0"],
    ] {
        let error = redis::cmd(std::str::from_utf8(words[0]).unwrap())
            .arg(&words[1..])
            .query::<Value>(&mut app)
            .expect_err("internal commands are not the application's");
        assert_eq!(error.code(), Some("NOPERM"), "{error}");
    }
    // The ordinary commands work, and the victim's session is untouched.
    send_command_expecting_success(&mut app, &["QSESS.SET", "app-cookie-0123456789", "USER", "bob"]);
    let owner = peek_user(&mut admin, "victim-cookie-0123456789");
    assert_eq!(owner.as_deref(), Some("alice"));
}

fn peek_user(con: &mut Connection, sid: &str) -> Option<String> {
    let flat: Vec<Value> = redis::cmd("QSESS.PEEK").arg(sid).query(con).unwrap();
    flat.chunks_exact(2).find_map(|pair| match (&pair[0], &pair[1]) {
        (Value::BulkString(name), Value::BulkString(value)) if name == b"user" => {
            Some(String::from_utf8(value.clone()).unwrap())
        }
        _ => None,
    })
}

#[test]
fn all_but_dangerous_does_not_reach_the_internal_commands() {
    // The finding: `+@all -@dangerous` could forge sessions through QSESS.RESTORE.
    let server = RedisServer::builder().start();
    let mut admin = server.connection();
    let mut svc =
        user_connection(&server, &mut admin, "svc", &["on", ">app-password-7f3a", "~*", "+@all", "-@dangerous"]);
    for words in [
        &["QSESS.LOADER", "0"][..],
        &["QSESS.RESTOREUSER", "0", "alice"],
        &["QSESS.RESTORE", "0", &handle_of("x-0123456789abcdef"), "NOTFOUND"],
    ] {
        let error = refusal(&mut svc, words);
        assert_eq!(error.code(), Some("NOPERM"), "{words:?}: {error}");
    }
    if server.server_name() == ServerName::Valkey {
        // Where modules have categories, @write must not grant them either.
        let mut writer =
            user_connection(&server, &mut admin, "writer", &["on", ">app-password-7f3a", "~*", "+@write", "+@read"]);
        let error = refusal(&mut writer, &["QSESS.LOADER", "0"]);
        assert_eq!(error.code(), Some("NOPERM"), "{error}");
    }
}

#[test]
fn key_patterns_apply_to_the_keys_qsess_writes_not_to_the_ids() {
    let server = RedisServer::builder().start();
    let mut admin = server.connection();
    let mut cache_only = user_connection(
        &server,
        &mut admin,
        "cacheonly",
        &["on", ">app-password-7f3a", "~cache:*", "+@all", "-@dangerous"],
    );
    let raw_id = "cache:raw-secret-cookie-4f2b9c";
    for words in [
        &["QSESS.SET", raw_id, "DATA", "x"][..],
        &["QSESS.NEW", "USER", "42"],
        &["QSESS.GET", raw_id],
        &["QSESS.BYUSER", "42"],
    ] {
        let error = refusal(&mut cache_only, words);
        assert_eq!(error.code(), Some("NOPERM"), "{words:?}: {error}");
        assert!(!error.to_string().contains("raw-secret"), "the refusal echoes the raw id: {error}");
    }
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut admin).unwrap();
    assert!(keys.is_empty(), "a refused command wrote {keys:?}");

    // The refusals are in ACL LOG under the derived key names, never the raw id.
    let log: Value = redis::cmd("ACL").arg("LOG").query(&mut admin).unwrap();
    let text = format!("{log:?}");
    assert!(text.contains(&bucket_key_prefix(0)), "ACL LOG should name the derived keys: {text}");
    assert!(!text.contains("raw-secret"), "ACL LOG holds the raw id: {text}");

    // A pattern that grants the qsess keys works, whatever the ids look like.
    let mut sessions = user_connection(
        &server,
        &mut admin,
        "sessions",
        &["on", ">app-password-7f3a", "~qs:*", "+@all", "-@dangerous"],
    );
    send_command_expecting_success(&mut sessions, &["QSESS.SET", raw_id, "USER", "42"]);
    // Read-only key access reads but does not write.
    let mut reader = user_connection(
        &server,
        &mut admin,
        "reader",
        &["on", ">app-password-7f3a", "%R~qs:*", "+@all", "-@dangerous"],
    );
    assert_ne!(send_command_expecting_success(&mut reader, &["QSESS.PEEK", raw_id]), Value::Nil);
    let error = refusal(&mut reader, &["QSESS.SET", raw_id, "DATA", "y"]);
    assert_eq!(error.code(), Some("NOPERM"), "{error}");
}

#[test]
fn client_tracking_remembers_no_raw_session_id() {
    let server = RedisServer::builder().start();
    let mut admin = server.connection();
    send_command_expecting_success(&mut admin, &["QSESS.SET", "tracked-cookie-0123456789", "USER", "42"]);
    let mut tracking = server.connection_resp3();
    send_command_expecting_success(&mut tracking, &["CLIENT", "TRACKING", "ON"]);
    send_command_expecting_success(&mut tracking, &["QSESS.PEEK", "tracked-cookie-0123456789"]);
    send_command_expecting_success(&mut tracking, &["QSESS.BYUSER", "42"]);
    // Nothing keyed by a raw id (or a uid) is in the tracking table, so no cache can serve a session
    // after it was logged out: tracking is off for qsess commands.
    let info: String = redis::cmd("INFO").arg("stats").query(&mut admin).unwrap();
    let tracked = info.lines().find_map(|line| line.strip_prefix("tracking_total_keys:")).unwrap().trim();
    assert_eq!(tracked, "0", "{info}");
}
