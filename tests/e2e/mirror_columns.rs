//! Every qsess operation reaches `qsess.sessions` with the right columns: what QSESS.PEEK shows, the
//! version after each write and touch, and who ended a session and why. The daemon runs in-process
//! through the library (`qsess_syncd::run`).

use std::time::Duration;

use qsess_tests::eventually;
use redis::{Connection, Value};

use crate::support::mirror::{eventually_row, mirror_row, mirrored, peek, peek_number, peek_text, MirrorRow, Mirrored};
use crate::support::qsess_client::QsessClient;
use crate::support::server_clock::{server_clock_ms, wait_for_the_next_server_millisecond};
use crate::support::session_keys::handle_of;

/// `QSESS.SET` given as its arguments, the session id first: the new version.
fn set(con: &mut Connection, args: &[&str]) -> i64 {
    let (session_id, options) = args.split_first().expect("QSESS.SET needs a session id");
    QsessClient::new(con).set_expecting_version(session_id, options)
}

/// Checks every column of a live session's row against QSESS.PEEK.
fn row_matches_peek(con: &mut Connection, sid: &str, row: &MirrorRow) -> Result<(), String> {
    let fields = peek(con, sid).ok_or_else(|| format!("{sid} is not live in redis"))?;
    let absolute = peek_number(&fields, "abs");
    let expected = MirrorRow {
        handle: handle_of(sid),
        user_id: peek_text(&fields, "user"),
        data: redis::from_redis_value_ref::<Vec<u8>>(&fields["data"]).unwrap(),
        ip: peek_text(&fields, "ip"),
        ip_family: peek_text(&fields, "ip").map(|ip| if ip.contains(':') { 6 } else { 4 }),
        user_agent: peek_text(&fields, "ua"),
        created_ms: peek_number(&fields, "created"),
        updated_ms: peek_number(&fields, "updated"),
        seen_ms: peek_number(&fields, "seen"),
        expires_ms: peek_number(&fields, "expires"),
        absolute_ms: (absolute != 0).then_some(absolute),
        idle_timeout_ms: peek_number(&fields, "idle"),
        version: peek_number(&fields, "ver"),
        ended_ms: None,
        end_reason: None,
        live: true,
    };
    if *row == expected {
        Ok(())
    } else {
        Err(format!("row differs from PEEK: expected {expected:?}"))
    }
}

fn eventually_mirrors_peek(mirrored: &Mirrored, sid: &str) -> MirrorRow {
    let mut client = mirrored.db.client();
    let mut peek_con = mirrored.redis.connection();
    eventually_row(&mut client, &handle_of(sid), &format!("the row of {sid} to match PEEK"), |row| {
        row_matches_peek(&mut peek_con, sid, row)
    })
}

