//! Small command, reply and stream helpers shared by the end-to-end test files.

use std::collections::BTreeMap;

use crate::support::session_keys::change_stream_key;
use redis::{Connection, Value};

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

pub(crate) fn query_value(con: &mut Connection, command: &str, args: &[&str]) -> Value {
    redis::cmd(command).arg(args).query(con).unwrap_or_else(|e| panic!("{command} {args:?}: {e}"))
}

/// Every key in the database, sorted, and the change stream's length: what "nothing written" compares.
pub(crate) fn sorted_keys_and_stream_length(con: &mut Connection) -> (Vec<String>, i64) {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(con).unwrap();
    keys.sort();
    let length: i64 = redis::cmd("XLEN").arg(change_stream_key(0)).query(con).unwrap();
    (keys, length)
}

pub(crate) fn stream_length(con: &mut Connection) -> usize {
    redis::cmd("XLEN").arg(change_stream_key(0)).query(con).unwrap()
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

/// Every key in the database, found with SCAN (which never blocks the server the way KEYS does on a
/// large keyspace), sorted and without the repeats SCAN may return.
pub(crate) fn every_key_via_scan(con: &mut Connection) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query(con).unwrap();
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Every byte of a reply, flattened (bulk strings, simple strings, integers as text, nested values),
/// one line a value: what the raw-id checks search for session id material.
pub(crate) fn flatten_reply_bytes(value: &Value, into: &mut Vec<u8>) {
    match value {
        Value::BulkString(bytes) => into.extend_from_slice(bytes),
        Value::SimpleString(text) => into.extend_from_slice(text.as_bytes()),
        Value::Int(number) => into.extend_from_slice(number.to_string().as_bytes()),
        Value::Array(items) | Value::Set(items) => items.iter().for_each(|item| flatten_reply_bytes(item, into)),
        Value::Map(pairs) => pairs.iter().for_each(|(name, value)| {
            flatten_reply_bytes(name, into);
            flatten_reply_bytes(value, into);
        }),
        other => into.extend_from_slice(format!("{other:?}").as_bytes()),
    }
    into.push(b'\n');
}
