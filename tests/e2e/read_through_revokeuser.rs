//! `QSESS.REVOKEUSER` after Redis lost its data: it cannot list the sessions, yet every one of them
//! must stay unrecoverable and end in the mirror; `EXCEPT` keeps exactly one; sessions of the user
//! made after the revocation live on in both.

use redis::{Connection, Value};

use crate::support::mirror::{eventually_row, mirror_row, MirrorRow};
use crate::support::read_through::{
    counter, del_key, exists, get, get_notouch, raw_record, restore, set_session, Stack,
};
use crate::support::server_clock::wait_until_server_clock_is_past;
use crate::support::session_keys::{handle_of, session_key_of, tombstone_key_of, user_revocation_key};

const MISS_TIMEOUT_MS: &str = "10000";

fn revokeuser(con: &mut Connection, user: &str, except: Option<&str>) -> i64 {
    let mut command = redis::cmd("QSESS.REVOKEUSER");
    command.arg(user);
    if let Some(sid) = except {
        command.arg("EXCEPT").arg(sid);
    }
    command.query(con).unwrap_or_else(|e| panic!("QSESS.REVOKEUSER {user}: {e}"))
}

/// When `user` last revoked everything, from the user-revocation key of bucket 0.
fn revoked_at(con: &mut Connection, user: &str) -> u64 {
    let value: String = redis::cmd("GET").arg(user_revocation_key(0, user)).query(con).unwrap();
    value.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn revokeuser_after_redis_lost_everything_ends_the_sessions_only_the_mirror_holds() {
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", MISS_TIMEOUT_MS)]);
    let mut con = stack.con();
    let doomed = ["u42-laptop", "u42-phone", "u42-tablet"];
    let mut records = Vec::new();
    for sid in doomed {
        let version = set_session(&mut con, sid, "42");
        stack.wait_mirrored(sid, version);
        records.push(raw_record(&mut con, sid).unwrap());
    }
    let bystander_version = set_session(&mut con, "u43-laptop", "43");
    stack.wait_mirrored("u43-laptop", bystander_version);
    let bystander = get_notouch(&mut con, "u43-laptop");
    drop(con);

    stack.redis.restart_empty();
    stack.wait_loader(true);
    let mut con = stack.con();
    assert_eq!(revokeuser(&mut con, "42", None), 0, "the restarted Redis knew sessions of 42");
    let at = revoked_at(&mut con, "42");

    // (i) None of them can come back: a reload is refused (and tombstones the id), a read is nil.
    assert_eq!(restore(&mut con, &handle_of(doomed[0]), &records[0]).as_deref(), Ok("REVOKED"));
    assert!(exists(&mut con, &tombstone_key_of(doomed[0])));
    for sid in doomed {
        assert_eq!(get(&mut con, sid), Value::Nil, "{sid} came back after REVOKEUSER");
        assert!(!exists(&mut con, &session_key_of(sid)));
    }
    for (sid, record) in doomed.iter().zip(&records) {
        assert_eq!(restore(&mut con, &handle_of(sid), record).as_deref(), Ok("REVOKED"), "{sid}");
    }
    assert_eq!(get(&mut con, "u43-laptop"), bystander, "another user's session did not come back");

    // (ii) The mirror ends them, by the revokeuser entry.
    for sid in doomed {
        let row = stack.wait_ended(sid, "revoke");
        assert_eq!(row.ended_ms, Some(at as i64), "{sid} did not end at the revocation: {row:?}");
    }

    // A session of 42 made after the revocation lives in both, and comes back when lost.
    wait_until_server_clock_is_past(&mut con, at as i64);
    let version = set_session(&mut con, "u42-new", "42");
    stack.wait_mirrored("u42-new", version);
    let fresh = get_notouch(&mut con, "u42-new");
    del_key(&mut con, &session_key_of("u42-new"));
    assert_eq!(get(&mut con, "u42-new"), fresh, "a session made after the revocation did not come back");
    let row = mirror_row(&mut stack.pg, &handle_of("u42-new")).unwrap();
    assert!(row.live && row.ended_ms.is_none(), "the mirror ended a session made after the revocation: {row:?}");
    for sid in doomed {
        assert_eq!(get(&mut con, sid), Value::Nil, "{sid} came back");
    }
    assert_eq!(counter(&mut con, "qsess_miss_timeouts"), 0);
}

#[test]
fn revokeuser_except_after_redis_lost_everything_keeps_exactly_that_session() {
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", MISS_TIMEOUT_MS)]);
    let mut con = stack.con();
    for sid in ["u77-current", "u77-other-1", "u77-other-2"] {
        let version = set_session(&mut con, sid, "77");
        stack.wait_mirrored(sid, version);
    }
    let current = get_notouch(&mut con, "u77-current");
    drop(con);

    stack.redis.restart_empty();
    stack.wait_loader(true);
    let mut con = stack.con();
    assert_eq!(revokeuser(&mut con, "77", Some("u77-current")), 0);
    assert_eq!(get(&mut con, "u77-current"), current, "the session kept by EXCEPT did not come back");
    for sid in ["u77-other-1", "u77-other-2"] {
        assert_eq!(get(&mut con, sid), Value::Nil, "{sid} came back after REVOKEUSER EXCEPT");
    }
    for sid in ["u77-other-1", "u77-other-2"] {
        stack.wait_ended(sid, "revoke");
    }
    let kept = mirror_row(&mut stack.pg, &handle_of("u77-current")).unwrap();
    assert!(kept.live && kept.ended_ms.is_none(), "the mirror ended the session kept by EXCEPT: {kept:?}");
    // Lost once more, the kept session still comes back.
    del_key(&mut con, &session_key_of("u77-current"));
    assert_eq!(get(&mut con, "u77-current"), current);
}

#[test]
fn a_session_made_right_after_revokeuser_in_the_same_millisecond_survives() {
    // "Log out everywhere, then sign in again" in one request: the new session is created after the
    // revocation, but usually within the same millisecond.
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", MISS_TIMEOUT_MS)]);
    let mut con = stack.con();
    let mut attempt = 0;
    let (sid, user) = loop {
        attempt += 1;
        assert!(attempt <= 50, "never managed to create a session in the revocation's millisecond");
        let user = format!("same-ms-{attempt}");
        let sid = format!("same-ms-new-{attempt}");
        let (_, version): (i64, i64) = redis::pipe()
            .cmd("QSESS.REVOKEUSER")
            .arg(&user)
            .cmd("QSESS.SET")
            .arg(&sid)
            .arg("USER")
            .arg(&user)
            .arg("DATA")
            .arg("signed in again")
            .query(&mut con)
            .unwrap();
        assert_eq!(version, 1);
        let created = match get_notouch(&mut con, &sid) {
            Value::Array(fields) => fields
                .chunks_exact(2)
                .find(|pair| pair[0] == Value::BulkString(b"created".to_vec()))
                .map(|pair| redis::from_redis_value_ref::<u64>(&pair[1]).unwrap())
                .unwrap(),
            other => panic!("GET {sid}: {other:?}"),
        };
        if created == revoked_at(&mut con, &user) {
            break (sid, user);
        }
    };
    // Once its row is there, everything before it in the stream (the revocation) was mirrored too.
    let row = wait_row_at_version(&mut stack.pg, &sid, 1);
    let expected = get_notouch(&mut con, &sid);
    del_key(&mut con, &session_key_of(&sid));
    let reread = get(&mut con, &sid);
    let mut problems = Vec::new();
    if reread != expected {
        problems.push(format!("lost from Redis, it did not come back: GET replied {reread:?}"));
    }
    if !row.live {
        problems.push(format!("the mirror ended it: {row:?}"));
    }
    assert!(problems.is_empty(), "a session made after REVOKEUSER {user}: {problems:#?}");
}

#[test]
fn the_session_kept_by_revokeuser_except_comes_back_after_it_was_rotated() {
    // "Log out other devices", then a new id for the current session (as after a password change).
    let mut stack = Stack::start(&[("qsess.miss-timeout-ms", MISS_TIMEOUT_MS)]);
    let mut con = stack.con();
    for sid in ["u88-current", "u88-other"] {
        let version = set_session(&mut con, sid, "88");
        stack.wait_mirrored(sid, version);
    }
    assert_eq!(revokeuser(&mut con, "88", Some("u88-current")), 1);
    let version: i64 = redis::cmd("QSESS.ROTATE").arg("u88-current").arg("u88-rotated").query(&mut con).unwrap();
    let row = wait_row_at_version(&mut stack.pg, "u88-rotated", version);
    stack.wait_ended("u88-other", "revoke");
    let expected = get_notouch(&mut con, "u88-rotated");

    del_key(&mut con, &session_key_of("u88-rotated"));
    let reread = get(&mut con, "u88-rotated");
    let mut problems = Vec::new();
    if reread != expected {
        problems.push(format!("lost from Redis, it did not come back: GET replied {reread:?}"));
    }
    if !row.live {
        problems.push(format!("the mirror ended it: {row:?}"));
    }
    assert!(problems.is_empty(), "the current session, kept by EXCEPT then rotated: {problems:#?}");
    assert_eq!(get(&mut con, "u88-other"), Value::Nil);
    assert_eq!(get(&mut con, "u88-current"), Value::Nil, "the rotated-away id came back");
}

/// Waits until the mirror holds `sid` at `version`, live or not.
fn wait_row_at_version(pg: &mut postgres::Client, sid: &str, version: i64) -> MirrorRow {
    eventually_row(pg, &handle_of(sid), &format!("{sid} to be mirrored at version {version}"), |row| {
        match row.version == version {
            true => Ok(()),
            false => Err(format!("not at version {version}")),
        }
    })
}
