//! Idle and absolute timeouts as the store enforces them: sessions end on time, activity slides only
//! the idle expiry, and the record key's TTL and the index score follow `expires` exactly.

use std::thread;
use std::time::Duration;

use crate::support::commands::{qsess_set_or_panic, session_field_integer};
use crate::support::qsess_client::{ordered_record_fields, QsessClient};
use crate::support::server_clock::server_clock_ms;
use crate::support::session_keys::{session_key_of, user_index_key_of};
use qsess_record::Handle;
use qsess_tests::{eventually, RedisServer};
use redis::{Connection, Value};

/// A record reply (RESP2 flat array) as (field, value) pairs, or `None` for nil.
fn record_reply_fields(con: &mut Connection, command: &str, sid: &str) -> Option<Vec<(String, Value)>> {
    let reply = redis::cmd(command).arg(sid).query::<Value>(con).unwrap();
    ordered_record_fields(reply, command)
}

#[test]
fn idle_timeout_ends_an_unused_session_and_its_key() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["idle", "USER", "u1", "IDLE", "300"]);
    let fields = record_reply_fields(&mut con, "QSESS.PEEK", "idle").expect("live right after SET");
    let expires = session_field_integer(&fields, "expires");
    assert_eq!(expires, session_field_integer(&fields, "seen") + 300);
    assert_eq!(QsessClient::new(&mut con).byuser_handles("u1").len(), 1);

    // PEEK never counts as activity, so polling with it does not keep the session alive.
    eventually(Duration::from_secs(3), "the idle session to end", || {
        let before = server_clock_ms(&mut con);
        match record_reply_fields(&mut con, "QSESS.PEEK", "idle") {
            Some(_) => {
                assert!(before < expires, "still live at {before}, after its expiry {expires}");
                Err(format!("still live at {before}"))
            }
            None => Ok(()),
        }
    });
    let ended_at = server_clock_ms(&mut con);
    assert!(ended_at >= expires, "ended at {ended_at}, before its expiry {expires}");
    assert_eq!(record_reply_fields(&mut con, "QSESS.GET", "idle"), None);
    eventually(Duration::from_secs(2), "the record key to be gone", || {
        let exists: i64 = redis::cmd("EXISTS").arg(session_key_of("idle")).query(&mut con).unwrap();
        if exists == 0 {
            Ok(())
        } else {
            Err("record key still exists".to_owned())
        }
    });
    assert!(QsessClient::new(&mut con).byuser_handles("u1").is_empty());
    let touched: i64 = redis::cmd("QSESS.TOUCH").arg("idle").query(&mut con).unwrap();
    assert_eq!(touched, 0);
}

#[test]
fn activity_slides_the_idle_expiry() {
    let server = RedisServer::builder().module_arg("touch-granularity-ms", 0).start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["busy", "IDLE", "300"]);
    let first_expires = session_field_integer(&record_reply_fields(&mut con, "QSESS.PEEK", "busy").unwrap(), "expires");
    let mut last_expires = first_expires;
    for round in 0..6 {
        thread::sleep(Duration::from_millis(100));
        let fields = record_reply_fields(&mut con, "QSESS.GET", "busy")
            .unwrap_or_else(|| panic!("session ended despite a read every 100 ms (round {round})"));
        last_expires = session_field_integer(&fields, "expires");
        assert_eq!(last_expires, session_field_integer(&fields, "seen") + 300);
    }
    assert!(last_expires >= first_expires + 500, "expiry moved from {first_expires} only to {last_expires}");
    let pexpiretime: i64 = redis::cmd("PEXPIRETIME").arg(session_key_of("busy")).query(&mut con).unwrap();
    assert_eq!(pexpiretime, last_expires);
    eventually(Duration::from_secs(3), "the session to end once reads stop", || {
        match record_reply_fields(&mut con, "QSESS.PEEK", "busy") {
            Some(_) => Err("still live".to_owned()),
            None => Ok(()),
        }
    });
}

#[test]
fn absolute_timeout_ends_the_session_despite_activity() {
    let server = RedisServer::builder().module_arg("touch-granularity-ms", 0).start();
    let mut con = server.connection();
    qsess_set_or_panic(&mut con, &["bounded", "ABSOLUTE", "500", "IDLE", "10000"]);
    let fields = record_reply_fields(&mut con, "QSESS.PEEK", "bounded").unwrap();
    let deadline = session_field_integer(&fields, "created") + 500;
    assert_eq!(session_field_integer(&fields, "abs"), deadline);
    assert_eq!(session_field_integer(&fields, "expires"), deadline);
    let mut successful_reads = 0;
    for _ in 0..40 {
        thread::sleep(Duration::from_millis(100));
        let before = server_clock_ms(&mut con);
        match record_reply_fields(&mut con, "QSESS.GET", "bounded") {
            Some(fields) => {
                assert!(before < deadline, "live at {before}, after the absolute deadline {deadline}");
                assert_eq!(session_field_integer(&fields, "expires"), deadline, "activity must not pass the deadline");
                successful_reads += 1;
            }
            None => {
                let after = server_clock_ms(&mut con);
                assert!(after >= deadline, "ended at {after}, before the absolute deadline {deadline}");
                assert!(successful_reads >= 1, "no read happened before the deadline; the test proved nothing");
                eventually(Duration::from_secs(2), "the record key to be gone", || {
                    let key = session_key_of("bounded");
                    let pttl: i64 = redis::cmd("PTTL").arg(key).query(&mut con).unwrap();
                    if pttl == -2 {
                        Ok(())
                    } else {
                        Err(format!("PTTL {pttl}"))
                    }
                });
                return;
            }
        }
    }
    panic!("the session outlived its 500 ms absolute timeout by seconds");
}

