//! Shared pieces of the read-through tests: a Redis with the module, a fresh mirror database and the
//! real `qsess-syncd`; `INFO qsess` counters; GETs that are timed or run on threads;
//! and pausing the daemon (SIGSTOP) so that a miss is still waiting when the test acts.

use std::collections::HashMap;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use qsess_tests::{eventually, shared_cluster, Daemon, PgDatabase, RedisServer};
use redis::{Connection, Value};

use crate::support::mirror::{eventually_row, MirrorRow};
use crate::support::session_keys::{handle_of, session_key_of};

/// Reads never write activity in these tests: the effective granularity is then half the idle
/// timeout (15 minutes), far longer than any test.
pub(crate) const NO_TOUCH_GRANULARITY_MS: &str = "3600000";
/// How long the loader lease may take to lapse after the daemon died (3 s), with room for a busy machine.
pub(crate) const LEASE_LAPSE_DEADLINE: Duration = Duration::from_secs(15);

/// Redis with the module (`module_args` on top of the test defaults), a fresh database on the shared
/// cluster, and the real daemon between them.
pub(crate) struct Stack {
    pub(crate) redis: RedisServer,
    pub(crate) db: PgDatabase,
    pub(crate) daemon: Daemon,
    pub(crate) pg: postgres::Client,
}

impl Stack {
    /// Starts everything and waits until the daemon holds the loader lease.
    pub(crate) fn start(module_args: &[(&str, &str)]) -> Stack {
        let redis = redis_with(module_args);
        let db = shared_cluster().fresh_database();
        let daemon = Daemon::start(redis.url(), db.url(), &[]);
        let pg = db.client();
        let mut stack = Stack { redis, db, daemon, pg };
        stack.wait_loader(true);
        stack
    }

    pub(crate) fn con(&self) -> Connection {
        self.redis.connection()
    }

    /// Waits until `INFO qsess` says a loader is (or is not) attached, failing at once if the daemon
    /// exits while one is expected.
    pub(crate) fn wait_loader(&mut self, attached: bool) {
        let mut con = self.con();
        let daemon = &mut self.daemon;
        eventually(LEASE_LAPSE_DEADLINE, &format!("qsess_loader_attached to be {}", u8::from(attached)), || {
            if attached {
                if let Some(status) = daemon.try_exit_status() {
                    panic!("qsess-syncd exited with {status}; log:\n{}", daemon.log());
                }
            }
            match loader_attached(&mut con) == attached {
                true => Ok(()),
                false => Err(format!("INFO qsess: {:?}", info_qsess(&mut con))),
            }
        });
    }

    /// Waits until the mirror holds `sid` live at `version`.
    pub(crate) fn wait_mirrored(&mut self, sid: &str, version: i64) -> MirrorRow {
        wait_mirrored(&mut self.pg, sid, version)
    }

    /// Waits until the mirror shows `sid` ended for `reason`.
    pub(crate) fn wait_ended(&mut self, sid: &str, reason: &str) -> MirrorRow {
        wait_ended(&mut self.pg, sid, reason)
    }
}

/// A Redis with the module, reads that never touch, and `module_args` (which may override that).
pub(crate) fn redis_with(module_args: &[(&str, &str)]) -> RedisServer {
    let mut builder = RedisServer::builder().module_arg("qsess.touch-granularity-ms", NO_TOUCH_GRANULARITY_MS);
    for (name, value) in module_args {
        builder = builder.module_arg(name, value);
    }
    builder.start()
}

pub(crate) fn wait_mirrored(pg: &mut postgres::Client, sid: &str, version: i64) -> MirrorRow {
    eventually_row(pg, &handle_of(sid), &format!("{sid} to be mirrored live at version {version}"), |row| {
        match row.live && row.ended_ms.is_none() && row.version == version {
            true => Ok(()),
            false => Err(format!("not live at version {version}")),
        }
    })
}

pub(crate) fn wait_ended(pg: &mut postgres::Client, sid: &str, reason: &str) -> MirrorRow {
    eventually_row(pg, &handle_of(sid), &format!("{sid} to be ended ({reason}) in the mirror"), |row| {
        match row.ended_ms.is_some() && row.end_reason.as_deref() == Some(reason) && !row.live {
            true => Ok(()),
            false => Err(format!("not ended for {reason}")),
        }
    })
}

/// `QSESS.SET sid DATA <data> USER <user> IP <ip> UA <ua>`; returns the version.
pub(crate) fn set_session(con: &mut Connection, sid: &str, user: &str) -> i64 {
    redis::cmd("QSESS.SET")
        .arg(sid)
        .arg("DATA")
        .arg(format!("data of {sid}"))
        .arg("USER")
        .arg(user)
        .arg("IP")
        .arg("203.0.113.7")
        .arg("UA")
        .arg("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0")
        .query(con)
        .unwrap_or_else(|e| panic!("QSESS.SET {sid}: {e}"))
}

