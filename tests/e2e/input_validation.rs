//! Every refusal: the exact error message, and proof that the refused command wrote nothing (DBSIZE,
//! the change stream's length and every key's DUMP and expiry are unchanged). Garbage never crashes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::commands::qsess_set_or_panic;
use crate::support::server_clock::wait_until_server_clock_is_past;
use crate::support::session_keys::{change_stream_key, session_key_of, user_index_key_of};
use qsess_record::Handle;
use qsess_tests::RedisServer;
use redis::{Connection, Value};

const IP_ACCEPTED: &str = "; accepted: an IPv4 or IPv6 address such as 203.0.113.7 or 2001:db8::1";
const TIMEOUT_RANGE: &str = "must be an integer from 0 to 316224000000";

/// DBSIZE, XLEN of bucket 0's change stream, and every key with its type, DUMP payload and absolute expiry.
type KeyspaceSnapshot = (i64, i64, BTreeMap<Vec<u8>, (String, Vec<u8>, i64)>);

fn snapshot_of_dbsize_stream_length_and_every_key(con: &mut Connection) -> KeyspaceSnapshot {
    let dbsize: i64 = redis::cmd("DBSIZE").query(con).unwrap();
    // -1 when not a stream (the WRONGTYPE test puts a list there).
    let stream_length: i64 = redis::cmd("XLEN").arg(change_stream_key(0)).query(con).unwrap_or(-1);
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(con).unwrap();
    let every_key = keys
        .into_iter()
        .map(|key| {
            let kind: String = redis::cmd("TYPE").arg(&key).query(con).unwrap();
            let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query(con).unwrap();
            let expires: i64 = redis::cmd("PEXPIRETIME").arg(&key).query(con).unwrap();
            (key, (kind, dump, expires))
        })
        .collect();
    (dbsize, stream_length, every_key)
}

/// Runs the command, asserts an error reply starting with `expected_prefix`, and that nothing changed.
fn assert_refused_with_prefix_and_nothing_written(
    con: &mut Connection,
    command: &str,
    args: &[&[u8]],
    expected_prefix: &str,
) {
    let before = snapshot_of_dbsize_stream_length_and_every_key(con);
    let printable: Vec<String> =
        args.iter().map(|arg| String::from_utf8_lossy(arg).chars().take(40).collect()).collect();
    let error = match redis::cmd(command).arg(args).query::<Value>(con) {
        Ok(reply) => panic!("{command} {printable:?} was accepted with {reply:?}; expected {expected_prefix:?}"),
        Err(error) => format!("{} {}", error.code().unwrap_or("?"), error.detail().unwrap_or("")),
    };
    assert!(error.starts_with(expected_prefix), "{command} {printable:?}: got {error:?}, expected {expected_prefix:?}");
    let after = snapshot_of_dbsize_stream_length_and_every_key(con);
    assert!(before == after, "{command} {printable:?} was refused but wrote: {before:?} -> {after:?}");
}

fn refused_with_text_args(con: &mut Connection, command: &str, args: &[&str], expected_prefix: &str) {
    let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
    assert_refused_with_prefix_and_nothing_written(con, command, &args, expected_prefix);
}

/// An integer field of a PEEK reply (RESP2 flat array).
fn peek_integer_field(con: &mut Connection, sid: &str, name: &str) -> i64 {
    let flat: Vec<Value> = redis::cmd("QSESS.PEEK").arg(sid).query(con).unwrap();
    let position = flat.iter().position(|item| *item == Value::BulkString(name.as_bytes().to_vec()));
    match position.and_then(|at| flat.get(at + 1)) {
        Some(Value::Int(number)) => *number,
        other => panic!("no integer field {name} in {flat:?}: {other:?}"),
    }
}

fn qsess_panic_count(con: &mut Connection) -> String {
    let info: String = redis::cmd("INFO").arg("qsess").query(con).unwrap();
    info.lines().find_map(|line| line.strip_prefix("qsess_panics:")).unwrap_or("missing").trim().to_owned()
}