#[test]
fn record_ttl_and_index_score_match_expires() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let cases: [(&str, &[&str]); 3] = [
        ("idle-bound", &["IDLE", "60000"]),
        ("absolute-bound", &["IDLE", "60000", "ABSOLUTE", "30000"]),
        ("absolute-only", &["IDLE", "0", "ABSOLUTE", "20000"]),
    ];
    let mut latest = 0;
    for (sid, timeouts) in cases {
        let mut args = vec![sid, "USER", "u1"];
        args.extend_from_slice(timeouts);
        qsess_set_or_panic(&mut con, &args);
        let fields = record_reply_fields(&mut con, "QSESS.PEEK", sid).unwrap();
        let expires = session_field_integer(&fields, "expires");
        let created = session_field_integer(&fields, "created");
        let expected = match sid {
            "idle-bound" => created + 60_000,
            "absolute-bound" => created + 30_000,
            _ => created + 20_000,
        };
        assert_eq!(expires, expected, "{sid}");
        latest = latest.max(expires);
        let key = session_key_of(sid);
        let before = server_clock_ms(&mut con);
        let pttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut con).unwrap();
        let after = server_clock_ms(&mut con);
        assert!(
            (expires - after..=expires - before).contains(&pttl),
            "{sid}: PTTL {pttl} is not expires - now ({}..={})",
            expires - after,
            expires - before
        );
        let pexpiretime: i64 = redis::cmd("PEXPIRETIME").arg(&key).query(&mut con).unwrap();
        assert_eq!(pexpiretime, expires, "{sid}");
        let handle = Handle::from_session_id(sid.as_bytes()).to_string();
        let score: i64 = redis::cmd("ZSCORE").arg(user_index_key_of("u1")).arg(&handle).query(&mut con).unwrap();
        assert_eq!(score, expires, "{sid}");
    }
    let index_expires: i64 = redis::cmd("PEXPIRETIME").arg(user_index_key_of("u1")).query(&mut con).unwrap();
    assert_eq!(index_expires, latest, "the index lives exactly as long as its longest-lived session");
    let listed = QsessClient::new(&mut con).byuser_handles("u1");
    let expected_order: Vec<String> = ["absolute-only", "absolute-bound", "idle-bound"]
        .iter()
        .map(|sid| Handle::from_session_id(sid.as_bytes()).to_string())
        .collect();
    assert_eq!(listed, expected_order, "BYUSER lists the soonest expiry first");
}

#[test]
fn idle_zero_with_absolute_zero_is_refused_explicitly_and_by_defaults() {
    let server = RedisServer::builder().start();
    let mut con = server.connection();
    let refusal = |con: &mut Connection, args: &[&str]| -> String {
        let error = redis::cmd("QSESS.SET").arg(args).query::<Value>(con).expect_err("must be refused");
        format!("{} {}", error.code().unwrap_or("?"), error.detail().unwrap_or(""))
    };
    let expected = "ERR a session needs an idle or an absolute timeout";
    assert!(refusal(&mut con, &["s1", "IDLE", "0", "ABSOLUTE", "0"]).starts_with(expected));
    for (name, value) in [("qsess.idle-timeout-ms", "0"), ("qsess.absolute-timeout-ms", "0")] {
        redis::cmd("CONFIG").arg("SET").arg(name).arg(value).exec(&mut con).unwrap();
    }
    assert!(refusal(&mut con, &["s1"]).starts_with(expected));
    assert!(refusal(&mut con, &["s1", "IDLE", "0"]).starts_with(expected));
    let key_count: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(key_count, 0);
    qsess_set_or_panic(&mut con, &["s1", "IDLE", "1000"]);
    let fields = record_reply_fields(&mut con, "QSESS.PEEK", "s1").unwrap();
    assert_eq!(session_field_integer(&fields, "abs"), 0, "absolute default 0 means no deadline");
    assert_eq!(session_field_integer(&fields, "expires"), session_field_integer(&fields, "seen") + 1000);
}
