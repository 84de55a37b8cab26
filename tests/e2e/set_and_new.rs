//! QSESS.SET and QSESS.NEW: create/update rules, NX/XX, owners and their indexes, minted ids and
//! buckets, binary data, IP normalisation and the runtime privacy and timeout settings.

use std::collections::BTreeSet;

use crate::support::commands::{
    borrowed_pairs, qsess_command_error_text, qsess_command_reply, session_field_integer,
    snapshot_of_every_key_dump_and_expiry,
};
use crate::support::qsess_client::QsessClient;
use crate::support::server_clock::wait_until_server_clock_is_past;
use crate::support::session_keys::{
    change_stream_key, handle_of, session_key, session_key_of, typed_handle_of, user_index_key, user_index_key_of,
};
use qsess_record::{ChangeRecord, Handle, SessionRecord};
use qsess_tests::RedisServer;
use redis::{Connection, Value};

fn session_field_bytes(fields: &[(String, Value)], name: &str) -> Option<Vec<u8>> {
    match fields.iter().find(|(field, _)| field == name) {
        None => None,
        Some((_, Value::BulkString(bytes))) => Some(bytes.clone()),
        Some(other) => panic!("field {name} is not a bulk string: {other:?}"),
    }
}

fn session_field_text(fields: &[(String, Value)], name: &str) -> Option<String> {
    session_field_bytes(fields, name).map(|bytes| String::from_utf8(bytes).unwrap())
}

fn user_index_members_in_order(con: &mut Connection, bucket: u32, uid: &str) -> Vec<String> {
    redis::cmd("ZRANGE").arg(user_index_key(bucket, uid)).arg(0).arg(-1).query(con).unwrap()
}

/// Field/value pairs of every change stream entry, oldest first.
fn change_stream_entry_fields(con: &mut Connection, stream: &str) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query(con).unwrap();
    entries
        .into_iter()
        .map(|(_, flat)| flat.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect())
        .collect()
}

/// The bucket qsess puts a user in: SHA-256(uid)'s first 8 bytes, big-endian, mod `buckets`. The
/// digest prefix is recovered from the uid's handle (base64url of SHA-256[..16]).
fn bucket_of_user_from_sha256_prefix(uid: &str, buckets: u64) -> u32 {
    let handle = Handle::from_session_id(uid.as_bytes());
    let sextet = |c: u8| -> u64 {
        match c {
            b'A'..=b'Z' => u64::from(c - b'A'),
            b'a'..=b'z' => u64::from(c - b'a') + 26,
            b'0'..=b'9' => u64::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c}"),
        }
    };
    // 11 sextets = 66 bits; the first 64 are the first 8 digest bytes.
    let first_66_bits = handle.as_bytes()[..11].iter().fold(0u128, |bits, &c| (bits << 6) | u128::from(sextet(c)));
    let first_eight_bytes = (first_66_bits >> 2) as u64;
    (first_eight_bytes % buckets) as u32
}