#[test]
fn option_errors_are_refused_with_their_message_and_write_nothing() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["base", "USER", "u1", "DATA", "d", "IP", "192.0.2.1", "UA", "agent"]);
    qsess_set_or_panic(&mut con, &["anonymous", "DATA", "d"]);
    let uid257 = "u".repeat(257);
    let ua513 = "a".repeat(513);
    let set_accepted = "; accepted: DATA, USER, ANON, IP, UA, IDLE, ABSOLUTE, NX, XX, LIMIT";
    let new_accepted = "; accepted: DATA, USER, ANON, IP, UA, IDLE, ABSOLUTE, LIMIT";
    let cases: Vec<(&str, Vec<&str>, String)> = vec![
        ("QSESS.SET", vec!["base", "TTL", "5"], format!("ERR unknown option for QSESS.SET{set_accepted}")),
        ("QSESS.SET", vec!["fresh", "ttl"], format!("ERR unknown option for QSESS.SET{set_accepted}")),
        ("QSESS.NEW", vec!["NX"], format!("ERR unknown option for QSESS.NEW{new_accepted}")),
        ("QSESS.GET", vec!["base", "TOUCH"], "ERR unknown option for QSESS.GET; accepted: NOTOUCH".into()),
        ("QSESS.BYUSER", vec!["u1", "ALL"], "ERR unknown option for QSESS.BYUSER; accepted: WITHMETA".into()),
        ("QSESS.REVOKEUSER", vec!["u1", "BUT"], "ERR unknown option for QSESS.REVOKEUSER; accepted: EXCEPT".into()),
        ("QSESS.NEW", vec!["DATA", "a", "DATA", "b"], "ERR option DATA given more than once".into()),
        ("QSESS.NEW", vec!["USER"], "ERR option USER needs a value".into()),
        ("QSESS.SET", vec!["base", "NX", "XX"], "ERR NX and XX cannot be used together".into()),
        ("QSESS.SET", vec!["base", "xx", "nx"], "ERR NX and XX cannot be used together".into()),
        ("QSESS.SET", vec!["base", "USER", "u2", "ANON"], "ERR USER and ANON cannot be used together".into()),
        ("QSESS.NEW", vec!["ANON", "USER", "u2"], "ERR USER and ANON cannot be used together".into()),
        ("QSESS.SET", vec!["base", "USER", ""], "ERR user id must not be empty".into()),
        ("QSESS.NEW", vec!["USER", ""], "ERR user id must not be empty".into()),
        ("QSESS.SET", vec!["base", "USER", &uid257], "ERR user id is 257 bytes long; at most 256 are accepted".into()),
        ("QSESS.SET", vec!["base", "UA", &ua513], "ERR user agent is 513 bytes long; at most 512 are accepted".into()),
        ("QSESS.SET", vec!["base", "IDLE", "-5"], format!("ERR IDLE (ms) {TIMEOUT_RANGE}")),
        ("QSESS.SET", vec!["base", "IDLE", "1.5"], format!("ERR IDLE (ms) {TIMEOUT_RANGE}")),
        ("QSESS.SET", vec!["base", "IDLE", "+5"], format!("ERR IDLE (ms) {TIMEOUT_RANGE}")),
        ("QSESS.SET", vec!["base", "IDLE", "316224000001"], format!("ERR IDLE (ms) {TIMEOUT_RANGE}")),
        ("QSESS.NEW", vec!["ABSOLUTE", "abc"], format!("ERR ABSOLUTE (ms) {TIMEOUT_RANGE}")),
        ("QSESS.SET", vec!["base", "LIMIT", "0"], "ERR LIMIT must be an integer from 1 to 1000000".into()),
        ("QSESS.SET", vec!["base", "LIMIT", "1000001"], "ERR LIMIT must be an integer from 1 to 1000000".into()),
        ("QSESS.SET", vec!["base", "ANON", "LIMIT", "2"], "ERR LIMIT needs an owner: give USER or update".into()),
        ("QSESS.SET", vec!["anonymous", "LIMIT", "2"], "ERR LIMIT needs an owner: give USER or update".into()),
        ("QSESS.SET", vec!["fresh", "LIMIT", "2"], "ERR LIMIT needs an owner: give USER or update".into()),
    ];
    for (command, args, expected) in &cases {
        refused_with_text_args(&mut con, command, args, expected);
    }
    for option in ["DATA a", "USER a", "ANON", "IP 1.2.3.4", "UA a", "IDLE 1000", "ABSOLUTE 1", "LIMIT 1", "NX", "XX"] {
        let words: Vec<&str> = option.split(' ').collect();
        let args: Vec<&str> = ["base"].into_iter().chain(words.iter().copied()).chain(words.iter().copied()).collect();
        refused_with_text_args(&mut con, "QSESS.SET", &args, &format!("ERR option {} given more than once", words[0]));
        if words.len() == 2 {
            refused_with_text_args(
                &mut con,
                "QSESS.SET",
                &["base", words[0]],
                &format!("ERR option {} needs a value", words[0]),
            );
        }
    }
    for bad_ip in ["300.1.1.1", "[::1]", "1.2.3.4:80", "fe80::1%eth0", "localhost", "", "1.2.3"] {
        let expected = format!("ERR invalid IP address{IP_ACCEPTED}");
        refused_with_text_args(&mut con, "QSESS.SET", &["base", "IP", bad_ip], &expected);
        refused_with_text_args(&mut con, "QSESS.NEW", &["IP", bad_ip], &expected);
    }
    let no_timeout = "ERR a session needs an idle or an absolute timeout: IDLE and ABSOLUTE cannot both be 0";
    refused_with_text_args(&mut con, "QSESS.SET", &["base", "IDLE", "0", "ABSOLUTE", "0"], no_timeout);
    refused_with_text_args(&mut con, "QSESS.SET", &["fresh", "IDLE", "0", "ABSOLUTE", "0"], no_timeout);
    refused_with_text_args(&mut con, "QSESS.NEW", &["IDLE", "0", "ABSOLUTE", "0", "USER", "u1"], no_timeout);
    // Positive controls at the boundaries just refused.
    qsess_set_or_panic(&mut con, &["edge", "UA", &"a".repeat(512), "USER", &"u".repeat(256), "LIMIT", "1000000"]);
}

