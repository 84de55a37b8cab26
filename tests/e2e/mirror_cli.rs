//! The operator's surface of the `qsess-syncd` binary: `migrate` is idempotent, `verify` exits 1 and
//! names each difference, `/metrics` and `/healthz` are served, bad flags are refused with what is
//! accepted, and the database password is never printed.

use std::time::Duration;

use qsess_tests::{
    eventually, free_port, run_syncd, run_syncd_with_env, shared_cluster, Daemon, RedisServer, SyncdOutput,
};

use crate::support::daemon_http::{http_get, metric_value};
use crate::support::mirror::{eventually_row, eventually_verify_matches, run_verify, MIRROR_DEADLINE};
use crate::support::session_keys::handle_of;

const PASSWORD: &str = "hunter2-s3cret-pw";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A URL tokio-postgres cannot parse (the port is not a number), holding [`PASSWORD`].
fn malformed_database_url() -> String {
    format!("postgres://qsess:{PASSWORD}@127.0.0.1:notaport/app")
}

fn assert_no_password(what: &str, output: &SyncdOutput) {
    assert!(!output.everything().contains(PASSWORD), "{what} printed the database password:\n{}", output.everything());
}

/// The `applied=<n>` count `migrate` logs.
fn applied_count(output: &SyncdOutput) -> i64 {
    let count = output.stderr.split("applied=").nth(1).and_then(|rest| rest.split_whitespace().next());
    count.and_then(|count| count.parse().ok()).unwrap_or_else(|| panic!("no applied=<n> in {output:?}"))
}

