//! Small command, key-name, stream and server-clock helpers shared by the end-to-end test files.

use std::collections::BTreeMap;
use std::time::Duration;

use qsess_record::Handle;
use qsess_tests::eventually;
use redis::{Connection, Value};

const CHANGE_STREAM_KEY: &str = "qs:{0}:chg";

pub(crate) fn handle_text_of_session_id(session_id: &str) -> String {
    Handle::from_session_id(session_id.as_bytes()).to_string()
}

pub(crate) fn tombstone_key_of(session_id: &str) -> String {
    format!("qs:{{0}}:t:{}", handle_text_of_session_id(session_id))
}

pub(crate) fn key_exists(con: &mut Connection, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query::<i64>(con).unwrap() == 1
}

/// Sends one command given as words, the first being the command name.
pub(crate) fn send_command_words(con: &mut Connection, words: &[&str]) -> redis::RedisResult<Value> {
    let mut command = redis::cmd(words[0]);
    for word in &words[1..] {
        command.arg(*word);
    }
    command.query(con)
}

pub(crate) fn send_command_expecting_success(con: &mut Connection, words: &[&str]) -> Value {
    send_command_words(con, words).unwrap_or_else(|e| panic!("{words:?} failed: {e}"))
}

pub(crate) fn send_command_expecting_integer(con: &mut Connection, words: &[&str]) -> i64 {
    match send_command_words(con, words) {
        Ok(Value::Int(number)) => number,
        other => panic!("{words:?} answered {other:?}, expected an integer"),
    }
}

pub(crate) fn server_clock_ms(con: &mut Connection) -> i64 {
    let (seconds, micros): (i64, i64) = redis::cmd("TIME").query(con).unwrap();
    seconds * 1000 + micros / 1000
}

/// Waits for the server clock to tick, so that a read with touch-granularity-ms 0 records activity.
pub(crate) fn wait_for_the_next_server_millisecond(con: &mut Connection) {
    let start = server_clock_ms(con);
    eventually(Duration::from_secs(5), "the server clock to move on", || {
        if server_clock_ms(con) > start {
            Ok(())
        } else {
            Err("server clock has not moved".to_owned())
        }
    });
}

pub(crate) fn session_field_integer(fields: &[(String, Value)], name: &str) -> i64 {
    match fields.iter().find(|(field, _)| field == name) {
        Some((_, Value::Int(number))) => *number,
        other => panic!("field {name} is not an integer: {other:?} in {fields:?}"),
    }
}

pub(crate) fn session_field_text(fields: &[(String, Value)], name: &str) -> Option<String> {
    match fields.iter().find(|(field, _)| field == name) {
        None => None,
        Some((_, Value::BulkString(bytes))) => Some(String::from_utf8(bytes.clone()).unwrap()),
        Some(other) => panic!("field {name} is not a bulk string: {other:?}"),
    }
}

/// Every key with its type, DUMP payload and absolute expiry: equal snapshots mean nothing was written.
pub(crate) fn snapshot_of_every_key_dump_and_expiry(con: &mut Connection) -> BTreeMap<Vec<u8>, (String, Vec<u8>, i64)> {
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(con).unwrap();
    keys.into_iter()
        .map(|key| {
            let kind: String = redis::cmd("TYPE").arg(&key).query(con).unwrap();
            let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query(con).unwrap();
            let expires: i64 = redis::cmd("PEXPIRETIME").arg(&key).query(con).unwrap();
            (key, (kind, dump, expires))
        })
        .collect()
}

pub(crate) fn qsess_set_or_panic(con: &mut Connection, args: &[&str]) {
    let reply: Value = redis::cmd("QSESS.SET").arg(args).query(con).unwrap();
    assert!(matches!(reply, Value::Int(_)), "QSESS.SET {args:?} replied {reply:?}");
}

pub(crate) fn record_key_of_session_id(sid: &str) -> String {
    format!("qs:{{0}}:s:{}", Handle::from_session_id(sid.as_bytes()))
}

pub(crate) fn query_value(con: &mut Connection, command: &str, args: &[&str]) -> Value {
    redis::cmd(command).arg(args).query(con).unwrap_or_else(|e| panic!("{command} {args:?}: {e}"))
}

/// Every key in the database, sorted, and the change stream's length: what "nothing written" compares.
pub(crate) fn sorted_keys_and_stream_length(con: &mut Connection) -> (Vec<String>, i64) {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(con).unwrap();
    keys.sort();
    let length: i64 = redis::cmd("XLEN").arg(CHANGE_STREAM_KEY).query(con).unwrap();
    (keys, length)
}

pub(crate) fn stream_length(con: &mut Connection) -> usize {
    redis::cmd("XLEN").arg(CHANGE_STREAM_KEY).query(con).unwrap()
}

pub(crate) fn qsess_command_reply(con: &mut Connection, name: &str, args: &[&str]) -> Value {
    redis::cmd(name).arg(args).query(con).unwrap_or_else(|e| panic!("{name} {args:?} failed: {e}"))
}

pub(crate) fn qsess_command_error_text(con: &mut Connection, name: &str, args: &[&str]) -> String {
    let error = redis::cmd(name).arg(args).query::<Value>(con).expect_err("the command must be refused");
    format!("{} {}", error.code().unwrap_or("?"), error.detail().unwrap_or(""))
}

pub(crate) fn borrowed_pairs(entry: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
    entry.iter().map(|(field, value)| (field.as_slice(), value.as_slice())).collect()
}

pub(crate) fn byuser_handles(con: &mut Connection, uid: &str) -> Vec<String> {
    redis::cmd("QSESS.BYUSER").arg(uid).query(con).unwrap()
}

/// A record reply (RESP2 flat array of field/value pairs) of `command` as ordered pairs, or `None` for nil.
pub(crate) fn record_reply_fields_in_order(reply: Value, command: &str) -> Option<Vec<(String, Value)>> {
    match reply {
        Value::Nil => None,
        Value::Array(items) => {
            assert_eq!(items.len() % 2, 0, "odd-length reply {items:?}");
            Some(
                items
                    .chunks(2)
                    .map(|pair| match &pair[0] {
                        Value::BulkString(name) => (String::from_utf8(name.clone()).unwrap(), pair[1].clone()),
                        other => panic!("field name is not a bulk string: {other:?}"),
                    })
                    .collect(),
            )
        }
        other => panic!("{command} replied {other:?}"),
    }
}
