//! Running the daemon: SIGTERM finishes what was read and exits 0, the purge deletes expired rows
//! only after the grace, and changes that cannot be applied are kept in `qsess.rejected_changes`
//! while everything around them is mirrored.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qsess_record::{ChangeRecord, UserRevocation};
use qsess_tests::{eventually, shared_cluster, Daemon, RedisServer};
use redis::Connection;

use crate::support::mirror::{
    all_mirror_rows, eventually_row, eventually_verify_matches, last_delivered_id, mirror_matches_load, mirror_row,
    pending_count, try_row_count, Load, CATCH_UP_DEADLINE, GROUP, MIRROR_DEADLINE,
};
use crate::support::session_keys::{change_stream_key, handle_of};

type RawEntry = (String, Vec<(Vec<u8>, Vec<u8>)>);
/// A stream entry as XRANGE answers it: its id and its fields and values in one list.
type FlatEntry = (String, Vec<Vec<u8>>);

fn stream_entries(con: &mut Connection, from: &str, to: &str) -> Vec<RawEntry> {
    let entries: Vec<FlatEntry> = redis::cmd("XRANGE").arg(change_stream_key(0)).arg(from).arg(to).query(con).unwrap();
    entries
        .into_iter()
        .map(|(id, flat)| (id, flat.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect()))
        .collect()
}

#[test]
fn sigterm_commits_what_was_read_and_exits_0() {
    let redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    let mut daemon = Daemon::start(redis.url(), db.url(), &[]);
    let mut con = redis.connection();
    let mut client = db.client();
    let load = Load::start(&redis.url(), "sigterm");
    load.wait_for_more_commands(1500);
    eventually(MIRROR_DEADLINE, "the mirror to fill", || {
        let rows = try_row_count(&mut client)?;
        if rows > 100 {
            Ok(())
        } else {
            Err(format!("{rows} rows"))
        }
    });

    daemon.terminate();
    let signalled = Instant::now();
    let signalled_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let status = daemon.wait_exit(Duration::from_secs(10));
    let took = signalled.elapsed();
    let report = load.stop();
    assert!(status.success(), "qsess-syncd exited with {status}; log:\n{}", daemon.log());
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(daemon.log().contains("every batch read was committed and acknowledged"), "{}", daemon.log());

    // Everything the daemon had read is committed and acknowledged: nothing is pending, and every
    // change up to the last one delivered to the group is in Postgres.
    assert_eq!(pending_count(&mut con), 0, "entries left pending by a clean shutdown");
    let last_delivered = last_delivered_id(&mut con);
    let delivered = stream_entries(&mut con, "-", &last_delivered);
    let rows = all_mirror_rows(&mut client);
    for (id, fields) in &delivered {
        let pairs: Vec<(&[u8], &[u8])> =
            fields.iter().map(|(name, value)| (name.as_slice(), value.as_slice())).collect();
        if UserRevocation::parse(&pairs).is_some() {
            continue;
        }
        let change = ChangeRecord::parse(&pairs).unwrap();
        let row = rows.get(change.handle().as_str());
        assert!(
            row.is_some_and(|row| row.version >= change.version() as i64),
            "entry {id} (version {} of {}) was delivered before the shutdown but is not mirrored: {row:?}",
            change.version(),
            change.handle()
        );
    }
    // Shutdown stops reading: what was written just before the signal and not read yet is left in
    // Redis (README: "SIGTERM or SIGINT stops reading; the batch in flight is committed").
    let unread_before_signal = stream_entries(&mut con, &format!("({last_delivered}"), "+")
        .iter()
        .filter(|(id, _)| id.split('-').next().unwrap().parse::<u64>().unwrap() < signalled_ms)
        .count();
    eprintln!(
        "{} entries delivered up to {last_delivered} are mirrored; {unread_before_signal} written before the \
         signal were not read before the exit",
        delivered.len()
    );

    // Changes written after the daemon stopped reading wait in Redis for the next start.
    let _restarted = Daemon::start(redis.url(), db.url(), &[]);
    eventually(CATCH_UP_DEADLINE, "the next daemon to mirror the rest", || mirror_matches_load(&mut client, &report));
}

