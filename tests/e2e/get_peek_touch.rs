//! QSESS.GET, QSESS.PEEK and QSESS.TOUCH: the reply layout, misses, and when reading a session
//! records activity (the debounced touch) and when it writes nothing at all.

use crate::support::commands::{
    qsess_set_or_panic, session_field_integer, session_field_text, snapshot_of_every_key_dump_and_expiry,
};
use crate::support::qsess_client::ordered_record_fields;
use crate::support::server_clock::{server_clock_ms, wait_until_server_clock_is_past};
use crate::support::session_keys::{change_stream_key, session_key, session_key_of, user_index_key_of};
use qsess_record::{ChangeRecord, Handle};
use qsess_tests::RedisServer;
use redis::{Connection, Value};

/// A record reply (RESP2 flat array) as ordered (field, value) pairs, or `None` for nil.
fn record_reply_as_ordered_fields(con: &mut Connection, command: &str, args: &[&str]) -> Option<Vec<(String, Value)>> {
    let reply = redis::cmd(command).arg(args).query::<Value>(con).unwrap();
    ordered_record_fields(reply, command)
}

fn field_names_in_order(fields: &[(String, Value)]) -> Vec<&str> {
    fields.iter().map(|(name, _)| name.as_str()).collect()
}

fn change_stream_length(con: &mut Connection) -> i64 {
    redis::cmd("XLEN").arg(change_stream_key(0)).query(con).unwrap()
}

fn last_change_stream_entry_fields(con: &mut Connection) -> Vec<(Vec<u8>, Vec<u8>)> {
    let entries: Vec<(String, Vec<Vec<u8>>)> =
        redis::cmd("XREVRANGE").arg(change_stream_key(0)).arg("+").arg("-").arg("COUNT").arg(1).query(con).unwrap();
    let (_, flat) = entries.into_iter().next().expect("the change stream has an entry");
    flat.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect()
}

fn server_with_touch_granularity_zero() -> RedisServer {
    RedisServer::builder().module_arg("touch-granularity-ms", 0).start()
}

#[test]
fn get_replies_every_field_in_the_documented_order() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["full", "DATA", "d", "USER", "u1", "IP", "192.0.2.1", "UA", "agent"]);
    let fields = record_reply_as_ordered_fields(&mut con, "QSESS.GET", &["full"]).expect("live session");
    assert_eq!(
        field_names_in_order(&fields),
        ["handle", "data", "user", "ip", "ua", "created", "updated", "seen", "idle", "abs", "expires", "ver"]
    );
    let handle = Handle::from_session_id(b"full");
    assert_eq!(session_field_text(&fields, "handle").as_deref(), Some(handle.as_str()));
    assert_eq!(session_field_text(&fields, "data").as_deref(), Some("d"));
    assert_eq!(session_field_text(&fields, "user").as_deref(), Some("u1"));
    assert_eq!(session_field_text(&fields, "ip").as_deref(), Some("192.0.2.1"));
    assert_eq!(session_field_text(&fields, "ua").as_deref(), Some("agent"));
    let created = session_field_integer(&fields, "created");
    assert_eq!(session_field_integer(&fields, "expires"), session_field_integer(&fields, "seen") + 1_800_000);
    assert_eq!(session_field_integer(&fields, "abs"), created + 86_400_000);
    assert_eq!(session_field_integer(&fields, "ver"), 1);

    qsess_set_or_panic(&mut con, &["bare", "IDLE", "0", "ABSOLUTE", "5000"]);
    let fields = record_reply_as_ordered_fields(&mut con, "QSESS.GET", &["bare", "NOTOUCH"]).unwrap();
    assert_eq!(
        field_names_in_order(&fields),
        ["handle", "data", "created", "updated", "seen", "idle", "abs", "expires", "ver"]
    );
    assert_eq!(session_field_text(&fields, "data").as_deref(), Some(""));
    assert_eq!(session_field_integer(&fields, "idle"), 0);
    let created = session_field_integer(&fields, "created");
    assert_eq!(session_field_integer(&fields, "abs"), created + 5000);
    assert_eq!(session_field_integer(&fields, "expires"), created + 5000);

    qsess_set_or_panic(&mut con, &["no-deadline", "ABSOLUTE", "0", "IDLE", "7000"]);
    let fields = record_reply_as_ordered_fields(&mut con, "QSESS.PEEK", &["no-deadline"]).unwrap();
    assert_eq!(session_field_integer(&fields, "abs"), 0);
    assert_eq!(session_field_integer(&fields, "expires"), session_field_integer(&fields, "seen") + 7000);
}

