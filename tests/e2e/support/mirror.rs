//! Shared pieces of the qsess-syncd tests: a Redis, a database and the daemon between them
//! ([`Mirrored`]), reading mirror rows, the consumer group's state, `verify`, and a load generator that
//! remembers what the mirror must end up holding.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::support::session_keys::{change_stream_key, handle_of};
use qsess_syncd::RunConfig;
use qsess_tests::{eventually, run_syncd, shared_cluster, InProcessSyncd, PgDatabase, RedisServer, SyncdOutput};
use redis::{Connection, Value};

pub(crate) const GROUP: &str = "qsess-syncd";

/// A Redis with the module, a fresh database and the daemon (in-process) between them. Fields drop in
/// order: the daemon stops before the servers it talks to go away.
pub(crate) struct Mirrored {
    _daemon: InProcessSyncd,
    pub(crate) redis: RedisServer,
    pub(crate) db: PgDatabase,
}

/// Starts a [`Mirrored`] whose module gets `module_args` on top of the test defaults.
pub(crate) fn mirrored(module_args: &[(&str, &str)]) -> Mirrored {
    let mut builder = RedisServer::builder();
    for (name, value) in module_args {
        builder = builder.module_arg(name, value);
    }
    let redis = builder.start();
    let db = shared_cluster().fresh_database();
    let mut config = RunConfig::new(redis.url(), db.url());
    config.batch.max_wait = Duration::from_millis(5);
    let daemon = InProcessSyncd::start(config);
    Mirrored { _daemon: daemon, redis, db }
}

/// Generous deadlines: a debug build of the daemon on a busy two-core machine.
pub(crate) const MIRROR_DEADLINE: Duration = Duration::from_secs(30);
pub(crate) const CATCH_UP_DEADLINE: Duration = Duration::from_secs(90);

/// One row of `qsess.sessions`, times as ms since the epoch and the ip as `host()` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MirrorRow {
    pub(crate) handle: String,
    pub(crate) user_id: Option<String>,
    pub(crate) data: Vec<u8>,
    pub(crate) ip: Option<String>,
    pub(crate) ip_family: Option<i32>,
    pub(crate) user_agent: Option<String>,
    pub(crate) created_ms: i64,
    pub(crate) updated_ms: i64,
    pub(crate) seen_ms: i64,
    pub(crate) expires_ms: i64,
    pub(crate) absolute_ms: Option<i64>,
    pub(crate) idle_timeout_ms: i64,
    pub(crate) version: i64,
    pub(crate) ended_ms: Option<i64>,
    pub(crate) end_reason: Option<String>,
    /// Whether `qsess.live_sessions` lists it.
    pub(crate) live: bool,
}

/// Selects [`MirrorRow`]s; append a `where` clause.
pub(crate) const MIRROR_ROW_SELECT: &str = "
select s.handle, s.user_id, s.data, host(s.ip), family(s.ip), s.user_agent,
       (extract(epoch from s.created_at) * 1000)::int8, (extract(epoch from s.updated_at) * 1000)::int8,
       (extract(epoch from s.last_seen) * 1000)::int8, (extract(epoch from s.expires_at) * 1000)::int8,
       (extract(epoch from s.absolute_expires_at) * 1000)::int8, s.idle_timeout_ms, s.version,
       (extract(epoch from s.ended_at) * 1000)::int8, s.end_reason,
       exists (select 1 from qsess.live_sessions l where l.handle = s.handle)
from qsess.sessions s";

impl MirrorRow {
    /// From a row of [`MIRROR_ROW_SELECT`] (`postgres::Row` is `tokio_postgres::Row`).
    pub(crate) fn from_row(row: &tokio_postgres::Row) -> MirrorRow {
        MirrorRow {
            handle: row.get(0),
            user_id: row.get(1),
            data: row.get(2),
            ip: row.get(3),
            ip_family: row.get(4),
            user_agent: row.get(5),
            created_ms: row.get(6),
            updated_ms: row.get(7),
            seen_ms: row.get(8),
            expires_ms: row.get(9),
            absolute_ms: row.get(10),
            idle_timeout_ms: row.get(11),
            version: row.get(12),
            ended_ms: row.get(13),
            end_reason: row.get(14),
            live: row.get(15),
        }
    }
}