#[test]
fn set_creates_version_one_then_updates_keep_created_and_omitted_fields() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let created_reply =
        qsess_command_reply(&mut con, "QSESS.SET", &["s1", "DATA", "d1", "USER", "u1", "IP", "192.0.2.1", "UA", "ua1"]);
    assert_eq!(created_reply, Value::Int(1));
    let first = QsessClient::new(&mut con).peek("s1").expect("session exists");
    let created = session_field_integer(&first, "created");
    assert_eq!(session_field_integer(&first, "ver"), 1);
    assert_eq!(session_field_integer(&first, "updated"), created);
    assert_eq!(session_field_integer(&first, "seen"), created);
    assert_eq!(session_field_integer(&first, "idle"), 1_800_000);
    assert_eq!(session_field_integer(&first, "abs"), created + 86_400_000);
    assert_eq!(session_field_integer(&first, "expires"), created + 1_800_000);

    wait_until_server_clock_is_past(&mut con, created);
    assert_eq!(qsess_command_reply(&mut con, "QSESS.SET", &["s1", "DATA", "d2"]), Value::Int(2));
    let second = QsessClient::new(&mut con).peek("s1").unwrap();
    let seen = session_field_integer(&second, "seen");
    assert_eq!(session_field_integer(&second, "ver"), 2);
    assert_eq!(session_field_integer(&second, "created"), created);
    assert!(seen > created, "seen {seen} did not move past {created}");
    assert_eq!(session_field_integer(&second, "updated"), seen);
    assert_eq!(session_field_integer(&second, "expires"), seen + 1_800_000);
    assert_eq!(session_field_integer(&second, "abs"), created + 86_400_000);
    assert_eq!(session_field_text(&second, "data").as_deref(), Some("d2"));
    assert_eq!(session_field_text(&second, "user").as_deref(), Some("u1"));
    assert_eq!(session_field_text(&second, "ip").as_deref(), Some("192.0.2.1"));
    assert_eq!(session_field_text(&second, "ua").as_deref(), Some("ua1"));

    // ABSOLUTE given on an update counts from creation, not from now.
    assert_eq!(qsess_command_reply(&mut con, "QSESS.SET", &["s1", "ABSOLUTE", "90000000"]), Value::Int(3));
    let third = QsessClient::new(&mut con).peek("s1").unwrap();
    assert_eq!(session_field_integer(&third, "abs"), created + 90_000_000);
    assert_eq!(session_field_text(&third, "data").as_deref(), Some("d2"));
    assert_eq!(session_field_text(&third, "user").as_deref(), Some("u1"));

    let versions: Vec<u64> = change_stream_entry_fields(&mut con, &change_stream_key(0))
        .iter()
        .map(|entry| match ChangeRecord::parse(&borrowed_pairs(entry)).unwrap() {
            ChangeRecord::Set { version, user, .. } => {
                assert_eq!(user, Some(&b"u1"[..]));
                version
            }
            other => panic!("expected only set entries, got {other:?}"),
        })
        .collect();
    assert_eq!(versions, [1, 2, 3]);
}

#[test]
fn set_nx_on_an_existing_session_is_nil_and_changes_nothing() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_command_reply(&mut con, "QSESS.SET", &["s1", "DATA", "original", "USER", "u1"]);
    let before = snapshot_of_every_key_dump_and_expiry(&mut con);
    let reply = qsess_command_reply(&mut con, "QSESS.SET", &["s1", "DATA", "replaced", "USER", "u2", "NX"]);
    assert_eq!(reply, Value::Nil);
    assert_eq!(snapshot_of_every_key_dump_and_expiry(&mut con), before);
    assert_eq!(qsess_command_reply(&mut con, "QSESS.SET", &["s2", "NX"]), Value::Int(1));
}

#[test]
fn set_xx_on_a_missing_session_is_nil_and_writes_no_key() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let reply = qsess_command_reply(&mut con, "QSESS.SET", &["missing", "DATA", "x", "USER", "u1", "XX"]);
    assert_eq!(reply, Value::Nil);
    let key_count: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(key_count, 0, "keys written: {:?}", snapshot_of_every_key_dump_and_expiry(&mut con));
    qsess_command_reply(&mut con, "QSESS.SET", &["present"]);
    assert_eq!(qsess_command_reply(&mut con, "QSESS.SET", &["present", "DATA", "y", "XX"]), Value::Int(2));
}