#[test]
fn get_peek_and_touch_of_a_missing_or_ended_session_reply_nil_or_zero() {
    let server = server_with_touch_granularity_zero();
    let mut con = server.connection();
    for (command, args) in
        [("QSESS.GET", &["nobody"][..]), ("QSESS.GET", &["nobody", "NOTOUCH"]), ("QSESS.PEEK", &["nobody"])]
    {
        assert_eq!(record_reply_as_ordered_fields(&mut con, command, args), None, "{command} {args:?}");
    }
    let touched: i64 = redis::cmd("QSESS.TOUCH").arg("nobody").query(&mut con).unwrap();
    assert_eq!(touched, 0);
    let key_count: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(key_count, 0, "a miss must write nothing");

    qsess_set_or_panic(&mut con, &["ended", "USER", "u1"]);
    let deleted: i64 = redis::cmd("QSESS.DEL").arg("ended").query(&mut con).unwrap();
    assert_eq!(deleted, 1);
    let before = snapshot_of_every_key_dump_and_expiry(&mut con);
    assert_eq!(record_reply_as_ordered_fields(&mut con, "QSESS.GET", &["ended"]), None);
    assert_eq!(record_reply_as_ordered_fields(&mut con, "QSESS.PEEK", &["ended"]), None);
    let touched: i64 = redis::cmd("QSESS.TOUCH").arg("ended").query(&mut con).unwrap();
    assert_eq!(touched, 0);
    assert_eq!(snapshot_of_every_key_dump_and_expiry(&mut con), before);
}

#[test]
fn peek_and_get_notouch_write_nothing_even_when_a_touch_is_due() {
    let server = server_with_touch_granularity_zero();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["s1", "USER", "u1", "DATA", "d"]);
    let original = record_reply_as_ordered_fields(&mut con, "QSESS.PEEK", &["s1"]).unwrap();
    wait_until_server_clock_is_past(&mut con, session_field_integer(&original, "seen") + 1);
    let before = snapshot_of_every_key_dump_and_expiry(&mut con);
    for _ in 0..3 {
        assert_eq!(record_reply_as_ordered_fields(&mut con, "QSESS.PEEK", &["s1"]).as_ref(), Some(&original));
        let notouch = record_reply_as_ordered_fields(&mut con, "QSESS.GET", &["s1", "notouch"]);
        assert_eq!(notouch.as_ref(), Some(&original));
    }
    assert_eq!(snapshot_of_every_key_dump_and_expiry(&mut con), before);
    assert_eq!(change_stream_length(&mut con), 1);
    // The same read without NOTOUCH is due to write: the positive control.
    let touched = record_reply_as_ordered_fields(&mut con, "QSESS.GET", &["s1"]).unwrap();
    assert_eq!(session_field_integer(&touched, "ver"), 2);
}