pub(crate) fn mirror_row(client: &mut postgres::Client, handle: &str) -> Option<MirrorRow> {
    try_mirror_row(client, handle).unwrap_or_else(|error| panic!("{error}"))
}

/// `Err` until the daemon has created `qsess.sessions`: polls ask this first, so that they do not
/// fill the server log with errors about a missing table.
fn schema_ready(client: &mut postgres::Client) -> Result<(), String> {
    let row = client.query_one("select to_regclass('qsess.live_sessions') is not null", &[]);
    match row.map_err(|error| error.to_string())?.get(0) {
        true => Ok(()),
        false => Err("the daemon has not created the qsess schema yet".to_owned()),
    }
}

/// The row of `handle`; an error (such as the table not being there before the daemon migrated) as text.
pub(crate) fn try_mirror_row(client: &mut postgres::Client, handle: &str) -> Result<Option<MirrorRow>, String> {
    schema_ready(client)?;
    let sql = format!("{MIRROR_ROW_SELECT} where s.handle = $1");
    let row = client.query_opt(&sql, &[&handle]).map_err(|error| format!("reading the row of {handle}: {error}"))?;
    Ok(row.as_ref().map(MirrorRow::from_row))
}

/// Every row, by handle.
pub(crate) fn all_mirror_rows(client: &mut postgres::Client) -> BTreeMap<String, MirrorRow> {
    try_all_mirror_rows(client).unwrap_or_else(|error| panic!("{error}"))
}

pub(crate) fn try_all_mirror_rows(client: &mut postgres::Client) -> Result<BTreeMap<String, MirrorRow>, String> {
    schema_ready(client)?;
    let rows = client.query(MIRROR_ROW_SELECT, &[]).map_err(|error| format!("reading the mirror: {error}"))?;
    Ok(rows.iter().map(MirrorRow::from_row).map(|row| (row.handle.clone(), row)).collect())
}

/// `select count(*) from qsess.sessions`, or the error as text (before the daemon migrated).
pub(crate) fn try_row_count(client: &mut postgres::Client) -> Result<i64, String> {
    schema_ready(client)?;
    let row = client.query_one("select count(*) from qsess.sessions", &[]).map_err(|error| error.to_string())?;
    Ok(row.get(0))
}

/// Waits until the row of `handle` satisfies `check` (which says what is wrong otherwise).
pub(crate) fn eventually_row(
    client: &mut postgres::Client,
    handle: &str,
    what: &str,
    mut check: impl FnMut(&MirrorRow) -> Result<(), String>,
) -> MirrorRow {
    eventually(MIRROR_DEADLINE, what, || match try_mirror_row(client, handle)? {
        None => Err(format!("no row for {handle}")),
        Some(row) => check(&row).map(|()| row.clone()).map_err(|problem| format!("{problem}: {row:?}")),
    })
}

/// `QSESS.PEEK sid` as field -> value (integers as i64, strings as text), or `None` when not live.
pub(crate) fn peek(con: &mut Connection, sid: &str) -> Option<BTreeMap<String, Value>> {
    let flat: Vec<Value> = redis::cmd("QSESS.PEEK").arg(sid).query(con).unwrap();
    if flat.is_empty() {
        return None;
    }
    Some(
        flat.chunks_exact(2)
            .map(|pair| (redis::from_redis_value_ref::<String>(&pair[0]).unwrap(), pair[1].clone()))
            .collect(),
    )
}

pub(crate) fn peek_number(fields: &BTreeMap<String, Value>, name: &str) -> i64 {
    match fields.get(name) {
        Some(Value::Int(number)) => *number,
        other => panic!("PEEK field {name} is {other:?} in {fields:?}"),
    }
}