/// `QSESS.GET sid` as the raw reply (RESP2: a flat field/value array, or nil).
pub(crate) fn get(con: &mut Connection, sid: &str) -> Value {
    redis::cmd("QSESS.GET").arg(sid).query(con).unwrap_or_else(|e| panic!("QSESS.GET {sid}: {e}"))
}

pub(crate) fn get_notouch(con: &mut Connection, sid: &str) -> Value {
    redis::cmd("QSESS.GET").arg(sid).arg("NOTOUCH").query(con).unwrap_or_else(|e| panic!("QSESS.GET {sid}: {e}"))
}

/// `QSESS.GET sid` and how long the reply took.
pub(crate) fn timed_get(con: &mut Connection, sid: &str) -> (Value, Duration) {
    let started = Instant::now();
    let reply = get(con, sid);
    (reply, started.elapsed())
}

/// `QSESS.GET sid` on a thread with its own connection (opened before the thread starts).
pub(crate) fn spawn_get(redis: &RedisServer, sid: &str) -> JoinHandle<(Value, Duration)> {
    let mut con = redis.connection();
    let sid = sid.to_owned();
    thread::spawn(move || timed_get(&mut con, &sid))
}

/// The stored record bytes of `sid`, read with a plain `GET` of its key.
pub(crate) fn raw_record(con: &mut Connection, sid: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(session_key_of(sid)).query(con).unwrap()
}

pub(crate) fn exists(con: &mut Connection, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query::<i64>(con).unwrap() == 1
}

pub(crate) fn del_key(con: &mut Connection, key: &str) {
    let deleted: i64 = redis::cmd("DEL").arg(key).query(con).unwrap();
    assert_eq!(deleted, 1, "DEL {key}: the key was not there");
}

/// `QSESS.RESTORE 0 <handle> <payload>`: the status word, or the error text.
pub(crate) fn restore(con: &mut Connection, handle: &str, payload: &[u8]) -> Result<String, String> {
    redis::cmd("QSESS.RESTORE").arg(0).arg(handle).arg(payload).query(con).map_err(|e| e.to_string())
}

/// `QSESS.BYUSER user`: the handles.
pub(crate) fn byuser(con: &mut Connection, user: &str) -> Vec<String> {
    let mut handles: Vec<String> = redis::cmd("QSESS.BYUSER").arg(user).query(con).unwrap();
    handles.sort();
    handles
}

pub(crate) fn sorted_handles(sids: &[&str]) -> Vec<String> {
    let mut handles: Vec<String> = sids.iter().map(|sid| handle_of(sid)).collect();
    handles.sort();
    handles
}

pub(crate) fn info_qsess(con: &mut Connection) -> HashMap<String, String> {
    let info: String = redis::cmd("INFO").arg("qsess").query(con).unwrap();
    info.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// An `INFO qsess` field, named with its `qsess_` prefix.
pub(crate) fn counter(con: &mut Connection, name: &str) -> u64 {
    let fields = info_qsess(con);
    fields.get(name).unwrap_or_else(|| panic!("INFO qsess has no {name}: {fields:?}")).parse().unwrap()
}

pub(crate) fn loader_attached(con: &mut Connection) -> bool {
    counter(con, "qsess_loader_attached") == 1
}

/// Waits until `qsess_miss_waits` reaches `count`: that many GETs are waiting (or were).
pub(crate) fn wait_miss_waits(con: &mut Connection, count: u64) {
    eventually(Duration::from_secs(10), &format!("qsess_miss_waits to reach {count}"), || {
        match counter(con, "qsess_miss_waits") {
            waits if waits >= count => Ok(()),
            waits => Err(format!("{waits} waits")),
        }
    });
}

pub(crate) fn stream_length(con: &mut Connection, key: &str) -> u64 {
    redis::cmd("XLEN").arg(key).query(con).unwrap()
}

/// Stops the daemon where it stands (SIGSTOP), so misses wait; see [`resume`]. A test that fails while
/// it is paused leaves it to `Daemon`'s drop, whose SIGKILL ends a stopped process too.
pub(crate) fn pause(daemon: &mut Daemon) {
    daemon.assert_running();
    signal(daemon, libc::SIGSTOP);
}

pub(crate) fn resume(daemon: &mut Daemon) {
    daemon.assert_running();
    signal(daemon, libc::SIGCONT);
}

fn signal(daemon: &Daemon, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(daemon.pid()).expect("pids fit pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the caller checked that the daemon, our own
    // child, has not been reaped, so the pid still names it.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "kill({pid}, {signal}) failed");
}

/// Waits for a thread started by [`spawn_get`] and returns its reply and how long it took.
pub(crate) fn join_get(thread: JoinHandle<(Value, Duration)>) -> (Value, Duration) {
    thread.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}

/// Like `eventually`, but reports whether `done` became true within `timeout` instead of failing, for
/// tests that have more to find out after a timeout.
pub(crate) fn answered_within(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}