#[test]
fn migrate_applies_the_schema_once_and_then_nothing() {
    let db = shared_cluster().fresh_database();
    let first = run_syncd(&["migrate", "--database-url", &db.url()], COMMAND_TIMEOUT);
    assert!(first.status.success(), "{first:?}");
    let applied = applied_count(&first);
    assert!(applied >= 1, "{first:?}");
    let second = run_syncd(&["migrate", "--database-url", &db.url()], COMMAND_TIMEOUT);
    assert!(second.status.success(), "{second:?}");
    assert_eq!(applied_count(&second), 0, "{second:?}");
    let mut client = db.client();
    let history: i64 = client.query_one("select count(*) from qsess.schema_history", &[]).unwrap().get(0);
    assert_eq!(history, applied);
    let tables: i64 = client
        .query_one(
            "select count(*) from pg_tables where schemaname = 'qsess' and tablename in ('sessions', 'rejected_changes')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 2);
}

#[test]
fn verify_exits_1_and_names_every_difference() {
    let redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    let _daemon = Daemon::start(redis.url(), db.url(), &[]);
    let mut con = redis.connection();
    for sid in ["verify-1", "verify-2", "verify-3"] {
        let _: i64 = redis::cmd("QSESS.SET").arg(sid).arg("USER").arg("nia").query(&mut con).unwrap();
    }
    let matching = eventually_verify_matches(&redis.url(), &db.url(), MIRROR_DEADLINE);
    assert!(
        matching.stdout.contains("redis: 3 live sessions, postgres: 3 live sessions, 0 differences"),
        "{matching:?}"
    );

    let mut client = db.client();
    client.execute("delete from qsess.sessions where handle = $1", &[&handle_of("verify-1")]).unwrap();
    let missing = run_verify(&redis.url(), &db.url());
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    let line = format!("missing in postgres: {} (redis has version 1)", handle_of("verify-1"));
    assert!(missing.stdout.contains(&line), "{}", missing.stdout);

    client.execute("update qsess.sessions set version = 9 where handle = $1", &[&handle_of("verify-2")]).unwrap();
    let stranger = handle_of("only-in-postgres");
    client
        .execute(
            "insert into qsess.sessions (handle, data, created_at, updated_at, last_seen, expires_at, idle_timeout_ms, version)
             values ($1, '\\x', now(), now(), now(), now() + interval '1 hour', 0, 4)",
            &[&stranger],
        )
        .unwrap();
    let differing = run_verify(&redis.url(), &db.url());
    assert_eq!(differing.status.code(), Some(1), "{differing:?}");
    for line in [
        format!("missing in postgres: {} (redis has version 1)", handle_of("verify-1")),
        format!("version differs: {} (redis 1, postgres 9)", handle_of("verify-2")),
        format!("missing in redis: {stranger} (postgres has version 4)"),
        "redis: 3 live sessions, postgres: 3 live sessions, 3 differences".to_owned(),
    ] {
        assert!(differing.stdout.contains(&line), "no {line:?} in:\n{}", differing.stdout);
    }
}

#[test]
fn metrics_and_healthz_are_served_on_the_metrics_address() {
    let redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    let port = free_port();
    let _daemon = Daemon::start(redis.url(), db.url(), &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let (status, body) = eventually(MIRROR_DEADLINE, "/healthz to answer", || http_get(port, "/healthz"));
    assert_eq!((status, body.trim()), (200, "ok"));

    let mut con = redis.connection();
    for sid in ["metered-1", "metered-2"] {
        let _: i64 = redis::cmd("QSESS.SET").arg(sid).arg("USER").arg("oz").query(&mut con).unwrap();
    }
    eventually(MIRROR_DEADLINE, "/metrics to count the mirrored changes", || {
        let (status, body) = http_get(port, "/metrics")?;
        let mirrored = metric_value(&body, "qsess_syncd_changes_mirrored_total ");
        match (status, mirrored) {
            (200, Some(count)) if count >= 2.0 => Ok(()),
            _ => Err(format!("status {status}, qsess_syncd_changes_mirrored_total {mirrored:?}:\n{body}")),
        }
    });
}

#[test]
fn bad_run_flags_are_refused_with_what_is_accepted_and_no_password() {
    let good_url = format!("postgres://qsess:{PASSWORD}@127.0.0.1:5999/app");
    let malformed_url = malformed_database_url();
    let cases: [(&[&str], &str); 5] = [
        (&["run", "--database-url", &good_url, "--batch-wait", "soon"], "expected a duration such as 250ms"),
        (&["run", "--database-url", &good_url, "--purge-grace", "forever"], "expected a duration such as"),
        (&["run", "--database-url", &malformed_url], "expected postgres://user[:password]@host[:port]/database"),
        (&["run", "--database-url", &good_url, "--batch-size", "0"], "batch size must be from 1 to 100000"),
        (&["run", "--database-url", &good_url, "--redis-url", "http://nope"], "expected redis://"),
    ];
    for (args, expected) in cases {
        let output = run_syncd(args, COMMAND_TIMEOUT);
        assert!(!output.status.success(), "{args:?} succeeded: {output:?}");
        assert!(output.everything().contains(expected), "{args:?} does not say {expected:?}:\n{}", output.everything());
        assert_no_password(&format!("{args:?}"), &output);
    }
    let help = run_syncd_with_env(&["run", "--help"], &[("QSESS_DATABASE_URL", &good_url)], COMMAND_TIMEOUT);
    assert!(help.status.success() && help.stdout.contains("--database-url"), "{help:?}");
    assert_no_password("run --help", &help);
}

#[test]
fn migrate_and_verify_refuse_a_malformed_database_url_saying_what_is_accepted() {
    let redis = RedisServer::builder().start();
    let commands: [Vec<String>; 2] = [
        vec!["migrate".into(), "--database-url".into(), malformed_database_url()],
        vec!["verify".into(), "--redis-url".into(), redis.url(), "--database-url".into(), malformed_database_url()],
    ];
    let mut silent = Vec::new();
    for args in &commands {
        let output = run_syncd(args, COMMAND_TIMEOUT);
        assert!(!output.status.success(), "{args:?} succeeded: {output:?}");
        assert_no_password(&format!("{args:?}"), &output);
        if !output.everything().contains("expected postgres://") {
            silent.push(format!("{}: {}", args[0], output.stderr.trim()));
        }
    }
    assert!(silent.is_empty(), "these do not say what a database URL looks like:\n{}", silent.join("\n"));
}

#[test]
fn a_password_in_the_database_url_never_reaches_output_or_logs() {
    let redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    // The test clusters trust every local connection, so any password is accepted.
    let url = db.url().replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1);
    let migrated = run_syncd(&["migrate", "--database-url", &url], COMMAND_TIMEOUT);
    assert!(migrated.status.success(), "{migrated:?}");
    assert_no_password("migrate", &migrated);
    let mut daemon = Daemon::builder(redis.url(), url.clone()).env("QSESS_LOG", "debug").start();
    let mut con = redis.connection();
    let _: i64 = redis::cmd("QSESS.SET").arg("pw-session").arg("USER").arg("pat").query(&mut con).unwrap();
    eventually_row(&mut db.client(), &handle_of("pw-session"), "the session to be mirrored", |_| Ok(()));
    let verified = run_verify(&redis.url(), &url);
    assert!(verified.status.success(), "{verified:?}");
    assert_no_password("verify", &verified);
    daemon.terminate();
    assert!(daemon.wait_exit(Duration::from_secs(10)).success());
    assert!(!daemon.log().contains(PASSWORD), "the daemon logged the password:\n{}", daemon.log());
}

/// A retry warning that only says "postgres error" or "redis error" leaves the operator guessing
/// between a refused connection, a DNS failure, a full disk and a wrong password.
#[test]
fn retry_warnings_say_what_failed() {
    let redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    let closed_port = free_port();
    let unreachable_db = format!("postgres://postgres@127.0.0.1:{closed_port}/nowhere");
    let mut no_postgres = Daemon::start(redis.url(), unreachable_db, &[]);
    no_postgres.wait_for_log("postgres is not reachable yet", MIRROR_DEADLINE);
    let unreachable_redis = format!("redis://127.0.0.1:{}/", free_port());
    let mut no_redis = Daemon::start(unreachable_redis, db.url(), &[]);
    no_redis.wait_for_log("reading the change streams failed", MIRROR_DEADLINE);
    let silent: Vec<String> = [("postgres", no_postgres.log()), ("redis", no_redis.log())]
        .into_iter()
        .filter(|(_, log)| !log.to_lowercase().contains("refused"))
        .map(|(what, log)| format!("the {what} retry warnings do not say why:\n{log}"))
        .collect();
    assert!(silent.is_empty(), "{}", silent.join("\n"));
}

/// A migration aborted by a deadlock (V2 altering `qsess.sessions` while a DBA's query of
/// `qsess.live_sessions` holds the view and waits for the table, as CI once saw) is one rolled-back
/// transaction: `migrate` runs it again rather than leaving the daemon without a schema. The error is a
/// real deadlock between two Postgres sessions, wrapped the way refinery wraps a failed migration.
#[test]
fn a_migration_that_loses_a_deadlock_counts_as_one_that_may_pass_when_run_again() {
    use refinery::error::WrapMigrationError;
    let db = shared_cluster().fresh_database();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let lost = runtime.block_on(async {
        let connect = || async {
            let (client, connection) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client
        };
        let (mut first, mut second) = (connect().await, connect().await);
        first.batch_execute("create table left_side (x int); create table right_side (x int)").await.unwrap();
        let first = first.transaction().await.unwrap();
        let second = second.transaction().await.unwrap();
        first.batch_execute("lock table left_side").await.unwrap();
        second.batch_execute("lock table right_side").await.unwrap();
        let (one, other) =
            tokio::join!(first.batch_execute("lock table right_side"), second.batch_execute("lock table left_side"));
        let lost = [one, other].into_iter().find_map(Result::err).expect("postgres aborts one side of a deadlock");
        assert_eq!(lost.code(), Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED), "{lost}");
        lost
    });
    let failed = Err::<(), _>(lost).migration_err("error applying migration V2__session_device", None).unwrap_err();
    assert!(qsess_syncd::Error::Migration(failed).is_retryable());
    // A migration refinery refuses by itself is not a conflict and is not run again.
    let refused = Err::<(), _>(std::fmt::Error).migration_err("applied migration V1 differs", None).unwrap_err();
    assert!(!qsess_syncd::Error::Migration(refused).is_retryable());
}
