//! A `qsess-syncd` killed with SIGKILL loses nothing: restarted under the same consumer name it
//! re-reads what it had read but not acknowledged, and the mirror ends up matching Redis exactly.

use qsess_tests::{eventually, shared_cluster, Daemon, RedisServer};

use crate::support::mirror::{
    eventually_row, eventually_verify_matches, mirror_matches_load, pending_count, try_row_count, Load,
    CATCH_UP_DEADLINE, GROUP,
};
use crate::support::session_keys::{change_stream_key, handle_of};

const CONSUMER: &str = "crash-test-consumer";

#[test]
fn a_daemon_killed_mid_load_resumes_and_the_mirror_matches_redis() {
    let redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    let mut con = redis.connection();
    let mut client = db.client();
    let mut daemon = Daemon::start(redis.url(), db.url(), &["--consumer", CONSUMER]);
    let load = Load::start(&redis.url(), "crash");

    let mut pending_at_kills = Vec::new();
    for round in 0..3 {
        // Let the daemon mirror part of the load, then kill it in the middle of it.
        load.wait_for_more_commands(800);
        let rows_before = try_row_count(&mut client).unwrap_or(0);
        eventually(CATCH_UP_DEADLINE, "the daemon to mirror something new", || {
            let rows = try_row_count(&mut client)?;
            if rows > rows_before {
                Ok(())
            } else {
                Err(format!("still {rows} rows"))
            }
        });
        load.wait_for_more_commands(300);
        daemon.kill_9();
        pending_at_kills.push(pending_count(&mut con));
        // Changes keep coming while no daemon runs.
        load.wait_for_more_commands(500);
        assert!(!daemon.log().contains("panicked"), "round {round}: {}", daemon.log());
        daemon = Daemon::start(redis.url(), db.url(), &["--consumer", CONSUMER]);
    }
    load.wait_for_more_commands(500);
    let report = load.stop();
    eprintln!("entries pending when the daemon was killed: {pending_at_kills:?}; {} commands", report.commands);

    eventually(CATCH_UP_DEADLINE, "the mirror to hold exactly what the load left in redis", || {
        mirror_matches_load(&mut client, &report)
    });
    let verified = eventually_verify_matches(&redis.url(), &db.url(), CATCH_UP_DEADLINE);
    assert!(verified.stdout.contains(", 0 differences"), "{}", verified.stdout);
    eventually(CATCH_UP_DEADLINE, "nothing to be pending in the group", || match pending_count(&mut con) {
        0 => Ok(()),
        pending => Err(format!("{pending} entries pending")),
    });
    daemon.assert_running();
}

/// Entries read by a consumer that died before committing them stay pending for that consumer; a
/// daemon started under its name mirrors and acknowledges them before anything else.
#[test]
fn entries_left_pending_by_a_dead_consumer_are_mirrored_by_its_successor() {
    let redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    let mut con = redis.connection();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(change_stream_key(0))
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut con)
        .unwrap();
    for n in 0..5 {
        let _: i64 =
            redis::cmd("QSESS.SET").arg(format!("orphan-{n}")).arg("USER").arg("ivan").query(&mut con).unwrap();
    }
    let _: i64 = redis::cmd("QSESS.DEL").arg("orphan-4").query(&mut con).unwrap();
    // What a daemon does before it dies: read, and never acknowledge.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(CONSUMER)
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg(change_stream_key(0))
        .arg(">")
        .query(&mut con)
        .unwrap();
    assert_eq!(pending_count(&mut con), 6);

    let _daemon = Daemon::start(redis.url(), db.url(), &["--consumer", CONSUMER]);
    let mut client = db.client();
    for n in 0..4 {
        eventually_row(&mut client, &handle_of(&format!("orphan-{n}")), "a pending set to be mirrored", |row| {
            if row.live {
                Ok(())
            } else {
                Err("not live".to_owned())
            }
        });
    }
    eventually_row(&mut client, &handle_of("orphan-4"), "a pending del to be mirrored", |row| {
        match row.end_reason.as_deref() {
            Some("logout") => Ok(()),
            other => Err(format!("end reason {other:?}")),
        }
    });
    eventually(CATCH_UP_DEADLINE, "the pending entries to be acknowledged", || match pending_count(&mut con) {
        0 => Ok(()),
        pending => Err(format!("{pending} entries pending")),
    });
    eventually_verify_matches(&redis.url(), &db.url(), CATCH_UP_DEADLINE);
}
