//! The change stream of bucket 0: one entry per change, with the documented fields in order,
//! records that decode to what GET shows, versions that count changes, and increasing ids.

use crate::support::commands::send_command_expecting_success;
use crate::support::qsess_client::QsessClient;
use crate::support::server_clock::wait_for_the_next_server_millisecond;
use crate::support::session_keys::{change_stream_key, handle_of};
use qsess_record::{ChangeRecord, Handle, SessionRecord, UserRevocation};
use qsess_tests::RedisServer;
use redis::{Connection, Value};

/// One raw stream entry: its id and its field/value pairs in stream order.
type RawStreamEntry = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// Every entry of the stream: per-session change records and `revokeuser` entries alike.
fn every_raw_stream_entry_of_any_kind(con: &mut Connection) -> Vec<RawStreamEntry> {
    let entries: Vec<(String, Vec<Vec<u8>>)> =
        redis::cmd("XRANGE").arg(change_stream_key(0)).arg("-").arg("+").query(con).unwrap();
    entries
        .into_iter()
        .map(|(id, flat)| (id, flat.chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect()))
        .collect()
}

fn is_user_revocation(entry: &RawStreamEntry) -> bool {
    let pairs: Vec<(&[u8], &[u8])> =
        entry.1.iter().map(|(field, value)| (field.as_slice(), value.as_slice())).collect();
    UserRevocation::parse(&pairs).is_some()
}

/// The per-session change records, without `revokeuser` entries (which name a user, not a session).
fn every_raw_stream_entry(con: &mut Connection) -> Vec<RawStreamEntry> {
    every_raw_stream_entry_of_any_kind(con).into_iter().filter(|entry| !is_user_revocation(entry)).collect()
}

fn parse_raw_stream_entry(entry: &RawStreamEntry) -> ChangeRecord<'_> {
    let pairs: Vec<(&[u8], &[u8])> =
        entry.1.iter().map(|(field, value)| (field.as_slice(), value.as_slice())).collect();
    ChangeRecord::parse(&pairs).unwrap_or_else(|e| panic!("entry {} does not parse: {e}", entry.0))
}

fn field_names_of(entry: &RawStreamEntry) -> Vec<String> {
    entry.1.iter().map(|(field, _)| String::from_utf8(field.clone()).unwrap()).collect()
}

/// What GET would show for `record`, built from the decoded record, in the documented field order.
fn expected_get_reply_for_record(session_id: &str, record: &SessionRecord<'_>) -> Vec<(String, Value)> {
    let bytes = |value: &[u8]| Value::BulkString(value.to_vec());
    let number = |value: u64| Value::Int(value as i64);
    let mut pairs =
        vec![("handle".to_owned(), bytes(handle_of(session_id).as_bytes())), ("data".to_owned(), bytes(record.data))];
    let optional = [
        ("user", record.user.map(<[u8]>::to_vec)),
        ("ip", record.ip.map(|address| address.to_string().into_bytes())),
        ("ua", record.user_agent.map(|user_agent| user_agent.text().into_owned())),
        ("loc", record.location.map(<[u8]>::to_vec)),
        ("cc", record.country.map(<[u8]>::to_vec)),
    ];
    pairs.extend(optional.into_iter().filter_map(|(name, value)| Some((name.to_owned(), Value::BulkString(value?)))));
    pairs.extend([
        ("created".to_owned(), number(record.created_ms)),
        ("updated".to_owned(), number(record.updated_ms)),
        ("seen".to_owned(), number(record.seen_ms)),
        ("idle".to_owned(), number(record.idle_ms)),
        ("abs".to_owned(), number(record.absolute_deadline_ms)),
        ("expires".to_owned(), number(record.expires_ms().unwrap())),
        ("ver".to_owned(), number(record.version)),
    ]);
    pairs
}

/// The versions of every entry about one handle, in stream order.
fn versions_of_handle_in_stream(con: &mut Connection, session_id: &str) -> Vec<(String, u64)> {
    let handle = Handle::from_session_id(session_id.as_bytes());
    every_raw_stream_entry(con)
        .iter()
        .map(parse_raw_stream_entry)
        .filter(|change| change.handle() == handle)
        .map(|change| (change.op().as_str().to_owned(), change.version()))
        .collect()
}

/// `(version, seen, exp)` of a touch entry, `None` for other entries.
fn version_seen_and_expiry_of_touch(entry: &RawStreamEntry) -> Option<(u64, u64, u64)> {
    match parse_raw_stream_entry(entry) {
        ChangeRecord::Touch { version, seen_ms, expires_ms, .. } => Some((version, seen_ms, expires_ms)),
        ChangeRecord::Set { .. } | ChangeRecord::Delete { .. } => None,
    }
}