#[test]
fn session_user_and_handle_errors_are_refused_and_write_nothing() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["base", "USER", "u1"]);
    let long_sid = "s".repeat(257);
    let empty = "ERR session id must not be empty";
    let too_long = "ERR session id is 257 bytes long; at most 256 are accepted";
    for (sid, expected) in [("", empty), (long_sid.as_str(), too_long)] {
        refused_with_text_args(&mut con, "QSESS.SET", &[sid, "DATA", "x"], expected);
        refused_with_text_args(&mut con, "QSESS.GET", &[sid], expected);
        refused_with_text_args(&mut con, "QSESS.GET", &[sid, "NOTOUCH"], expected);
        refused_with_text_args(&mut con, "QSESS.PEEK", &[sid], expected);
        refused_with_text_args(&mut con, "QSESS.TOUCH", &[sid], expected);
        refused_with_text_args(&mut con, "QSESS.DEL", &["base", sid], expected);
        refused_with_text_args(&mut con, "QSESS.ROTATE", &["base", sid], expected);
        refused_with_text_args(&mut con, "QSESS.ROTATE", &[sid, "other"], expected);
        refused_with_text_args(&mut con, "QSESS.REVOKEUSER", &["u1", "EXCEPT", sid], expected);
    }
    qsess_set_or_panic(&mut con, &[&"s".repeat(256)]);
    let empty_uid = "ERR user id must not be empty";
    let handle = Handle::from_session_id(b"base").to_string();
    refused_with_text_args(&mut con, "QSESS.BYUSER", &[""], empty_uid);
    refused_with_text_args(&mut con, "QSESS.REVOKEUSER", &[""], empty_uid);
    refused_with_text_args(&mut con, "QSESS.REVOKE", &["", &handle], empty_uid);
    let long_uid = "u".repeat(257);
    refused_with_text_args(&mut con, "QSESS.BYUSER", &[&long_uid], "ERR user id is 257 bytes long");
    let bad_handle = "ERR invalid handle: expected 22 base64url characters as returned by QSESS.BYUSER";
    for bad in ["short", "base", "ungWv48Bz+pBQUDeXa4iIw", "ungWv48Bz-pBQUDeXa4iIx", "ungWv48Bz-pBQUDeXa4i=="] {
        refused_with_text_args(&mut con, "QSESS.REVOKE", &["u1", &handle, bad], bad_handle);
    }
}