#[test]
fn anon_removes_the_owner_and_the_session_leaves_the_users_index() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_command_reply(&mut con, "QSESS.SET", &["s1", "USER", "u1", "DATA", "kept"]);
    let handle = handle_of("s1");
    assert_eq!(QsessClient::new(&mut con).byuser_handles("u1"), std::slice::from_ref(&handle));
    assert_eq!(qsess_command_reply(&mut con, "QSESS.SET", &["s1", "ANON"]), Value::Int(2));
    let fields = QsessClient::new(&mut con).peek("s1").unwrap();
    assert_eq!(session_field_text(&fields, "user"), None, "{fields:?}");
    assert_eq!(session_field_text(&fields, "data").as_deref(), Some("kept"));
    assert!(QsessClient::new(&mut con).byuser_handles("u1").is_empty());
    let index_exists: i64 = redis::cmd("EXISTS").arg(user_index_key_of("u1")).query(&mut con).unwrap();
    assert_eq!(index_exists, 0, "the emptied index key must be gone");
    let entries = change_stream_entry_fields(&mut con, &change_stream_key(0));
    let last = ChangeRecord::parse(&borrowed_pairs(entries.last().unwrap())).unwrap();
    assert!(matches!(last, ChangeRecord::Set { user: None, version: 2, .. }), "{last:?}");
}

#[test]
fn changing_user_moves_the_session_between_the_two_users_indexes() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_command_reply(&mut con, "QSESS.SET", &["moving", "USER", "alice"]);
    qsess_command_reply(&mut con, "QSESS.SET", &["staying", "USER", "alice"]);
    assert_eq!(qsess_command_reply(&mut con, "QSESS.SET", &["moving", "USER", "bob"]), Value::Int(2));
    let moving = handle_of("moving");
    assert_eq!(user_index_members_in_order(&mut con, 0, "alice"), [handle_of("staying")]);
    assert_eq!(user_index_members_in_order(&mut con, 0, "bob"), std::slice::from_ref(&moving));
    assert_eq!(QsessClient::new(&mut con).byuser_handles("bob"), std::slice::from_ref(&moving));
    assert_eq!(QsessClient::new(&mut con).byuser_handles("alice"), [handle_of("staying")]);
    let expires = session_field_integer(&QsessClient::new(&mut con).peek("moving").unwrap(), "expires");
    let score: i64 = redis::cmd("ZSCORE").arg(user_index_key_of("bob")).arg(&moving).query(&mut con).unwrap();
    assert_eq!(score, expires);
}

#[test]
fn binary_data_with_every_byte_value_round_trips() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let data: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    let reply: Value = redis::cmd("QSESS.SET").arg("bin").arg("DATA").arg(&data).query(&mut con).unwrap();
    assert_eq!(reply, Value::Int(1));
    let fields = QsessClient::new(&mut con).peek("bin").unwrap();
    assert_eq!(session_field_bytes(&fields, "data"), Some(data.clone()));
    let entries = change_stream_entry_fields(&mut con, &change_stream_key(0));
    let ChangeRecord::Set { record, .. } = ChangeRecord::parse(&borrowed_pairs(&entries[0])).unwrap() else {
        panic!("first entry is not a set");
    };
    assert_eq!(SessionRecord::decode(record).unwrap().data, data.as_slice());
}

#[test]
fn new_mints_distinct_url_safe_ids_whose_sessions_carry_the_options() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let mut ids = BTreeSet::new();
    for _ in 0..20 {
        let sid: String = redis::cmd("QSESS.NEW").arg(&["USER", "u7", "DATA", "payload"][..]).query(&mut con).unwrap();
        assert_eq!(sid.len(), 32, "{sid}");
        assert!(sid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{sid}");
        let fields = QsessClient::new(&mut con).peek(&sid).expect("minted session exists");
        assert_eq!(session_field_text(&fields, "user").as_deref(), Some("u7"));
        assert_eq!(session_field_text(&fields, "data").as_deref(), Some("payload"));
        assert_eq!(session_field_integer(&fields, "ver"), 1);
        ids.insert(sid);
    }
    assert_eq!(ids.len(), 20);
    let expected: BTreeSet<String> = ids.iter().map(|sid| handle_of(sid)).collect();
    assert_eq!(QsessClient::new(&mut con).byuser_handles("u7").into_iter().collect::<BTreeSet<_>>(), expected);
}

