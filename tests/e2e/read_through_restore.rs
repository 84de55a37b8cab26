//! `QSESS.RESTORE` on its own, with no daemon: what it writes, what it refuses (STALE, EXPIRED, REVOKED,
//! NOTFOUND), that a malformed payload is an error that writes nothing, and that it never streams a
//! change.

use std::collections::BTreeMap;

use qsess_record::{SessionRecord, UserAgent};
use redis::{Connection, Value};

use crate::support::read_through::{
    byuser, counter, exists, get, get_notouch, raw_record, redis_with, restore, set_session, sorted_handles,
    stream_length,
};
use crate::support::server_clock::{server_clock_ms, wait_until_server_clock_is_past};
use crate::support::session_keys::{
    change_stream_key, handle_of, not_found_key_of, session_key_of, tombstone_key_of, user_revocation_key,
};
use crate::support::session_records::restorable_record;

/// Every key and its value (`DUMP`), to show an error wrote nothing.
fn keyspace(con: &mut Connection) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(con).unwrap();
    keys.into_iter()
        .map(|key| {
            let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query(con).unwrap();
            (key, dump)
        })
        .collect()
}

/// A record created `age_ms` ago by the server's clock, last seen then, idle timeout `idle_ms`.
fn record_bytes(con: &mut Connection, user: Option<&str>, version: u64, age_ms: u64, idle_ms: u64) -> Vec<u8> {
    let created_ms = server_clock_ms(con) as u64 - age_ms;
    let plain = restorable_record(user.map(str::as_bytes), version, created_ms, idle_ms, b"from the mirror");
    SessionRecord { ip: Some("198.51.100.4".parse().unwrap()), user_agent: Some(UserAgent::Text(b"curl/8.5")), ..plain }
        .encode()
}

#[test]
fn restore_writes_the_record_as_given_and_indexes_it() {
    let redis = redis_with(&[]);
    let mut con = redis.connection();
    let payload = record_bytes(&mut con, Some("mia"), 7, 5_000, 600_000);
    assert_eq!(restore(&mut con, &handle_of("restored-sid"), &payload).as_deref(), Ok("RESTORED"));
    assert_eq!(raw_record(&mut con, "restored-sid"), Some(payload.clone()), "the record was not stored as given");
    let reply = get_notouch(&mut con, "restored-sid");
    let Value::Array(fields) = &reply else { panic!("GET replied {reply:?}") };
    let fields: BTreeMap<String, Value> = fields
        .chunks_exact(2)
        .map(|pair| (redis::from_redis_value_ref::<String>(&pair[0]).unwrap(), pair[1].clone()))
        .collect();
    assert_eq!(fields["ver"], Value::Int(7));
    assert_eq!(fields["data"], Value::BulkString(b"from the mirror".to_vec()));
    assert_eq!(fields["user"], Value::BulkString(b"mia".to_vec()));
    let decoded = SessionRecord::decode(&payload).unwrap();
    assert_eq!(fields["expires"], Value::Int(decoded.expires_ms().unwrap() as i64));
    let pexpiretime: i64 = redis::cmd("PEXPIRETIME").arg(session_key_of("restored-sid")).query(&mut con).unwrap();
    assert_eq!(pexpiretime, decoded.expires_ms().unwrap() as i64, "the key does not expire with the session");
    assert_eq!(byuser(&mut con, "mia"), sorted_handles(&["restored-sid"]));
    assert_eq!(counter(&mut con, "qsess_restores"), 1);
    assert_eq!(stream_length(&mut con, &change_stream_key(0)), 0, "RESTORE streamed a change");
    assert_eq!(counter(&mut con, "qsess_stream_entries_written"), 0);
}

#[test]
fn restore_refuses_stale_expired_and_revoked_records_and_writes_no_change() {
    let redis = redis_with(&[]);
    let mut con = redis.connection();
    set_session(&mut con, "held", "ned");
    let version_1 = raw_record(&mut con, "held").unwrap();
    let _: i64 = redis::cmd("QSESS.SET").arg("held").arg("XX").arg("DATA").arg("newer").query(&mut con).unwrap();
    let version_2 = raw_record(&mut con, "held").unwrap();
    set_session(&mut con, "logged-out", "ned");
    let logged_out = raw_record(&mut con, "logged-out").unwrap();
    let _: i64 = redis::cmd("QSESS.DEL").arg("logged-out").query(&mut con).unwrap();
    let stream_before = stream_length(&mut con, &change_stream_key(0));
    let written_before = counter(&mut con, "qsess_stream_entries_written");

    // Redis holds a newer version, or the same one.
    assert_eq!(restore(&mut con, &handle_of("held"), &version_1).as_deref(), Ok("STALE"));
    assert_eq!(restore(&mut con, &handle_of("held"), &version_2).as_deref(), Ok("STALE"));
    assert_eq!(raw_record(&mut con, "held"), Some(version_2.clone()), "a stale restore changed the record");
    // A newer version than Redis holds replaces it.
    let mut newer = SessionRecord::decode(&version_2).unwrap();
    newer.version = 3;
    newer.data = b"newest";
    let version_3 = newer.encode();
    assert_eq!(restore(&mut con, &handle_of("held"), &version_3).as_deref(), Ok("RESTORED"));
    assert_eq!(raw_record(&mut con, "held"), Some(version_3));

    // Over by now: idle for longer than its idle timeout.
    let expired = record_bytes(&mut con, Some("ned"), 2, 60_000, 1_000);
    assert_eq!(restore(&mut con, &handle_of("expired"), &expired).as_deref(), Ok("EXPIRED"));
    assert!(!exists(&mut con, &session_key_of("expired")), "an expired record was written");
    assert_eq!(get(&mut con, "expired"), Value::Nil);

    // Logged out: the tombstone refuses it.
    assert!(exists(&mut con, &tombstone_key_of("logged-out")));
    assert_eq!(restore(&mut con, &handle_of("logged-out"), &logged_out).as_deref(), Ok("REVOKED"));
    assert!(!exists(&mut con, &session_key_of("logged-out")), "a revoked session was written back");
    assert_eq!(get(&mut con, "logged-out"), Value::Nil);

    // The mirror has nothing: remembered as missing.
    assert_eq!(restore(&mut con, &handle_of("unknown"), b"NOTFOUND").as_deref(), Ok("NOTFOUND"));
    assert!(exists(&mut con, &not_found_key_of("unknown")), "no negative-cache marker");
    assert!(!exists(&mut con, &session_key_of("unknown")));

    assert_eq!(stream_length(&mut con, &change_stream_key(0)), stream_before, "RESTORE streamed a change");
    assert_eq!(counter(&mut con, "qsess_stream_entries_written"), written_before);
}