#[test]
fn refusals_that_depend_on_stored_state_write_nothing() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["gone", "USER", "u1"]);
    let deleted: i64 = redis::cmd("QSESS.DEL").arg("gone").query(&mut con).unwrap();
    assert_eq!(deleted, 1);
    let revoked = "ERR session id was revoked and cannot be used again; mint a new one with QSESS.NEW";
    refused_with_text_args(&mut con, "QSESS.SET", &["gone", "DATA", "back"], revoked);
    refused_with_text_args(&mut con, "QSESS.SET", &["gone", "NX", "USER", "u1"], revoked);

    qsess_set_or_panic(&mut con, &["aging", "USER", "u1"]);
    let created = peek_integer_field(&mut con, "aging", "created");
    wait_until_server_clock_is_past(&mut con, created + 2);
    let over = "ERR the timeouts given end the session before now; use QSESS.DEL to end it";
    refused_with_text_args(&mut con, "QSESS.SET", &["aging", "ABSOLUTE", "1"], over);
}

#[test]
fn data_above_max_data_bytes_is_refused_and_writes_nothing() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    redis::cmd("CONFIG").arg("SET").arg("qsess.max-data-bytes").arg(8).exec(&mut con).unwrap();
    qsess_set_or_panic(&mut con, &["small", "DATA", "12345678"]);
    let too_big = "ERR data is 9 bytes long; at most 8 are accepted (qsess.max-data-bytes)";
    refused_with_text_args(&mut con, "QSESS.SET", &["small", "DATA", "123456789"], too_big);
    refused_with_text_args(&mut con, "QSESS.SET", &["other", "DATA", "123456789"], too_big);
    refused_with_text_args(&mut con, "QSESS.NEW", &["DATA", "123456789"], too_big);
    let big_binary: Vec<u8> = vec![0; 1000];
    let expected = "ERR data is 1000 bytes long; at most 8 are accepted (qsess.max-data-bytes)";
    assert_refused_with_prefix_and_nothing_written(
        &mut con,
        "QSESS.SET",
        &[b"small".as_slice(), b"DATA", &big_binary],
        expected,
    );
    let peeked: Vec<Value> = redis::cmd("QSESS.PEEK").arg("small").query(&mut con).unwrap();
    assert_eq!(peeked[2..4], [Value::BulkString(b"data".to_vec()), Value::BulkString(b"12345678".to_vec())]);
}

#[test]
fn wrong_arity_of_each_command_is_refused_and_writes_nothing() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["base", "USER", "u1"]);
    let cases: [(&str, &[&str]); 17] = [
        ("QSESS.SET", &[]),
        ("QSESS.GET", &[]),
        ("QSESS.GET", &["base", "NOTOUCH", "extra"]),
        ("QSESS.PEEK", &[]),
        ("QSESS.PEEK", &["base", "extra"]),
        ("QSESS.TOUCH", &[]),
        ("QSESS.TOUCH", &["base", "extra"]),
        ("QSESS.ROTATE", &["base"]),
        ("QSESS.ROTATE", &["base", "new", "extra"]),
        ("QSESS.DEL", &[]),
        ("QSESS.BYUSER", &[]),
        ("QSESS.BYUSER", &["u1", "WITHMETA", "extra"]),
        ("QSESS.REVOKEUSER", &[]),
        ("QSESS.REVOKEUSER", &["u1", "EXCEPT"]),
        ("QSESS.REVOKEUSER", &["u1", "EXCEPT", "base", "extra"]),
        ("QSESS.REVOKE", &["u1"]),
        ("QSESS.REVOKE", &[]),
    ];
    for (command, args) in cases {
        let expected = format!("ERR wrong number of arguments for '{}' command", command.to_ascii_lowercase());
        refused_with_text_args(&mut con, command, args, &expected);
    }
}

#[test]
fn a_non_string_at_a_session_record_key_is_wrongtype_for_every_command() {
    let server = RedisServer::builder().module_arg("touch-granularity-ms", 0).start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["live", "USER", "u1"]);
    let hijacked_key = session_key_of("hijacked");
    redis::cmd("HSET").arg(&hijacked_key).arg("field").arg("value").exec(&mut con).unwrap();
    let expected = format!("WRONGTYPE key {hijacked_key} holds a value of the wrong kind for qsess");
    for (command, args) in [
        ("QSESS.SET", &["hijacked", "DATA", "x"][..]),
        ("QSESS.SET", &["hijacked", "XX"]),
        ("QSESS.GET", &["hijacked"]),
        ("QSESS.GET", &["hijacked", "NOTOUCH"]),
        ("QSESS.PEEK", &["hijacked"]),
        ("QSESS.TOUCH", &["hijacked"]),
        ("QSESS.DEL", &["live", "hijacked"]),
        ("QSESS.ROTATE", &["hijacked", "fresh"]),
        ("QSESS.ROTATE", &["live", "hijacked"]),
    ] {
        refused_with_text_args(&mut con, command, args, &expected);
    }
}