#[test]
fn new_with_four_buckets_mints_ids_in_the_users_bucket_with_keys_under_it() {
    let server = RedisServer::builder().module_arg("buckets", 4).start();
    let mut con = server.connection();
    let mut buckets_seen = BTreeSet::new();
    for n in 0..12 {
        let uid = format!("user-{n}");
        let bucket = bucket_of_user_from_sha256_prefix(&uid, 4);
        buckets_seen.insert(bucket);
        let sid: String = redis::cmd("QSESS.NEW").arg("USER").arg(&uid).query(&mut con).unwrap();
        let (prefix, random) = sid.split_once('.').unwrap_or_else(|| panic!("no bucket prefix in {sid}"));
        assert_eq!(prefix, bucket.to_string(), "{uid} is in bucket {bucket}, got id {sid}");
        assert_eq!(random.len(), 32, "{sid}");
        let handle = handle_of(&sid);
        let record_exists: i64 =
            redis::cmd("EXISTS").arg(session_key(bucket, &typed_handle_of(&sid))).query(&mut con).unwrap();
        assert_eq!(record_exists, 1);
        assert_eq!(user_index_members_in_order(&mut con, bucket, &uid), [handle]);
    }
    assert!(buckets_seen.len() > 1, "test users all landed in {buckets_seen:?}");
    let stream_lengths: i64 =
        (0..4).map(|b| redis::cmd("XLEN").arg(change_stream_key(b)).query::<i64>(&mut con).unwrap()).sum();
    assert_eq!(stream_lengths, 12);
    let anonymous: String = redis::cmd("QSESS.NEW").arg("ANON").query(&mut con).unwrap();
    let bucket: u32 = anonymous.split_once('.').unwrap().0.parse().unwrap();
    assert!(bucket < 4);
    let record_exists: i64 =
        redis::cmd("EXISTS").arg(session_key(bucket, &typed_handle_of(&anonymous))).query(&mut con).unwrap();
    assert_eq!(record_exists, 1);
}

#[test]
fn set_with_four_buckets_refuses_a_session_id_from_another_bucket_than_its_user() {
    let server = RedisServer::builder().module_arg("buckets", 4).start();
    let mut con = server.connection();
    let user_bucket = bucket_of_user_from_sha256_prefix("alice", 4);
    let other_bucket = (user_bucket + 1) % 4;
    let wrong_sid = format!("{other_bucket}.not-alices-bucket");
    let error = qsess_command_error_text(&mut con, "QSESS.SET", &[&wrong_sid, "USER", "alice"]);
    let expected =
        format!("ERR session id is in bucket {other_bucket} but user's sessions live in bucket {user_bucket};");
    assert!(error.starts_with(&expected), "{error}");
    let key_count: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(key_count, 0);
    let right_sid = format!("{user_bucket}.alices-bucket");
    assert_eq!(qsess_command_reply(&mut con, "QSESS.SET", &[&right_sid, "USER", "alice"]), Value::Int(1));
}

#[test]
fn ipv6_and_ipv4_mapped_addresses_are_stored_normalised() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    for (given, stored) in [
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("2001:DB8::1", "2001:db8::1"),
        ("2001:0db8:0000:0000::0001", "2001:db8::1"),
        ("203.0.113.7", "203.0.113.7"),
    ] {
        qsess_command_reply(&mut con, "QSESS.SET", &[given, "IP", given]);
        let fields = QsessClient::new(&mut con).peek(given).unwrap();
        assert_eq!(session_field_text(&fields, "ip").as_deref(), Some(stored), "for {given}");
    }
}