pub(crate) fn peek_text(fields: &BTreeMap<String, Value>, name: &str) -> Option<String> {
    fields.get(name).map(|value| redis::from_redis_value_ref::<String>(value).unwrap())
}

/// The number of entries delivered to the group and not acknowledged (0 if the group is missing).
pub(crate) fn pending_count(con: &mut Connection) -> i64 {
    match redis::cmd("XPENDING").arg(change_stream_key(0)).arg(GROUP).query::<Value>(con) {
        Ok(Value::Array(items)) => match items.first() {
            Some(Value::Int(count)) => *count,
            other => panic!("XPENDING summary starts with {other:?}"),
        },
        Ok(other) => panic!("XPENDING replied {other:?}"),
        Err(error) if error.code() == Some("NOGROUP") => 0,
        Err(error) => panic!("XPENDING failed: {error}"),
    }
}

/// The group's `last-delivered-id`, from `XINFO GROUPS`.
pub(crate) fn last_delivered_id(con: &mut Connection) -> String {
    let groups: Vec<BTreeMap<String, Value>> =
        redis::cmd("XINFO").arg("GROUPS").arg(change_stream_key(0)).query(con).unwrap();
    let group = groups
        .iter()
        .find(|group| {
            group.get("name").is_some_and(|name| redis::from_redis_value_ref::<String>(name).unwrap() == GROUP)
        })
        .unwrap_or_else(|| panic!("no group {GROUP} on {}: {groups:?}", change_stream_key(0)));
    redis::from_redis_value_ref(&group["last-delivered-id"]).unwrap()
}

/// `qsess-syncd verify` (the binary).
pub(crate) fn run_verify(redis_url: &str, database_url: &str) -> SyncdOutput {
    run_syncd(&["verify", "--redis-url", redis_url, "--database-url", database_url], Duration::from_secs(60))
}

/// Waits until `qsess-syncd verify` exits 0, and returns its output.
pub(crate) fn eventually_verify_matches(redis_url: &str, database_url: &str, timeout: Duration) -> SyncdOutput {
    eventually(timeout, "qsess-syncd verify to find no difference", || {
        let output = run_verify(redis_url, database_url);
        if output.status.success() {
            Ok(output)
        } else {
            let mut text = output.everything();
            text.truncate(4000);
            Err(format!("verify exited with {}: {text}", output.status))
        }
    })
}

/// Where a session ended up, as the load generator saw Redis reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Live, at this version.
    Live(i64),
    /// Ended, for this reason.
    Ended(&'static str),
}

/// What a [`Load`] did: every session id it set and its fate.
#[derive(Debug, Default)]
pub(crate) struct LoadReport {
    pub(crate) sessions: BTreeMap<String, Fate>,
    pub(crate) commands: usize,
}

/// A thread issuing QSESS.SET (creations and updates), QSESS.DEL and QSESS.REVOKEUSER as fast as a
/// gentle pace allows, until stopped.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    commands: Arc<AtomicUsize>,
    thread: JoinHandle<LoadReport>,
}

const LOAD_USERS: usize = 16;

impl Load {
    /// Starts the load against `redis_url`; session ids are `<label>-<n>`.
    pub(crate) fn start(redis_url: &str, label: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let commands = Arc::new(AtomicUsize::new(0));
        let client = redis::Client::open(redis_url).unwrap();
        let label = label.to_owned();
        let thread = thread::spawn({
            let (stop, commands) = (stop.clone(), commands.clone());
            move || run_load(&client, &label, &stop, &commands)
        });
        Load { stop, commands, thread }
    }

    /// Commands issued so far.
    pub(crate) fn commands(&self) -> usize {
        self.commands.load(Ordering::Relaxed)
    }

    /// Waits until at least `count` more commands than now have been issued.
    pub(crate) fn wait_for_more_commands(&self, count: usize) {
        let target = self.commands() + count;
        eventually(Duration::from_secs(60), "the load to issue more commands", || {
            if self.thread.is_finished() {
                panic!("the load thread ended early");
            }
            let done = self.commands();
            if done >= target {
                Ok(())
            } else {
                Err(format!("{done} of {target} commands"))
            }
        });
    }