#[test]
fn a_set_with_every_option_fills_every_column() {
    let mirrored = mirrored(&[]);
    let mut con = mirrored.redis.connection();
    let data = b"\x00binary\xffdata{\"cart\":3}";
    let v4 = redis::cmd("QSESS.SET")
        .arg("cols-v4")
        .arg("DATA")
        .arg(&data[..])
        .arg("USER")
        .arg("alice")
        .arg("IP")
        .arg("203.0.113.7")
        .arg("UA")
        .arg("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0")
        .arg("IDLE")
        .arg(600_000)
        .arg("ABSOLUTE")
        .arg(3_600_000)
        .query::<i64>(&mut con)
        .unwrap();
    assert_eq!(v4, 1);
    set(&mut con, &["cols-v6", "USER", "alice", "IP", "2001:DB8:0:0::1", "IDLE", "0", "ABSOLUTE", "7200000"]);
    set(&mut con, &["cols-anon", "DATA", "anonymous", "IDLE", "60000"]);

    let row = eventually_mirrors_peek(&mirrored, "cols-v4");
    assert_eq!(row.data, data);
    assert_eq!((row.ip.as_deref(), row.ip_family), (Some("203.0.113.7"), Some(4)));
    assert_eq!(row.user_agent.as_deref(), Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"));
    assert_eq!((row.user_id.as_deref(), row.version, row.idle_timeout_ms), (Some("alice"), 1, 600_000));
    assert_eq!(row.absolute_ms, Some(row.created_ms + 3_600_000));
    assert_eq!(row.expires_ms, row.seen_ms + 600_000);

    let row = eventually_mirrors_peek(&mirrored, "cols-v6");
    assert_eq!((row.ip.as_deref(), row.ip_family), (Some("2001:db8::1"), Some(6)));
    assert_eq!((row.idle_timeout_ms, row.absolute_ms), (0, Some(row.created_ms + 7_200_000)));
    assert_eq!(Some(row.expires_ms), row.absolute_ms);

    let row = eventually_mirrors_peek(&mirrored, "cols-anon");
    assert_eq!(
        (row.user_id, row.ip, row.user_agent, row.absolute_ms),
        (None, None, None, Some(row.created_ms + 86_400_000))
    );
    assert_eq!(row.data, b"anonymous");
}

#[test]
fn updates_and_touches_bump_the_version_and_activity() {
    let mirrored = mirrored(&[("touch-granularity-ms", "0")]);
    let mut con = mirrored.redis.connection();
    assert_eq!(set(&mut con, &["upd", "DATA", "one", "USER", "bob", "IDLE", "60000"]), 1);
    let first = eventually_mirrors_peek(&mirrored, "upd");

    wait_for_the_next_server_millisecond(&mut con);
    assert_eq!(set(&mut con, &["upd", "XX", "DATA", "two", "UA", "agent/2", "IP", "198.51.100.9"]), 2);
    let updated = eventually_mirrors_peek(&mirrored, "upd");
    assert_eq!((updated.version, updated.data.as_slice(), updated.created_ms), (2, &b"two"[..], first.created_ms));
    assert!(updated.updated_ms > first.updated_ms, "{updated:?} after {first:?}");

    // An owner change moves the row to the new owner; ANON clears it.
    assert_eq!(set(&mut con, &["upd", "XX", "ANON"]), 3);
    let anonymous = eventually_mirrors_peek(&mirrored, "upd");
    assert_eq!((anonymous.user_id, anonymous.version), (None, 3));

    // A read with touch-granularity-ms 0 records activity: a touch entry with seen and expires only.
    wait_for_the_next_server_millisecond(&mut con);
    let got: Value = redis::cmd("QSESS.GET").arg("upd").query(&mut con).unwrap();
    assert_ne!(got, Value::Nil);
    let touched = eventually_mirrors_peek(&mirrored, "upd");
    assert_eq!(touched.version, 4);
    assert!(touched.seen_ms > anonymous.seen_ms && touched.expires_ms > anonymous.expires_ms, "{touched:?}");
    assert_eq!((touched.updated_ms, touched.data.as_slice()), (anonymous.updated_ms, &b"two"[..]));

    wait_for_the_next_server_millisecond(&mut con);
    let live: i64 = redis::cmd("QSESS.TOUCH").arg("upd").query(&mut con).unwrap();
    assert_eq!(live, 1);
    let touched_again = eventually_mirrors_peek(&mirrored, "upd");
    assert_eq!(touched_again.version, 5);
}

/// Waits for the row of `sid` to be ended for `reason` at `version`, with its data erased, outside
/// `qsess.live_sessions`, and ended between `from_ms` and `to_ms`.
fn assert_ended(mirrored: &Mirrored, sid: &str, reason: &str, version: i64, (from_ms, to_ms): (i64, i64)) {
    let mut client = mirrored.db.client();
    let row = eventually_row(&mut client, &handle_of(sid), &format!("{sid} to end ({reason})"), |row| {
        if row.ended_ms.is_some() {
            Ok(())
        } else {
            Err("not ended".to_owned())
        }
    });
    assert_eq!(row.end_reason.as_deref(), Some(reason), "{row:?}");
    assert_eq!((row.version, row.data.as_slice(), row.live), (version, &b""[..], false), "{row:?}");
    let ended = row.ended_ms.unwrap();
    assert!((from_ms..=to_ms).contains(&ended), "{sid} ended at {ended}, outside {from_ms}..={to_ms}");
}

#[test]
fn every_way_of_ending_a_session_is_recorded_with_its_reason() {
    let mirrored = mirrored(&[]);
    let mut con = mirrored.redis.connection();
    for (sid, user) in [("end-del", "carol"), ("end-revoke", "dave"), ("end-all-1", "erin"), ("end-all-2", "erin")] {
        set(&mut con, &[sid, "DATA", "secret-data", "USER", user]);
    }
    set(&mut con, &["end-limit-old", "USER", "frank", "DATA", "old"]);
    set(&mut con, &["end-rotate-old", "USER", "gina", "DATA", "rotating", "IP", "192.0.2.1"]);
    let mut client = mirrored.db.client();
    for sid in ["end-del", "end-revoke", "end-all-1", "end-all-2", "end-limit-old", "end-rotate-old"] {
        eventually_row(&mut client, &handle_of(sid), &format!("{sid} to be mirrored"), |_| Ok(()));
    }

    let before = server_clock_ms(&mut con);
    let deleted: i64 = redis::cmd("QSESS.DEL").arg("end-del").query(&mut con).unwrap();
    let revoked: i64 = redis::cmd("QSESS.REVOKE").arg("dave").arg(handle_of("end-revoke")).query(&mut con).unwrap();
    let revoked_all: i64 = redis::cmd("QSESS.REVOKEUSER").arg("erin").query(&mut con).unwrap();
    set(&mut con, &["end-limit-new", "USER", "frank", "DATA", "new", "LIMIT", "1"]);
    let rotated: i64 = redis::cmd("QSESS.ROTATE").arg("end-rotate-old").arg("end-rotate-new").query(&mut con).unwrap();
    let after = server_clock_ms(&mut con);
    assert_eq!((deleted, revoked, revoked_all, rotated), (1, 1, 2, 2));

    let window = (before, after);
    assert_ended(&mirrored, "end-del", "logout", 2, window);
    assert_ended(&mirrored, "end-revoke", "revoke", 2, window);
    assert_ended(&mirrored, "end-all-1", "revoke", 2, window);
    assert_ended(&mirrored, "end-all-2", "revoke", 2, window);
    assert_ended(&mirrored, "end-limit-old", "limit", 2, window);
    assert_ended(&mirrored, "end-rotate-old", "rotate", 2, window);

    let newest = eventually_mirrors_peek(&mirrored, "end-limit-new");
    assert_eq!((newest.user_id.as_deref(), newest.live), (Some("frank"), true));
    let old = mirror_row(&mut client, &handle_of("end-rotate-old")).unwrap();
    let new = eventually_mirrors_peek(&mirrored, "end-rotate-new");
    assert_eq!((new.created_ms, new.version, new.data.as_slice()), (old.created_ms, 2, &b"rotating"[..]));
    assert_eq!((new.user_id.as_deref(), new.ip.as_deref(), new.live), (Some("gina"), Some("192.0.2.1"), true));
    let live_handles: Vec<String> = client
        .query("select handle from qsess.live_sessions order by handle", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut expected = vec![handle_of("end-limit-new"), handle_of("end-rotate-new")];
    expected.sort();
    assert_eq!(live_handles, expected);
}

/// Versions start again at 1 when a session id is used again after its session expired; the mirror
/// must still show the new session rather than keep the old, expired row.
#[test]
fn a_session_recreated_under_an_expired_id_is_mirrored() {
    let mirrored = mirrored(&[]);
    let mut con = mirrored.redis.connection();
    set(&mut con, &["reused", "DATA", "first life", "USER", "hana", "IDLE", "400"]);
    set(&mut con, &["reused", "XX", "DATA", "first life, updated"]);
    assert_eq!(set(&mut con, &["reused", "XX", "DATA", "first life, last"]), 3);
    let mut client = mirrored.db.client();
    eventually_row(&mut client, &handle_of("reused"), "the first life to be mirrored", |row| {
        if row.version == 3 {
            Ok(())
        } else {
            Err("not version 3 yet".to_owned())
        }
    });
    eventually(Duration::from_secs(10), "the first life to expire", || match peek(&mut con, "reused") {
        None => Ok(()),
        Some(_) => Err("still live".to_owned()),
    });
    assert_eq!(set(&mut con, &["reused", "DATA", "second life", "USER", "hana", "IDLE", "600000"]), 1);
    // Entries are mirrored in stream order: once a later session is in, the second life was applied.
    set(&mut con, &["after-reuse", "USER", "hana"]);
    eventually_row(&mut client, &handle_of("after-reuse"), "a later change to be mirrored", |_| Ok(()));
    let row = mirror_row(&mut client, &handle_of("reused")).unwrap();
    row_matches_peek(&mut con, "reused", &row).unwrap_or_else(|problem| {
        panic!("the mirror kept the expired first life instead of the live second one: {problem}\nrow: {row:?}")
    });
}