#[test]
fn ip_and_ua_modes_set_at_runtime_apply_to_new_writes() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let config_set = |con: &mut Connection, name: &str, value: &str| {
        redis::cmd("CONFIG").arg("SET").arg(name).arg(value).exec(con).unwrap();
    };
    qsess_command_reply(&mut con, "QSESS.SET", &["before", "IP", "203.0.113.77", "UA", "agent"]);
    config_set(&mut con, "qsess.ip-mode", "truncated");
    qsess_command_reply(&mut con, "QSESS.SET", &["v4", "IP", "203.0.113.77"]);
    qsess_command_reply(&mut con, "QSESS.SET", &["v6", "IP", "2001:db8:abcd:12::99"]);
    let ip_of = |con: &mut Connection, sid: &str| session_field_text(&QsessClient::new(con).peek(sid).unwrap(), "ip");
    assert_eq!(ip_of(&mut con, "v4").as_deref(), Some("203.0.113.0"));
    assert_eq!(ip_of(&mut con, "v6").as_deref(), Some("2001:db8:abcd::"));
    assert_eq!(ip_of(&mut con, "before").as_deref(), Some("203.0.113.77"), "existing records are not rewritten");

    config_set(&mut con, "qsess.ip-mode", "none");
    config_set(&mut con, "qsess.ua-mode", "none");
    qsess_command_reply(&mut con, "QSESS.SET", &["private", "IP", "203.0.113.77", "UA", "agent"]);
    qsess_command_reply(&mut con, "QSESS.SET", &["before", "IP", "198.51.100.1", "UA", "agent2"]);
    for sid in ["private", "before"] {
        let fields = QsessClient::new(&mut con).peek(sid).unwrap();
        assert_eq!(session_field_text(&fields, "ip"), None, "{sid}: {fields:?}");
        assert_eq!(session_field_text(&fields, "ua"), None, "{sid}: {fields:?}");
    }
    for entry in change_stream_entry_fields(&mut con, &change_stream_key(0)).iter().rev().take(2) {
        let ChangeRecord::Set { record, .. } = ChangeRecord::parse(&borrowed_pairs(entry)).unwrap() else {
            panic!("expected set entries");
        };
        let record = SessionRecord::decode(record).unwrap();
        assert_eq!((record.ip, record.user_agent), (None, None), "the stored record keeps no address or agent");
    }

    config_set(&mut con, "qsess.ip-mode", "full");
    config_set(&mut con, "qsess.ua-mode", "full");
    qsess_command_reply(&mut con, "QSESS.SET", &["after", "IP", "203.0.113.77", "UA", "agent"]);
    let fields = QsessClient::new(&mut con).peek("after").unwrap();
    assert_eq!(session_field_text(&fields, "ip").as_deref(), Some("203.0.113.77"));
    assert_eq!(session_field_text(&fields, "ua").as_deref(), Some("agent"));
}

#[test]
fn config_set_idle_timeout_changes_the_default_used_by_set() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_command_reply(&mut con, "QSESS.SET", &["old-default"]);
    redis::cmd("CONFIG").arg("SET").arg("qsess.idle-timeout-ms").arg(5000).exec(&mut con).unwrap();
    let (_, value): (String, i64) =
        redis::cmd("CONFIG").arg("GET").arg("qsess.idle-timeout-ms").query(&mut con).unwrap();
    assert_eq!(value, 5000);
    qsess_command_reply(&mut con, "QSESS.SET", &["new-default"]);
    let fields = QsessClient::new(&mut con).peek("new-default").unwrap();
    assert_eq!(session_field_integer(&fields, "idle"), 5000);
    let expires = session_field_integer(&fields, "expires");
    assert_eq!(expires, session_field_integer(&fields, "seen") + 5000);
    let record_key = session_key_of("new-default");
    let expire_time: i64 = redis::cmd("PEXPIRETIME").arg(&record_key).query(&mut con).unwrap();
    assert_eq!(expire_time, expires);
    // An update without IDLE keeps the session's own timeout, not the new default.
    qsess_command_reply(&mut con, "QSESS.SET", &["old-default", "DATA", "x"]);
    let fields = QsessClient::new(&mut con).peek("old-default").unwrap();
    assert_eq!(session_field_integer(&fields, "idle"), 1_800_000);
}