#[test]
fn get_with_zero_granularity_records_activity_everywhere() {
    let server = server_with_touch_granularity_zero();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["s1", "USER", "u1", "IDLE", "60000"]);
    let handle = Handle::from_session_id(b"s1");
    let record_key = session_key(0, &handle);
    let original = record_reply_as_ordered_fields(&mut con, "QSESS.PEEK", &["s1"]).unwrap();
    let old_seen = session_field_integer(&original, "seen");
    wait_until_server_clock_is_past(&mut con, old_seen + 1);

    let touched = record_reply_as_ordered_fields(&mut con, "QSESS.GET", &["s1"]).unwrap();
    let seen = session_field_integer(&touched, "seen");
    let expires = session_field_integer(&touched, "expires");
    assert_eq!(session_field_integer(&touched, "ver"), 2);
    assert!(seen > old_seen, "seen {seen} did not move past {old_seen}");
    assert_eq!(expires, seen + 60_000);
    assert_eq!(session_field_integer(&touched, "updated"), session_field_integer(&original, "updated"));
    assert_eq!(record_reply_as_ordered_fields(&mut con, "QSESS.PEEK", &["s1"]), Some(touched.clone()));

    assert_eq!(change_stream_length(&mut con), 2);
    let entry = last_change_stream_entry_fields(&mut con);
    let pairs: Vec<(&[u8], &[u8])> = entry.iter().map(|(f, v)| (f.as_slice(), v.as_slice())).collect();
    let expected =
        ChangeRecord::Touch { handle, user: Some(b"u1"), version: 2, seen_ms: seen as u64, expires_ms: expires as u64 };
    assert_eq!(ChangeRecord::parse(&pairs).unwrap(), expected);

    let score: i64 = redis::cmd("ZSCORE").arg(user_index_key_of("u1")).arg(handle.as_str()).query(&mut con).unwrap();
    assert_eq!(score, expires, "the index member is re-scored with the new expiry");
    let record_expire_time: i64 = redis::cmd("PEXPIRETIME").arg(&record_key).query(&mut con).unwrap();
    assert_eq!(record_expire_time, expires, "the record key's expiry slides");
    let index_expire_time: i64 = redis::cmd("PEXPIRETIME").arg(user_index_key_of("u1")).query(&mut con).unwrap();
    assert!(index_expire_time >= expires, "index expires at {index_expire_time}, before its member {expires}");
}

#[test]
fn get_with_default_granularity_writes_nothing_on_repeated_reads() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["s1", "USER", "u1"]);
    let before = snapshot_of_every_key_dump_and_expiry(&mut con);
    let mut previous_clock = server_clock_ms(&mut con);
    for _ in 0..5 {
        wait_until_server_clock_is_past(&mut con, previous_clock + 1);
        previous_clock = server_clock_ms(&mut con);
        let fields = record_reply_as_ordered_fields(&mut con, "QSESS.GET", &["s1"]).unwrap();
        assert_eq!(session_field_integer(&fields, "ver"), 1);
        let touched: i64 = redis::cmd("QSESS.TOUCH").arg("s1").query(&mut con).unwrap();
        assert_eq!(touched, 1);
    }
    assert_eq!(change_stream_length(&mut con), 1);
    assert_eq!(snapshot_of_every_key_dump_and_expiry(&mut con), before);
}

#[test]
fn a_short_idle_timeout_caps_the_touch_interval_at_half_of_it() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["short", "IDLE", "400"]);
    let original = record_reply_as_ordered_fields(&mut con, "QSESS.PEEK", &["short"]).unwrap();
    let seen = session_field_integer(&original, "seen");
    let early = record_reply_as_ordered_fields(&mut con, "QSESS.GET", &["short"]).unwrap();
    if server_clock_ms(&mut con) < seen + 200 {
        assert_eq!(session_field_integer(&early, "ver"), 1, "a read within idle/2 must not write");
    }
    wait_until_server_clock_is_past(&mut con, seen + 199);
    let late =
        record_reply_as_ordered_fields(&mut con, "QSESS.GET", &["short"]).expect("still within the idle timeout");
    assert_eq!(
        session_field_integer(&late, "ver"),
        2,
        "a read after idle/2 records activity despite the 60 s granularity"
    );
    assert!(session_field_integer(&late, "seen") >= seen + 200);
}

#[test]
fn touch_replies_one_for_a_live_session_and_records_activity() {
    let server = server_with_touch_granularity_zero();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["s1", "DATA", "d"]);
    let original = record_reply_as_ordered_fields(&mut con, "QSESS.PEEK", &["s1"]).unwrap();
    wait_until_server_clock_is_past(&mut con, session_field_integer(&original, "seen") + 1);
    let touched: i64 = redis::cmd("QSESS.TOUCH").arg("s1").query(&mut con).unwrap();
    assert_eq!(touched, 1);
    let after = record_reply_as_ordered_fields(&mut con, "QSESS.PEEK", &["s1"]).unwrap();
    assert_eq!(session_field_integer(&after, "ver"), 2);
    assert!(session_field_integer(&after, "seen") > session_field_integer(&original, "seen"));
    assert_eq!(change_stream_length(&mut con), 2);
    let entry = last_change_stream_entry_fields(&mut con);
    assert_eq!(entry[0], (b"op".to_vec(), b"touch".to_vec()));
    assert!(!entry.iter().any(|(field, _)| field == b"u"), "anonymous touch has no owner field: {entry:?}");
}