#[test]
fn a_non_zset_at_a_user_index_key_is_wrongtype_for_every_command_that_uses_it() {
    let server = RedisServer::builder().module_arg("touch-granularity-ms", 0).start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["owned", "USER", "42"]);
    let handle = Handle::from_session_id(b"owned").to_string();
    let seen = peek_integer_field(&mut con, "owned", "seen");
    wait_until_server_clock_is_past(&mut con, seen);
    redis::cmd("DEL").arg(user_index_key_of("42")).exec(&mut con).unwrap();
    redis::cmd("SET").arg(user_index_key_of("42")).arg("not an index").exec(&mut con).unwrap();
    let expected = format!("WRONGTYPE key {} holds a value of the wrong kind for qsess", user_index_key_of("42"));
    for (command, args) in [
        ("QSESS.SET", &["newcomer", "USER", "42"][..]),
        ("QSESS.NEW", &["USER", "42"]),
        ("QSESS.SET", &["owned", "DATA", "x"]),
        ("QSESS.SET", &["owned", "USER", "someone-else"]),
        ("QSESS.SET", &["owned", "ANON"]),
        ("QSESS.GET", &["owned"]),
        ("QSESS.TOUCH", &["owned"]),
        ("QSESS.DEL", &["owned"]),
        ("QSESS.ROTATE", &["owned", "rotated"]),
        ("QSESS.BYUSER", &["42"]),
        ("QSESS.REVOKEUSER", &["42"]),
        ("QSESS.REVOKE", &["42", &handle]),
    ] {
        refused_with_text_args(&mut con, command, args, &expected);
    }
}

#[test]
fn a_non_stream_at_the_change_stream_key_is_wrongtype_for_every_writing_command() {
    let server = RedisServer::builder().module_arg("touch-granularity-ms", 0).start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["live", "USER", "u1"]);
    let seen = peek_integer_field(&mut con, "live", "seen");
    wait_until_server_clock_is_past(&mut con, seen);
    redis::cmd("DEL").arg(change_stream_key(0)).exec(&mut con).unwrap();
    redis::cmd("RPUSH").arg(change_stream_key(0)).arg("not a stream").exec(&mut con).unwrap();
    let handle = Handle::from_session_id(b"live").to_string();
    let expected = format!("WRONGTYPE key {} holds a value of the wrong kind for qsess", change_stream_key(0));
    for (command, args) in [
        ("QSESS.SET", &["fresh", "DATA", "x"][..]),
        ("QSESS.SET", &["live", "DATA", "x"]),
        ("QSESS.NEW", &["USER", "u1"]),
        ("QSESS.GET", &["live"]),
        ("QSESS.TOUCH", &["live"]),
        ("QSESS.DEL", &["live"]),
        ("QSESS.ROTATE", &["live", "rotated"]),
        ("QSESS.REVOKEUSER", &["u1"]),
        ("QSESS.REVOKE", &["u1", &handle]),
    ] {
        refused_with_text_args(&mut con, command, args, &expected);
    }
}

#[test]
fn ids_without_a_valid_bucket_are_refused_when_there_are_several_buckets() {
    let server = RedisServer::builder().module_arg("buckets", 4).start();
    let mut con = server.connection();
    let sid: String = redis::cmd("QSESS.NEW").arg("USER").arg("u1").query(&mut con).unwrap();
    let without_bucket = "ERR session id must start with its bucket as '<bucket>.' where bucket is below 4";
    for bad in ["nodot", "4.x", "x.y", ".x", "3.", "-1.x"] {
        refused_with_text_args(&mut con, "QSESS.SET", &[bad, "DATA", "x"], without_bucket);
        refused_with_text_args(&mut con, "QSESS.GET", &[bad], without_bucket);
        refused_with_text_args(&mut con, "QSESS.PEEK", &[bad], without_bucket);
        refused_with_text_args(&mut con, "QSESS.DEL", &[&sid, bad], without_bucket);
        refused_with_text_args(&mut con, "QSESS.ROTATE", &[&sid, bad], without_bucket);
    }
    let bucket: u32 = sid.split_once('.').unwrap().0.parse().unwrap();
    let elsewhere = format!("{}.elsewhere", (bucket + 1) % 4);
    refused_with_text_args(&mut con, "QSESS.ROTATE", &[&sid, &elsewhere], "ERR session id is in bucket");
}

