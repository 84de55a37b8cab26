//! qsess-syncd under hostile or careless input: a flood of malformed `reload-user` messages does not
//! stop the loader (sessions Redis lost still come back), the daemon works as a restricted ACL user
//! with exactly README's recipe, the Redis password never reaches `--help`, errors or logs, and refused
//! changes lose their payload and then their row on the purge timer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use qsess_tests::{eventually, free_port, run_syncd_with_env, shared_cluster, Daemon, RedisServer, SyncdOutput};
use redis::{Connection, Value};

use crate::support::acl_recipes::create_daemon_user;
use crate::support::daemon_http::{http_get, metric_value};
use crate::support::mirror::{eventually_row, MIRROR_DEADLINE};
use crate::support::read_through::{
    byuser, del_key, get, get_notouch, redis_with, set_session, sorted_handles, wait_mirrored, LEASE_LAPSE_DEADLINE,
};
use crate::support::session_keys::{change_stream_key, handle_of, session_key_of, user_index_key_of};

const PASSWORD: &str = "syncd-acl-pw-7d1e";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The channel `QSESS.BYUSER` asks the daemon on, with the default prefix.
const RELOAD_CHANNEL: &str = "qs:reload-user";

/// Malformed `reload-user` payloads: an empty uid (the finding's `"0 "`), no separator, no bucket, a
/// negative, signed or unknown bucket, a uid the module refuses (too long), and uids Postgres text
/// cannot hold (not UTF-8, NUL).
fn malformed_requests() -> Vec<Vec<u8>> {
    let mut requests: Vec<Vec<u8>> = [
        &b"0 "[..],
        b"0",
        b"",
        b"garbage",
        b" flood-user",
        b"-1 flood-user",
        b"+0 flood-user",
        b"1 flood-user",
        b"4294967296 flood-user",
        b"0 \xff\xfe",
        b"0 a\x00b",
    ]
    .iter()
    .map(|payload| payload.to_vec())
    .collect();
    let mut too_long = b"0 ".to_vec();
    too_long.extend(std::iter::repeat_n(b'u', 300));
    requests.push(too_long);
    requests
}