#[test]
fn restore_refuses_sessions_their_user_revoked_after_creating_them() {
    let redis = redis_with(&[]);
    let mut con = redis.connection();
    let before_revocation = record_bytes(&mut con, Some("ora"), 1, 10_000, 600_000);
    let kept = record_bytes(&mut con, Some("ora"), 1, 10_000, 600_000);
    let other_user = record_bytes(&mut con, Some("pat"), 1, 10_000, 600_000);
    set_session(&mut con, "ora-current", "ora");
    let revoked: i64 =
        redis::cmd("QSESS.REVOKEUSER").arg("ora").arg("EXCEPT").arg("ora-current").query(&mut con).unwrap();
    assert_eq!(revoked, 0, "Redis held no other session of ora");
    let at: u64 = {
        let value: String = redis::cmd("GET").arg(user_revocation_key(0, "ora")).query(&mut con).unwrap();
        value.split(' ').next().unwrap().parse().unwrap()
    };

    assert_eq!(restore(&mut con, &handle_of("ora-old"), &before_revocation).as_deref(), Ok("REVOKED"));
    assert!(exists(&mut con, &tombstone_key_of("ora-old")), "the refusal left no tombstone");
    assert_eq!(get(&mut con, "ora-old"), Value::Nil);
    // The session EXCEPT kept (it lives in Redis, so the same version is stale, not revoked) ...
    let current = raw_record(&mut con, "ora-current").unwrap();
    assert_eq!(restore(&mut con, &handle_of("ora-current"), &current).as_deref(), Ok("STALE"));
    // ... and, once Redis lost it, comes back.
    let _: i64 = redis::cmd("DEL").arg(session_key_of("ora-current")).query(&mut con).unwrap();
    assert_eq!(restore(&mut con, &handle_of("ora-current"), &current).as_deref(), Ok("RESTORED"));
    // Another user's session is not concerned.
    assert_eq!(restore(&mut con, &handle_of("pat-old"), &other_user).as_deref(), Ok("RESTORED"));

    // A session created after the revocation is restored.
    wait_until_server_clock_is_past(&mut con, at as i64);
    let after_revocation = record_bytes(&mut con, Some("ora"), 1, 0, 600_000);
    assert_eq!(restore(&mut con, &handle_of("ora-new"), &after_revocation).as_deref(), Ok("RESTORED"));
    assert_eq!(restore(&mut con, &handle_of("ora-kept"), &kept).as_deref(), Ok("REVOKED"));
}

#[test]
fn a_malformed_restore_is_an_error_that_writes_nothing() {
    let redis = redis_with(&[]);
    let mut con = redis.connection();
    set_session(&mut con, "bystander", "quin");
    let valid = record_bytes(&mut con, Some("quin"), 1, 0, 600_000);
    let handle = handle_of("malformed");
    let before = keyspace(&mut con);
    let written_before = counter(&mut con, "qsess_stream_entries_written");

    let mut truncated = valid.clone();
    truncated.truncate(valid.len() - 3);
    let mut trailing = valid.clone();
    trailing.push(0);
    let mut unknown_format = valid.clone();
    unknown_format[0] = 9;
    let attempts: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("a truncated record", vec![b"0".to_vec(), handle.clone().into_bytes(), truncated]),
        ("bytes after the data", vec![b"0".to_vec(), handle.clone().into_bytes(), trailing]),
        ("an unknown format", vec![b"0".to_vec(), handle.clone().into_bytes(), unknown_format]),
        ("an empty record", vec![b"0".to_vec(), handle.clone().into_bytes(), Vec::new()]),
        ("a bucket that does not exist", vec![b"1".to_vec(), handle.clone().into_bytes(), valid.clone()]),
        ("a bad handle", vec![b"0".to_vec(), b"not-a-handle".to_vec(), valid.clone()]),
        ("a missing argument", vec![b"0".to_vec(), handle.clone().into_bytes()]),
    ];
    for (what, arguments) in attempts {
        let outcome: redis::RedisResult<Value> = redis::cmd("QSESS.RESTORE").arg(arguments).query(&mut con);
        let error = outcome.expect_err(&format!("RESTORE with {what} was accepted"));
        assert!(error.to_string().contains("ERR") || error.code() == Some("ERR"), "{what}: {error}");
        assert_eq!(keyspace(&mut con), before, "RESTORE with {what} wrote something");
    }
    assert_eq!(counter(&mut con, "qsess_stream_entries_written"), written_before);
    assert_eq!(counter(&mut con, "qsess_restores"), 0);
}