#[test]
fn the_purge_deletes_expired_rows_after_the_grace_only() {
    let redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    let daemon = Daemon::start(redis.url(), db.url(), &["--purge-interval", "200ms", "--purge-grace", "1s"]);
    let mut con = redis.connection();
    let mut client = db.client();
    let _: i64 =
        redis::cmd("QSESS.SET").arg("purge-short").arg("USER").arg("lou").arg("IDLE").arg(300).query(&mut con).unwrap();
    let _: i64 = redis::cmd("QSESS.SET").arg("purge-long").arg("USER").arg("lou").query(&mut con).unwrap();
    let short = eventually_row(&mut client, &handle_of("purge-short"), "the short session's row", |_| Ok(()));
    eventually_row(&mut client, &handle_of("purge-long"), "the long session's row", |_| Ok(()));

    let deadline = Instant::now() + MIRROR_DEADLINE;
    loop {
        let row = client
            .query_one(
                "select exists (select 1 from qsess.sessions where handle = $1), (extract(epoch from now()) * 1000)::int8",
                &[&short.handle],
            )
            .unwrap();
        let (exists, now_ms): (bool, i64) = (row.get(0), row.get(1));
        if !exists {
            assert!(
                now_ms >= short.expires_ms + 1000,
                "the row was purged {} ms after it expired, within the 1 s grace",
                now_ms - short.expires_ms
            );
            break;
        }
        assert!(Instant::now() < deadline, "the expired row was never purged; log:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let long = mirror_row(&mut client, &handle_of("purge-long")).expect("the live session's row was purged");
    assert!(long.live, "{long:?}");
    assert!(daemon.log().contains("purged expired sessions"), "{}", daemon.log());
}

#[test]
fn a_malformed_entry_is_rejected_and_the_entries_around_it_are_mirrored() {
    let redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    let mut daemon = Daemon::start(redis.url(), db.url(), &[]);
    let mut con = redis.connection();
    let set = |con: &mut Connection, sid: &str| {
        let _: i64 = redis::cmd("QSESS.SET").arg(sid).arg("USER").arg("mo").query(con).unwrap();
    };
    set(&mut con, "good-1");
    let bad_handle = handle_of("bad-record");
    let garbage_id: String = redis::cmd("XADD")
        .arg(change_stream_key(0))
        .arg("*")
        .arg(&[("op", "set"), ("h", bad_handle.as_str()), ("v", "1"), ("r", "\x01garbage")])
        .query(&mut con)
        .unwrap();
    set(&mut con, "good-2");
    let unknown_id: String = redis::cmd("XADD")
        .arg(change_stream_key(0))
        .arg("*")
        .arg(&[("op", "frobnicate"), ("v", "1")])
        .query(&mut con)
        .unwrap();
    set(&mut con, "good-3");

    let mut client = db.client();
    for sid in ["good-1", "good-2", "good-3"] {
        eventually_row(&mut client, &handle_of(sid), &format!("{sid} to be mirrored"), |row| {
            if row.live {
                Ok(())
            } else {
                Err("not live".to_owned())
            }
        });
    }
    let rejected = eventually(MIRROR_DEADLINE, "two rejected changes", || {
        let rows = client
            .query(
                "select stream, entry_id, handle, op, version, error, fields from qsess.rejected_changes order by id",
                &[],
            )
            .unwrap();
        if rows.len() == 2 {
            Ok(rows)
        } else {
            Err(format!("{} rejected changes", rows.len()))
        }
    });
    let first = &rejected[0];
    assert_eq!((first.get::<_, String>(0), first.get::<_, String>(1)), (change_stream_key(0), garbage_id));
    assert_eq!(first.get::<_, Option<String>>(2), Some(bad_handle.clone()));
    assert_eq!((first.get::<_, Option<String>>(3), first.get::<_, Option<i64>>(4)), (Some("set".to_owned()), Some(1)));
    assert!(!first.get::<_, String>(5).is_empty());
    assert!(first.get::<_, Vec<u8>>(6).starts_with(b"op=set\n"), "{:?}", first.get::<_, Vec<u8>>(6));
    let second = &rejected[1];
    assert_eq!((second.get::<_, String>(0), second.get::<_, String>(1)), (change_stream_key(0), unknown_id));
    assert!(second.get::<_, String>(5).contains("no `h` field"), "{}", second.get::<_, String>(5));

    assert!(mirror_row(&mut client, &bad_handle).is_none(), "a malformed entry made a row");
    eventually(MIRROR_DEADLINE, "nothing to be pending", || match pending_count(&mut con) {
        0 => Ok(()),
        pending => Err(format!("{pending} pending")),
    });
    set(&mut con, "good-4");
    eventually_row(&mut client, &handle_of("good-4"), "a change after the rejections", |_| Ok(()));
    daemon.assert_running();
}

/// README: "A change Postgres refuses for good goes to `qsess.rejected_changes` and the rest of its
/// batch is applied", and the table keeps "its stream id" and "the entry's field/value pairs, as
/// received" so that an operator can replay it.
#[test]
fn a_change_postgres_refuses_is_kept_with_its_entry_and_the_rest_is_mirrored() {
    let redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    let mut daemon = Daemon::start(redis.url(), db.url(), &[]);
    let mut con = redis.connection();
    let mut client = db.client();
    let _: i64 = redis::cmd("QSESS.SET").arg("before-constraint").arg("USER").arg("ok").query(&mut con).unwrap();
    eventually_row(&mut client, &handle_of("before-constraint"), "the schema to be in place", |_| Ok(()));
    // A rule of the DBA's that qsess knows nothing about.
    client
        .batch_execute(
            "alter table qsess.sessions add constraint no_mallory check (user_id is distinct from 'mallory')",
        )
        .unwrap();

    // The write and the read of its entry id in one transaction: the daemon deletes an entry once it
    // has handled it, which it can do between two separate commands.
    let (_version, refused_ids): (i64, Vec<FlatEntry>) = redis::pipe()
        .atomic()
        .cmd("QSESS.SET")
        .arg("refused")
        .arg("USER")
        .arg("mallory")
        .cmd("XREVRANGE")
        .arg(change_stream_key(0))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(&mut con)
        .unwrap();
    let refused_id = refused_ids[0].0.clone();
    for n in 0..3 {
        let _: i64 =
            redis::cmd("QSESS.SET").arg(format!("accepted-{n}")).arg("USER").arg("ok").query(&mut con).unwrap();
    }
    for n in 0..3 {
        eventually_row(&mut client, &handle_of(&format!("accepted-{n}")), "the changes around it", |_| Ok(()));
    }
    let rejected = eventually(MIRROR_DEADLINE, "the refused change to be recorded", || {
        let rows = client
            .query("select stream, entry_id, handle, op, version, error, fields from qsess.rejected_changes", &[])
            .unwrap();
        if rows.is_empty() {
            Err("no rejected change".to_owned())
        } else {
            Ok(rows)
        }
    });
    assert_eq!(rejected.len(), 1);
    let row = &rejected[0];
    assert_eq!(row.get::<_, Option<String>>(2), Some(handle_of("refused")));
    assert_eq!((row.get::<_, Option<String>>(3), row.get::<_, Option<i64>>(4)), (Some("set".to_owned()), Some(1)));
    assert!(row.get::<_, String>(5).contains("no_mallory"), "{}", row.get::<_, String>(5));
    assert!(mirror_row(&mut client, &handle_of("refused")).is_none());
    daemon.assert_running();
    let received = (row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, Vec<u8>>(6));
    assert_eq!(
        (received.0.as_str(), received.1.as_str(), received.2.starts_with(b"op=set\n")),
        (change_stream_key(0).as_str(), refused_id.as_str(), true),
        "the rejected change lost its stream, entry id or fields: {:?}",
        (&received.0, &received.1, String::from_utf8_lossy(&received.2))
    );
}

#[test]
fn a_batch_of_many_sessions_matches_verify() {
    let redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    let _daemon = Daemon::start(redis.url(), db.url(), &["--batch-size", "50"]);
    let mut con = redis.connection();
    let mut pipe = redis::pipe();
    for n in 0..600 {
        pipe.cmd("QSESS.SET").arg(format!("bulk-{n}")).arg("USER").arg(format!("u{}", n % 7)).ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    eventually_verify_matches(&redis.url(), &db.url(), CATCH_UP_DEADLINE);
}

/// With `qsess.buckets` 4 there are four change streams; every one is mirrored and acknowledged.
#[test]
fn every_bucket_stream_is_mirrored() {
    let redis = RedisServer::builder().module_arg("buckets", 4).start();
    let db = shared_cluster().fresh_database();
    let _daemon = Daemon::start(redis.url(), db.url(), &[]);
    let mut con = redis.connection();
    let mut sids = Vec::new();
    for n in 0..24 {
        let mut command = redis::cmd("QSESS.NEW");
        if n % 3 != 0 {
            command.arg("USER").arg(format!("bucketed-{n}"));
        }
        sids.push(command.query::<String>(&mut con).unwrap());
    }
    let buckets: std::collections::BTreeSet<&str> = sids.iter().filter_map(|sid| sid.split('.').next()).collect();
    assert!(buckets.len() >= 3, "the sessions landed in buckets {buckets:?} only");
    let mut client = db.client();
    for sid in &sids {
        eventually_row(&mut client, &handle_of(sid), "every bucket's sessions to be mirrored", |_| Ok(()));
    }
    eventually_verify_matches(&redis.url(), &db.url(), MIRROR_DEADLINE);
    for bucket in 0..4 {
        let stream = change_stream_key(bucket);
        eventually(MIRROR_DEADLINE, &format!("nothing pending on {stream}"), || {
            let summary: redis::Value =
                redis::cmd("XPENDING").arg(&stream).arg(GROUP).query(&mut con).map_err(|e| e.to_string())?;
            match summary {
                redis::Value::Array(items) if items.first() == Some(&redis::Value::Int(0)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }
}