#[test]
fn an_unreadable_record_is_reported_and_can_be_deleted_with_del_as_the_error_advises() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let record_key = session_key_of("corrupt");
    redis::cmd("SET").arg(&record_key).arg("not a qsess record").exec(&mut con).unwrap();
    let before = snapshot_of_every_key_dump_and_expiry(&mut con);
    for (command, args) in
        [("QSESS.GET", &["corrupt"][..]), ("QSESS.PEEK", &["corrupt"]), ("QSESS.TOUCH", &["corrupt"])]
    {
        let error = redis::cmd(command).arg(args).query::<Value>(&mut con).expect_err("an unreadable record");
        let text = format!("{} {}", error.code().unwrap_or("?"), error.detail().unwrap_or(""));
        assert!(text.starts_with("ERR stored session record is unreadable ("), "{command}: {text}");
        assert!(text.ends_with("; delete it with QSESS.DEL"), "{command}: {text}");
    }
    assert_eq!(snapshot_of_every_key_dump_and_expiry(&mut con), before, "refusals write nothing");
    // The advice must work: QSESS.DEL gets rid of the unreadable record.
    let deleted = redis::cmd("QSESS.DEL").arg("corrupt").query::<Value>(&mut con);
    assert!(deleted.is_ok(), "QSESS.DEL of the unreadable record failed: {deleted:?}");
    let exists: i64 = redis::cmd("EXISTS").arg(&record_key).query(&mut con).unwrap();
    assert_eq!(exists, 0, "the unreadable record is still there after QSESS.DEL");
}

/// Whether a transaction WATCHing `session_id`'s record key still commits after `read` ran on
/// another connection.
fn watch_survives(server: &RedisServer, session_id: &str, read: &[&str]) -> bool {
    let mut watcher = server.connection();
    let mut reader = server.connection();
    let record_key = session_key(0, &Handle::from_session_id(session_id.as_bytes()));
    redis::cmd("WATCH").arg(&record_key).query::<()>(&mut watcher).unwrap();
    redis::cmd(read[0]).arg(&read[1..]).query::<Value>(&mut reader).unwrap();
    redis::cmd("MULTI").query::<()>(&mut watcher).unwrap();
    redis::cmd("PING").query::<Value>(&mut watcher).unwrap();
    let committed = redis::cmd("EXEC").query::<Value>(&mut watcher).unwrap();
    committed != Value::Nil
}

#[test]
fn a_read_that_records_no_activity_does_not_abort_a_watch_on_the_session() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["s1", "USER", "u1"]);
    assert!(watch_survives(&server, "s1", &["QSESS.GET", "s1"]), "a QSESS.GET within the touch granularity");
    assert!(watch_survives(&server, "s1", &["QSESS.GET", "s1", "NOTOUCH"]));
    assert!(watch_survives(&server, "s1", &["QSESS.PEEK", "s1"]));
    assert!(watch_survives(&server, "s1", &["QSESS.TOUCH", "s1"]), "a QSESS.TOUCH within the touch granularity");
    assert!(watch_survives(&server, "missing", &["QSESS.GET", "missing"]));
    assert_eq!(change_stream_length(&mut con), 1, "none of those reads wrote anything");

    let touching = server_with_touch_granularity_zero();
    let mut con = touching.connection();
    qsess_set_or_panic(&mut con, &["s1", "USER", "u1"]);
    let written_at = server_clock_ms(&mut con);
    wait_until_server_clock_is_past(&mut con, written_at + 1);
    assert!(!watch_survives(&touching, "s1", &["QSESS.GET", "s1"]), "a GET that records activity writes the record");
}