#[test]
fn every_operation_writes_an_entry_with_the_documented_fields_in_order() {
    let server = RedisServer::builder().module_arg("touch-granularity-ms", 0).start();
    let mut con = server.connection();
    send_command_expecting_success(&mut con, &["QSESS.SET", "owned", "USER", "42", "DATA", "d"]);
    send_command_expecting_success(&mut con, &["QSESS.SET", "guest", "ANON"]);
    wait_for_the_next_server_millisecond(&mut con);
    send_command_expecting_success(&mut con, &["QSESS.GET", "owned"]);
    send_command_expecting_success(&mut con, &["QSESS.TOUCH", "guest"]);
    send_command_expecting_success(&mut con, &["QSESS.ROTATE", "owned", "owned-2"]);
    send_command_expecting_success(&mut con, &["QSESS.SET", "other", "USER", "42", "LIMIT", "1"]);
    send_command_expecting_success(&mut con, &["QSESS.SET", "third", "USER", "42"]);
    send_command_expecting_success(&mut con, &["QSESS.REVOKE", "42", &handle_of("third")]);
    send_command_expecting_success(&mut con, &["QSESS.REVOKEUSER", "42"]);
    send_command_expecting_success(&mut con, &["QSESS.DEL", "guest"]);

    let revocations: Vec<RawStreamEntry> =
        every_raw_stream_entry_of_any_kind(&mut con).into_iter().filter(is_user_revocation).collect();
    assert_eq!(revocations.len(), 1, "one revokeuser entry for QSESS.REVOKEUSER");
    assert_eq!(field_names_of(&revocations[0]), ["op", "u", "at"]);
    let entries = every_raw_stream_entry(&mut con);
    let mut seen_shapes = Vec::new();
    for entry in &entries {
        let change = parse_raw_stream_entry(entry);
        let with_user = if change.user().is_some() { &["u"][..] } else { &[] };
        let tail: &[&str] = match change {
            ChangeRecord::Set { .. } => &["r"],
            ChangeRecord::Touch { .. } => &["seen", "exp"],
            ChangeRecord::Delete { .. } => &["why"],
        };
        let expected: Vec<&str> = ["op", "h"].iter().chain(with_user).chain(&["v"]).chain(tail).copied().collect();
        assert_eq!(field_names_of(entry), expected, "entry {}", entry.0);
        let rebuilt: Vec<(Vec<u8>, Vec<u8>)> =
            change.fields().into_iter().map(|(name, value)| (name.as_bytes().to_vec(), value.into_owned())).collect();
        assert_eq!(rebuilt, entry.1, "entry {} does not round-trip", entry.0);
        seen_shapes.push(format!("{}{}", change.op().as_str(), if change.user().is_some() { "+u" } else { "" }));
    }
    seen_shapes.sort();
    seen_shapes.dedup();
    assert_eq!(seen_shapes, ["del", "del+u", "set", "set+u", "touch", "touch+u"]);
    let reasons: Vec<&str> = entries
        .iter()
        .filter_map(|entry| match parse_raw_stream_entry(entry) {
            ChangeRecord::Delete { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["rotate", "limit", "revoke", "revoke", "logout"]);
}

#[test]
fn set_entries_carry_a_record_that_decodes_to_what_get_shows() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let binary_data = "bin\u{0}ary\r\n\u{7f}";
    let writes: [&[&str]; 6] = [
        &["QSESS.SET", "decoded", "USER", "42", "IP", "192.0.2.10", "UA", "Mozilla/5.0", "DATA", binary_data],
        &["QSESS.SET", "decoded", "IP", "::ffff:198.51.100.3", "IDLE", "120000", "ABSOLUTE", "3600000"],
        &["QSESS.SET", "decoded", "IP", "2001:db8::1", "UA", "", "IDLE", "0"],
        &["QSESS.SET", "decoded", "USER", "43", "DATA", ""],
        &["QSESS.SET", "decoded", "ANON", "IDLE", "60000", "ABSOLUTE", "0"],
        &["QSESS.SET", "fresh-anon", "ANON"],
    ];
    for words in writes {
        let version = send_command_expecting_success(&mut con, words);
        let entries = every_raw_stream_entry(&mut con);
        let last = entries.last().expect("a SET writes an entry");
        let ChangeRecord::Set { handle, user, version: entry_version, record } = parse_raw_stream_entry(last) else {
            panic!("{words:?} did not end the stream with a set entry");
        };
        let record = SessionRecord::decode(record).unwrap_or_else(|e| panic!("{words:?}: record does not decode: {e}"));
        let session_id = words[1];
        assert_eq!(handle.to_string(), handle_of(session_id));
        assert_eq!((user, entry_version), (record.user, record.version), "{words:?}: entry and record disagree");
        assert_eq!(Value::Int(record.version as i64), version, "{words:?}: reply is not the record's version");
        let shown = QsessClient::new(&mut con).get_without_touch(session_id).expect("the session is live");
        assert_eq!(shown, expected_get_reply_for_record(session_id, &record), "{words:?}");
    }
    let shown = QsessClient::new(&mut con).get_without_touch("decoded").expect("the session is live");
    let ip = shown.iter().find(|(name, _)| name == "ip").map(|(_, value)| value.clone());
    assert_eq!(ip, Some(Value::BulkString(b"2001:db8::1".to_vec())));
}

#[test]
fn versions_increase_by_one_per_change_of_a_session() {
    let server = RedisServer::builder().module_arg("touch-granularity-ms", 0).start();
    let mut con = server.connection();
    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.SET", "counted", "USER", "42"]), Value::Int(1));
    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.SET", "counted", "DATA", "a"]), Value::Int(2));
    wait_for_the_next_server_millisecond(&mut con);
    send_command_expecting_success(&mut con, &["QSESS.GET", "counted"]);
    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.SET", "counted", "XX", "DATA", "b"]), Value::Int(4));
    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.SET", "counted", "NX"]), Value::Nil);
    send_command_expecting_success(&mut con, &["QSESS.GET", "counted", "NOTOUCH"]);
    send_command_expecting_success(&mut con, &["QSESS.PEEK", "counted"]);
    wait_for_the_next_server_millisecond(&mut con);
    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.TOUCH", "counted"]), Value::Int(1));
    let shown = QsessClient::new(&mut con).get_without_touch("counted").expect("the session is live");
    let touch = every_raw_stream_entry(&mut con).last().and_then(version_seen_and_expiry_of_touch);
    let field = |name: &str| shown.iter().find(|(field, _)| field == name).map(|(_, value)| value.clone()).unwrap();
    let Some((5, seen, expires)) = touch else { panic!("the last entry is not the touch of version 5: {touch:?}") };
    assert_eq!((Value::Int(seen as i64), Value::Int(expires as i64)), (field("seen"), field("expires")));

    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.ROTATE", "counted", "counted-2"]), Value::Int(6));
    assert_eq!(send_command_expecting_success(&mut con, &["QSESS.DEL", "counted-2"]), Value::Int(1));

    let expected_old = [("set", 1), ("set", 2), ("touch", 3), ("set", 4), ("touch", 5), ("del", 6)];
    let expected_old: Vec<(String, u64)> = expected_old.iter().map(|(op, v)| ((*op).to_owned(), *v)).collect();
    assert_eq!(versions_of_handle_in_stream(&mut con, "counted"), expected_old);
    let expected_new: Vec<(String, u64)> = vec![("set".into(), 6), ("del".into(), 7)];
    assert_eq!(versions_of_handle_in_stream(&mut con, "counted-2"), expected_new);
}

#[test]
fn anonymous_sessions_have_no_user_field() {
    let server = RedisServer::builder().module_arg("touch-granularity-ms", 0).start();
    let mut con = server.connection();
    send_command_expecting_success(&mut con, &["QSESS.SET", "was-owned", "USER", "42"]);
    let owned_entries = every_raw_stream_entry(&mut con).len();
    send_command_expecting_success(&mut con, &["QSESS.SET", "was-owned", "ANON"]);
    send_command_expecting_success(&mut con, &["QSESS.SET", "anonymous", "DATA", "cart"]);
    let minted: String = redis::from_redis_value(send_command_expecting_success(&mut con, &["QSESS.NEW"])).unwrap();
    wait_for_the_next_server_millisecond(&mut con);
    send_command_expecting_success(&mut con, &["QSESS.GET", "anonymous"]);
    send_command_expecting_success(&mut con, &["QSESS.ROTATE", "anonymous", "anonymous-2"]);
    send_command_expecting_success(&mut con, &["QSESS.DEL", "anonymous-2", &minted, "was-owned"]);

    let entries = every_raw_stream_entry(&mut con);
    assert_eq!(entries.len(), owned_entries + 9, "set, set, set(new), touch, del+set, 3 del");
    for entry in &entries[owned_entries..] {
        assert!(!field_names_of(entry).contains(&"u".to_owned()), "entry {} names an owner: {:?}", entry.0, entry.1);
        assert_eq!(parse_raw_stream_entry(entry).user(), None);
    }
    let byuser: Vec<String> = redis::cmd("QSESS.BYUSER").arg("42").query(&mut con).unwrap();
    assert!(byuser.is_empty(), "a session made anonymous is still listed for its old owner: {byuser:?}");
}

#[test]
fn stream_ids_strictly_increase() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let mut pipeline = redis::pipe();
    for n in 0..50 {
        pipeline.cmd("QSESS.SET").arg(format!("burst-{n}")).arg("USER").arg(n % 3).ignore();
    }
    pipeline.cmd("QSESS.REVOKEUSER").arg(1).ignore();
    pipeline.query::<()>(&mut con).unwrap();

    let ids: Vec<(u64, u64)> = every_raw_stream_entry_of_any_kind(&mut con)
        .iter()
        .map(|(id, _)| {
            let (ms, seq) = id.split_once('-').unwrap();
            (ms.parse().unwrap(), seq.parse().unwrap())
        })
        .collect();
    assert_eq!(ids.len(), 50 + 17 + 1, "50 sets, 17 dels and the revokeuser entry");
    for pair in ids.windows(2) {
        assert!(pair[0] < pair[1], "stream ids do not increase: {pair:?}");
    }
}
