//! The daemon rides out its servers going away: a PostgreSQL outage under load loses nothing, and a
//! Redis that comes back empty (restarted, or flushed) gets its consumer group back and new sessions
//! keep reaching the mirror, without anyone touching the daemon.

use std::thread;
use std::time::Duration;

use qsess_tests::{eventually, shared_cluster, Daemon, PgCluster, RedisServer};
use redis::{Connection, Value};

use crate::support::mirror::{
    eventually_row, eventually_verify_matches, mirror_matches_load, mirror_row, pending_count, try_mirror_row,
    try_row_count, Load, CATCH_UP_DEADLINE, MIRROR_DEADLINE,
};
use crate::support::session_keys::handle_of;

/// How long an outage is held open.
const OUTAGE: Duration = Duration::from_secs(3);

#[test]
fn a_postgres_outage_under_load_loses_nothing() {
    let cluster = PgCluster::start();
    let db = cluster.fresh_database();
    let redis = RedisServer::builder().start();
    let mut daemon = Daemon::start(redis.url(), db.url(), &[]);
    let load = Load::start(&redis.url(), "pg-outage");
    load.wait_for_more_commands(500);
    let mut client = db.client();
    eventually(MIRROR_DEADLINE, "the mirror to fill", || {
        let rows = try_row_count(&mut client)?;
        if rows > 0 {
            Ok(())
        } else {
            Err("no rows yet".to_owned())
        }
    });
    drop(client);

    cluster.stop();
    let during_outage = load.commands();
    thread::sleep(OUTAGE);
    assert!(load.commands() > during_outage + 100, "the load stalled during the outage");
    daemon.assert_running();
    cluster.restart();
    load.wait_for_more_commands(500);
    let report = load.stop();

    let mut client = db.client();
    eventually(CATCH_UP_DEADLINE, "every session set to be mirrored after the outage", || {
        mirror_matches_load(&mut client, &report)
    });
    eventually_verify_matches(&redis.url(), &db.url(), CATCH_UP_DEADLINE);
    let mut con = redis.connection();
    eventually(CATCH_UP_DEADLINE, "nothing to be pending", || match pending_count(&mut con) {
        0 => Ok(()),
        pending => Err(format!("{pending} pending")),
    });
    daemon.assert_running();
    assert!(daemon.log().contains("writing to postgres failed; retrying"), "{}", daemon.log());
}

fn set_session(con: &mut Connection, sid: &str, user: &str) {
    let _: i64 = redis::cmd("QSESS.SET")
        .arg(sid)
        .arg("DATA")
        .arg(format!("data of {sid}"))
        .arg("USER")
        .arg(user)
        .query(con)
        .unwrap_or_else(|e| panic!("QSESS.SET {sid}: {e}"));
}

fn wait_live_row(client: &mut postgres::Client, sid: &str) {
    eventually_row(client, &handle_of(sid), &format!("{sid} to be mirrored"), |row| {
        if row.live && row.version == 1 {
            Ok(())
        } else {
            Err("not live at version 1".to_owned())
        }
    });
}

/// [`wait_live_row`], failing at once (with the log) if the daemon exits meanwhile.
fn wait_live_row_while_running(client: &mut postgres::Client, daemon: &mut Daemon, sid: &str) {
    eventually(MIRROR_DEADLINE, &format!("{sid} to be mirrored"), || {
        if let Some(status) = daemon.try_exit_status() {
            panic!("qsess-syncd exited with {status} while {sid} waited to be mirrored; log:\n{}", daemon.log());
        }
        match try_mirror_row(client, &handle_of(sid))? {
            Some(row) if row.live && row.version == 1 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn a_redis_restarted_empty_on_its_port_is_mirrored_again() {
    let mut redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    let mut daemon = Daemon::start(redis.url(), db.url(), &[]);
    let mut client = db.client();
    {
        let mut con = redis.connection();
        for n in 0..3 {
            set_session(&mut con, &format!("before-restart-{n}"), "jane");
        }
    }
    for n in 0..3 {
        wait_live_row(&mut client, &format!("before-restart-{n}"));
    }
    assert_eq!(daemon.log().matches("created consumer group").count(), 1, "{}", daemon.log());

    let port = redis.port();
    redis.restart_empty();
    assert_eq!(redis.port(), port);
    let mut con = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert!(keys.iter().all(|key| key.ends_with(":chg")), "the restarted server is not empty: {keys:?}");
    for n in 0..3 {
        set_session(&mut con, &format!("after-restart-{n}"), "jane");
    }
    for n in 0..3 {
        wait_live_row_while_running(&mut client, &mut daemon, &format!("after-restart-{n}"));
    }
    // The daemon found its group gone and made it again, by itself.
    eventually(MIRROR_DEADLINE, "the log to say the group was created again", || {
        let log = daemon.log();
        if log.matches("created consumer group").count() >= 2 {
            Ok(())
        } else {
            Err(log)
        }
    });
    // The mirror still remembers the sessions Redis lost.
    let lost = mirror_row(&mut client, &handle_of("before-restart-0")).unwrap();
    assert!(lost.ended_ms.is_none(), "{lost:?}");
    eventually(MIRROR_DEADLINE, "nothing to be pending", || match pending_count(&mut con) {
        0 => Ok(()),
        pending => Err(format!("{pending} pending")),
    });
    daemon.assert_running();
}

#[test]
fn a_flushall_that_deletes_the_group_is_survived() {
    let redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    let mut daemon = Daemon::start(redis.url(), db.url(), &[]);
    let mut con = redis.connection();
    let mut client = db.client();
    set_session(&mut con, "before-flush", "kim");
    wait_live_row(&mut client, "before-flush");

    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    for n in 0..3 {
        set_session(&mut con, &format!("after-flush-{n}"), "kim");
    }
    for n in 0..3 {
        wait_live_row_while_running(&mut client, &mut daemon, &format!("after-flush-{n}"));
    }
    // Once more after the group is back, to be sure the daemon is not stuck after one read.
    set_session(&mut con, "after-flush-late", "kim");
    wait_live_row_while_running(&mut client, &mut daemon, "after-flush-late");
    let log = daemon.log();
    assert!(
        log.contains("consumer group is missing") || log.matches("created consumer group").count() >= 2,
        "the log does not say the group was recreated:\n{log}"
    );
    // FLUSHALL took "before-flush" out of Redis while the mirror keeps it; reading it brings it back
    // through the daemon's loader, after which both sides agree again.
    eventually(MIRROR_DEADLINE, "the flushed session to be restored by read-through", || {
        match redis::cmd("QSESS.GET").arg("before-flush").query::<Option<Vec<Value>>>(&mut con) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("QSESS.GET answered nil".to_owned()),
            Err(error) => Err(error.to_string()),
        }
    });
    eventually_verify_matches(&redis.url(), &db.url(), MIRROR_DEADLINE);
    daemon.assert_running();
}