#[test]
fn non_utf8_garbage_arguments_never_crash_the_server() {
    let server = RedisServer::builder().module_arg("touch-granularity-ms", 0).start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["live", "USER", "u1"]);
    let garbage: [&[u8]; 5] = [b"\xff\xfe\xfd", b"\x00", b"\xc3\x28\x00\xff", b"\xed\xa0\x80", &[0x80; 300]];
    let commands = ["QSESS.SET", "QSESS.NEW", "QSESS.GET", "QSESS.PEEK", "QSESS.TOUCH", "QSESS.ROTATE"];
    let more = ["QSESS.DEL", "QSESS.BYUSER", "QSESS.REVOKEUSER", "QSESS.REVOKE"];
    for command in commands.into_iter().chain(more) {
        for junk in garbage {
            let shapes: [Vec<&[u8]>; 6] = [
                vec![junk],
                vec![junk, junk],
                vec![b"live".as_slice(), junk],
                vec![junk, b"USER".as_slice(), junk, b"IP", junk],
                vec![b"u1".as_slice(), b"EXCEPT", junk],
                vec![b"live".as_slice(), b"UA", junk, b"DATA", junk, junk],
            ];
            for args in shapes {
                // Any reply is fine here (error replies echoing garbage are checked by
                // error_replies_that_quote_client_input_are_valid_utf8); a dead server is not.
                if redis::cmd(command).arg(&args).query::<Value>(&mut con).is_err_and(|e| e.code().is_none()) {
                    con = server.connection();
                }
            }
        }
    }
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(qsess_panic_count(&mut con), "0");
    assert!(!server.log().contains("panicked"), "{}", server.log());
    // The module still works after the barrage (which ended "live" through DEL/ROTATE/REVOKEUSER).
    qsess_set_or_panic(&mut con, &["after-garbage", "DATA", "ok"]);
    let peeked: Value = redis::cmd("QSESS.PEEK").arg("after-garbage").query(&mut con).unwrap();
    assert!(matches!(peeked, Value::Array(_)), "{peeked:?}");
}

/// Sends one command over a plain socket and returns the first reply line (for `-ERR ...` replies)
/// byte for byte, so that replies a client library cannot parse can still be inspected.
fn first_reply_line_over_raw_socket(port: u16, args: &[&[u8]]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    stream.write_all(&request).unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).unwrap();
        reply.push(byte[0]);
    }
    reply
}

#[test]
fn error_replies_that_quote_client_input_are_valid_utf8() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    redis::cmd("SET").arg(user_index_key_of("jos\u{e9}")).arg("not an index").exec(&mut con).unwrap();
    let wrong_type_of_the_index = format!("-WRONGTYPE key {}", user_index_key_of("jos"));
    let cases: [(&[&[u8]], &str); 4] = [
        // Refusals name what is accepted and never quote the argument, which may be a misplaced id.
        (&[b"QSESS.SET", b"s1", "caf\u{e9}".as_bytes()], "-ERR unknown option for QSESS.SET; accepted"),
        (&[b"QSESS.SET", b"s1", b"\xff\xfe"], "-ERR unknown option for QSESS.SET; accepted"),
        (&[b"QSESS.SET", b"s1", b"IP", "caf\u{e9}".as_bytes()], "-ERR invalid IP address; accepted"),
        (&[b"QSESS.BYUSER", "jos\u{e9}".as_bytes()], &wrong_type_of_the_index),
    ];
    let mut invalid = Vec::new();
    for (args, expected_prefix) in cases {
        let line = first_reply_line_over_raw_socket(server.port(), args);
        assert!(line.starts_with(expected_prefix.as_bytes()), "{:?}", String::from_utf8_lossy(&line));
        if std::str::from_utf8(&line).is_err() {
            invalid.push(format!("{:?} -> {}", String::from_utf8_lossy(args[args.len() - 1]), line.escape_ascii()));
        }
    }
    assert!(invalid.is_empty(), "error replies that are not valid UTF-8 (clients fail to parse them): {invalid:#?}");
}