    /// Stops the load and returns what it did (re-raising its panic, if any).
    pub(crate) fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    }
}

fn run_load(client: &redis::Client, label: &str, stop: &AtomicBool, commands: &AtomicUsize) -> LoadReport {
    let mut con = client.get_connection().unwrap();
    let mut report = LoadReport::default();
    let mut live_by_user: Vec<Vec<String>> = vec![Vec::new(); LOAD_USERS];
    let mut issue = |report: &mut LoadReport, command: &mut redis::Cmd| -> Value {
        report.commands += 1;
        commands.fetch_add(1, Ordering::Relaxed);
        command.query(&mut con).unwrap_or_else(|e| panic!("load command {command:?} failed: {e}"))
    };
    let mut n: usize = 0;
    while !stop.load(Ordering::Relaxed) {
        let user = n % LOAD_USERS;
        let sid = format!("{label}-{n:07}");
        let set = issue(
            &mut report,
            redis::cmd("QSESS.SET").arg(&sid).arg("DATA").arg(format!("data-{n}")).arg("USER").arg(format!("u{user}")),
        );
        let Value::Int(version) = set else { panic!("QSESS.SET {sid} replied {set:?}") };
        report.sessions.insert(sid.clone(), Fate::Live(version));
        live_by_user[user].push(sid);
        if n % 3 == 2 {
            // Update the user's oldest live session.
            if let Some(oldest) = live_by_user[user].first().cloned() {
                let set = issue(&mut report, redis::cmd("QSESS.SET").arg(&oldest).arg("XX").arg("DATA").arg("updated"));
                let Value::Int(version) = set else { panic!("QSESS.SET {oldest} XX replied {set:?}") };
                report.sessions.insert(oldest, Fate::Live(version));
            }
        }
        if n % 4 == 3 {
            // Log out the user's newest live session.
            if let Some(newest) = live_by_user[user].pop() {
                let deleted = issue(&mut report, redis::cmd("QSESS.DEL").arg(&newest));
                assert_eq!(deleted, Value::Int(1), "QSESS.DEL {newest}");
                report.sessions.insert(newest, Fate::Ended("logout"));
            }
        }
        if n % 50 == 49 {
            let victim = (n / 50) % LOAD_USERS;
            let revoked = issue(&mut report, redis::cmd("QSESS.REVOKEUSER").arg(format!("u{victim}")));
            assert_eq!(revoked, Value::Int(live_by_user[victim].len() as i64), "QSESS.REVOKEUSER u{victim}");
            for sid in live_by_user[victim].drain(..) {
                report.sessions.insert(sid, Fate::Ended("revoke"));
            }
        }
        n += 1;
        if n.is_multiple_of(4) {
            // A gentle pace: other work shares this machine.
            thread::sleep(Duration::from_millis(1));
        }
    }
    report
}

/// Checks that the mirror holds exactly the sessions of `report`: one row per session id, live ones
/// not ended and at the version Redis replied, ended ones ended for the right reason.
pub(crate) fn mirror_matches_load(client: &mut postgres::Client, report: &LoadReport) -> Result<(), String> {
    let rows = try_all_mirror_rows(client)?;
    if rows.len() != report.sessions.len() {
        return Err(format!("{} rows for {} sessions set", rows.len(), report.sessions.len()));
    }
    for (sid, fate) in &report.sessions {
        let handle = handle_of(sid);
        let Some(row) = rows.get(&handle) else { return Err(format!("no row for session {sid} ({handle})")) };
        let matches = match fate {
            Fate::Live(version) => row.ended_ms.is_none() && row.version == *version,
            Fate::Ended(reason) => row.ended_ms.is_some() && row.end_reason.as_deref() == Some(*reason),
        };
        if !matches {
            return Err(format!("session {sid} should be {fate:?}, its row is {row:?}"));
        }
    }
    Ok(())
}