/// Publishes the malformed requests round-robin every few milliseconds until `stop`; counts them.
fn flood(redis: &RedisServer, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> thread::JoinHandle<()> {
    let client = redis.client();
    let requests = malformed_requests();
    thread::spawn(move || {
        let mut con: Option<Connection> = None;
        for request in requests.iter().cycle() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if con.is_none() {
                con = client.get_connection().ok();
            }
            if let Some(open) = con.as_mut() {
                let published: redis::RedisResult<i64> =
                    redis::cmd("PUBLISH").arg(RELOAD_CHANNEL).arg(request.as_slice()).query(open);
                match published {
                    Ok(_) => {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => con = None,
                }
            }
            thread::sleep(Duration::from_millis(5));
        }
    })
}

/// Finding 4: one bad message used to end the loader's user task, and with it the loader, whose
/// backoff then grew past the lease; under a flood most reads of sessions Redis had lost answered nil.
#[test]
fn a_flood_of_malformed_reload_requests_never_stops_the_loader() {
    let mut redis = redis_with(&[("qsess.miss-timeout-ms", "3000")]);
    let db = shared_cluster().fresh_database();
    let metrics_port = free_port();
    let mut daemon = Daemon::builder(redis.url(), db.url())
        .args(&["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .env("QSESS_LOG", "debug")
        .start();
    let mut pg = db.client();
    let mut con = redis.connection();
    let sids: Vec<String> = (0..24).map(|n| format!("flood-sid-{n:02}")).collect();
    // Anna owns the first eight sessions; everyone else one each.
    let owner = |n: usize| if n < 8 { "flood-anna".to_owned() } else { format!("flood-user-{n}") };
    let mut before = Vec::new();
    for (n, sid) in sids.iter().enumerate() {
        let version = set_session(&mut con, sid, &owner(n));
        wait_mirrored(&mut pg, sid, version);
        before.push(get_notouch(&mut con, sid));
    }
    drop(con);

    redis.restart_empty();
    let mut con = redis.connection();
    wait_attached(&mut con, &mut daemon);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = flood(&redis, stop.clone(), sent.clone());
    // Reads spread over several seconds of flood: longer than the lease, and than the old loader's
    // backoff after a few failures.
    let started = Instant::now();
    let mut lost = Vec::new();
    for (n, sid) in sids.iter().enumerate() {
        thread::sleep(Duration::from_millis(150));
        let reply = get(&mut con, sid);
        if reply != before[n] {
            lost.push(format!("{sid}: {reply:?}"));
        }
    }
    // A user's whole list comes back too, through the channel the flood uses.
    let anna: Vec<&str> = sids.iter().take(8).map(String::as_str).collect();
    del_key(&mut con, &user_index_key_of("flood-anna"));
    let listed = byuser(&mut con, "flood-anna");
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    let flood_seconds = started.elapsed().as_secs_f64();
    assert!(
        lost.is_empty(),
        "{} of {} sessions Redis lost did not come back during a flood of {} malformed messages over {flood_seconds:.1} s:\n{}\ndaemon log:\n{}",
        lost.len(),
        sids.len(),
        sent.load(Ordering::Relaxed),
        lost.join("\n"),
        daemon.log()
    );
    assert_eq!(listed, sorted_handles(&anna), "BYUSER during the flood");
    assert!(sent.load(Ordering::Relaxed) > 100, "the flood sent only {} messages", sent.load(Ordering::Relaxed));
    daemon.assert_running();

    eventually(MIRROR_DEADLINE, "the refusals to be counted", || {
        let (_, body) = http_get(metrics_port, "/metrics")?;
        match metric_value(&body, "qsess_syncd_reload_refused_total{reason=\"malformed_request\"} ") {
            Some(count) if count >= 100.0 => Ok(()),
            found => Err(format!("malformed_request refusals: {found:?}\n{body}")),
        }
    });
    let log = daemon.log();
    assert!(log.contains("malformed_request"), "the refusals were not logged:\n{log}");
    // Warnings are rate-limited: a flood of hundreds of messages is a handful of warning lines.
    let warnings = log.lines().filter(|line| line.contains("WARN") && line.contains("malformed_request")).count();
    assert!((1..=5).contains(&warnings), "{warnings} warning lines for the flood:\n{log}");
    for sid in &sids {
        assert!(!log.contains(sid.as_str()), "the daemon logged the raw session id {sid}");
    }
}

/// Waits until the module reports an attached loader, failing at once if the daemon exits.
fn wait_attached(con: &mut Connection, daemon: &mut Daemon) {
    eventually(LEASE_LAPSE_DEADLINE, "the loader to attach", || {
        daemon.assert_running();
        let info: String = redis::cmd("INFO").arg("qsess").query(con).map_err(|e| e.to_string())?;
        match info.contains("qsess_loader_attached:1") {
            true => Ok(()),
            false => Err(info),
        }
    });
}

fn acl_log(con: &mut Connection) -> Vec<Value> {
    redis::cmd("ACL").arg("LOG").query(con).unwrap()
}

fn assert_no_password(what: &str, text: &str) {
    assert!(!text.contains(PASSWORD), "{what} printed the Redis password:\n{text}");
}

/// README's daemon ACL recipe is enough for everything `qsess-syncd run` does, mirror and loader, and
/// the server's ACL log shows no command or key it was refused; the password stays out of the log.
#[test]
fn the_daemon_mirrors_and_reloads_as_a_restricted_acl_user() {
    let redis = redis_with(&[("qsess.miss-timeout-ms", "5000")]);
    let mut admin = redis.connection();
    create_daemon_user(&mut admin, PASSWORD, &[]);
    let _: () = redis::cmd("ACL").arg("LOG").arg("RESET").query(&mut admin).unwrap();
    let url = format!("redis://syncd:{PASSWORD}@127.0.0.1:{}/", redis.port());
    let db = shared_cluster().fresh_database();
    // A short purge interval, so the purge's connection is exercised too.
    let mut daemon =
        Daemon::builder(url, db.url()).args(&["--purge-interval", "200ms"]).env("QSESS_LOG", "debug").start();
    let mut pg = db.client();
    wait_attached(&mut admin, &mut daemon);

    // The mirror: new changes are read, committed, acknowledged and trimmed.
    let laptop = set_session(&mut admin, "acl-laptop", "acl-user");
    let phone = set_session(&mut admin, "acl-phone", "acl-user");
    wait_mirrored(&mut pg, "acl-laptop", laptop);
    wait_mirrored(&mut pg, "acl-phone", phone);
    eventually(MIRROR_DEADLINE, "the change stream to be trimmed", || {
        let length: i64 = redis::cmd("XLEN").arg(change_stream_key(0)).query(&mut admin).map_err(|e| e.to_string())?;
        match length {
            0 => Ok(()),
            length => Err(format!("{length} entries left")),
        }
    });

    // The loader: a lost session comes back on its next read, a lost index on the next BYUSER.
    let before = get_notouch(&mut admin, "acl-laptop");
    del_key(&mut admin, &session_key_of("acl-laptop"));
    assert_eq!(get(&mut admin, "acl-laptop"), before, "the lost session did not come back");
    del_key(&mut admin, &session_key_of("acl-phone"));
    del_key(&mut admin, &user_index_key_of("acl-user"));
    assert_eq!(byuser(&mut admin, "acl-user"), sorted_handles(&["acl-laptop", "acl-phone"]));

    let ended: i64 = redis::cmd("QSESS.DEL").arg("acl-laptop").query(&mut admin).unwrap();
    assert_eq!(ended, 1);
    eventually_row(&mut pg, &handle_of("acl-laptop"), "the logout to be mirrored", |row| match row.ended_ms {
        Some(_) => Ok(()),
        None => Err("not ended".to_owned()),
    });
    daemon.assert_running();
    let denied = acl_log(&mut admin);
    assert!(denied.is_empty(), "the recipe is missing something the daemon sent:\n{denied:?}\n{}", daemon.log());

    // A clean stop detaches the loader, which the recipe must allow too.
    daemon.terminate();
    assert!(daemon.wait_exit(Duration::from_secs(15)).success(), "{}", daemon.log());
    let denied = acl_log(&mut admin);
    assert!(denied.is_empty(), "the recipe is missing something the daemon sent on shutdown:\n{denied:?}");
    let log = daemon.log();
    assert_no_password("the daemon's log", &log);
    assert!(log.contains("syncd:***@127.0.0.1"), "the start line does not name the Redis it uses:\n{log}");

    // `verify` reads every session record as well: README's recipe adds SCAN and MGET for it.
    let _: () = redis::cmd("ACL").arg("SETUSER").arg("syncd").arg("+scan").arg("+mget").query(&mut admin).unwrap();
    let url = format!("redis://syncd:{PASSWORD}@127.0.0.1:{}/", redis.port());
    let verified =
        run_syncd_with_env(&["verify", "--redis-url", &url, "--database-url", &db.url()], &[], COMMAND_TIMEOUT);
    assert!(verified.status.success(), "{verified:?}");
    assert_no_password("verify", &verified.everything());
    let denied = acl_log(&mut admin);
    assert!(denied.is_empty(), "the recipe is missing something verify sent:\n{denied:?}");
}

/// Finding 9: `run --help` printed `QSESS_REDIS_URL`'s value, password included. Neither it nor any
/// error or log line about a Redis URL may show the password.
#[test]
fn the_redis_password_never_reaches_help_errors_or_logs() {
    let redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    let secret_url = format!("redis://syncd:{PASSWORD}@127.0.0.1:{}/", redis.port());
    let help = run_syncd_with_env(&["run", "--help"], &[("QSESS_REDIS_URL", &secret_url)], COMMAND_TIMEOUT);
    assert!(help.status.success() && help.stdout.contains("QSESS_REDIS_URL"), "{help:?}");
    assert_no_password("run --help", &help.everything());
    let verify_help = run_syncd_with_env(&["verify", "--help"], &[("QSESS_REDIS_URL", &secret_url)], COMMAND_TIMEOUT);
    assert_no_password("verify --help", &verify_help.everything());

    // The user does not exist: authentication fails, and says so without the password.
    let verify: SyncdOutput = run_syncd_with_env(
        &["verify", "--database-url", &db.url()],
        &[("QSESS_REDIS_URL", &secret_url)],
        COMMAND_TIMEOUT,
    );
    assert!(!verify.status.success(), "{verify:?}");
    assert_no_password("verify with a refused password", &verify.everything());
    let malformed = format!("redis://syncd:{PASSWORD}@127.0.0.1:notaport/");
    let refused =
        run_syncd_with_env(&["run", "--database-url", &db.url()], &[("QSESS_REDIS_URL", &malformed)], COMMAND_TIMEOUT);
    assert!(!refused.status.success() && refused.everything().contains("expected redis://"), "{refused:?}");
    assert_no_password("run with a malformed Redis URL", &refused.everything());

    // A refused password is not worth retrying: the daemon says so and exits.
    let mut daemon = Daemon::builder(secret_url, db.url()).env("QSESS_LOG", "debug").start();
    let status = daemon.wait_exit(MIRROR_DEADLINE);
    assert!(!status.success() && daemon.log().contains("authentication failed"), "{status}:\n{}", daemon.log());
    assert_no_password("a daemon whose password is refused", &daemon.log());
}

/// The contents of `qsess.rejected_changes`, by handle: whether `fields` still holds the payload.
fn rejected_payloads(pg: &mut postgres::Client) -> Vec<(Option<String>, bool)> {
    pg.query("select handle, octet_length(fields) > 0 from qsess.rejected_changes order by id", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// Finding 11: refused changes, session data included, were kept forever. Now the purge timer erases a
/// refused change's payload `--purge-grace` after its session would have expired (after the refusal
/// when the change says nothing), and deletes the change `--rejected-retention` after the refusal.
#[test]
fn refused_changes_lose_their_payload_and_then_their_row_on_the_purge_timer() {
    let redis = RedisServer::builder().start();
    let db = shared_cluster().fresh_database();
    let mut daemon = Daemon::start(
        redis.url(),
        db.url(),
        &["--purge-interval", "200ms", "--purge-grace", "1s", "--rejected-retention", "10s"],
    );
    let mut con = redis.connection();
    let mut pg = db.client();
    let _: i64 = redis::cmd("QSESS.SET").arg("rj-schema").arg("USER").arg("ok").query(&mut con).unwrap();
    eventually_row(&mut pg, &handle_of("rj-schema"), "the schema to be in place", |_| Ok(()));
    // A rule of the DBA's that qsess knows nothing about makes Postgres refuse these sessions for good.
    pg.batch_execute("alter table qsess.sessions add constraint no_mallory check (user_id is distinct from 'mallory')")
        .unwrap();
    let secret = "card=4111-1111-1111-1111";
    let short: i64 = redis::cmd("QSESS.SET")
        .arg("rj-short")
        .arg("USER")
        .arg("mallory")
        .arg("DATA")
        .arg(secret)
        .arg("IDLE")
        .arg(1000)
        .query(&mut con)
        .unwrap();
    let long: i64 = redis::cmd("QSESS.SET")
        .arg("rj-long")
        .arg("USER")
        .arg("mallory")
        .arg("DATA")
        .arg(secret)
        .arg("IDLE")
        .arg(3_600_000)
        .query(&mut con)
        .unwrap();
    assert_eq!((short, long), (1, 1));
    // An entry that says nothing of its session: its payload goes grace after the refusal.
    let _: String = redis::cmd("XADD")
        .arg(change_stream_key(0))
        .arg("*")
        .arg(&[("op", "set"), ("h", handle_of("rj-garbage").as_str()), ("v", "1"), ("r", "\x01garbage card=4111")])
        .query(&mut con)
        .unwrap();
    let refused_at = Instant::now();
    let short_handle = Some(handle_of("rj-short"));
    let long_handle = Some(handle_of("rj-long"));
    let garbage_handle = Some(handle_of("rj-garbage"));
    eventually(MIRROR_DEADLINE, "three refused changes, with their payloads", || match rejected_payloads(&mut pg) {
        rows if rows.len() == 3 => Ok(()),
        rows => Err(format!("{rows:?}")),
    });

    // The short session is over: its payload goes, the live one's stays.
    let rows = eventually(MIRROR_DEADLINE, "the payloads of the ended sessions to be erased", || {
        let rows = rejected_payloads(&mut pg);
        let erased = |handle: &Option<String>| rows.iter().any(|(held, kept)| held == handle && !kept);
        match erased(&short_handle) && erased(&garbage_handle) {
            true => Ok(rows),
            false => Err(format!("{rows:?}")),
        }
    });
    assert!(refused_at.elapsed() < Duration::from_secs(9), "the test machine is too slow to tell the steps apart");
    assert!(
        rows.contains(&(long_handle.clone(), true)),
        "the live session's refused change lost its payload: {rows:?}"
    );
    let erased_stamp: i64 = pg
        .query_one(
            "select count(*) from qsess.rejected_changes where payload_erased_at is not null and handle = any($1)",
            &[&vec![short_handle.clone().unwrap(), garbage_handle.clone().unwrap()]],
        )
        .unwrap()
        .get(0);
    assert_eq!(erased_stamp, 2, "erased payloads are not marked");
    let kept: Vec<u8> =
        pg.query_one("select fields from qsess.rejected_changes where handle = $1", &[&long_handle]).unwrap().get(0);
    assert!(kept.windows(secret.len()).any(|window| window == secret.as_bytes()), "the payload is not the entry's");

    // After the retention every refused change is gone, payload or not.
    eventually(Duration::from_secs(40), "the refused changes to be deleted after the retention", || {
        match rejected_payloads(&mut pg) {
            rows if rows.is_empty() => Ok(()),
            rows => Err(format!("{rows:?}")),
        }
    });
    assert!(refused_at.elapsed() >= Duration::from_secs(9), "refused changes were deleted before their retention");
    daemon.assert_running();
}
