//! Throwaway PostgreSQL clusters for tests: a private `initdb` directory and a postmaster on a
//! private loopback port, stopped on drop, at exit, or when the test process is killed.
//!
//! Each [`PgCluster`] is a temporary directory (`qsess-pg-*` under the system temp dir) holding the
//! data directory, the unix socket and `postgres.log`, plus one `postgres` child process listening
//! on `127.0.0.1:<free port>` with trust authentication for the superuser `postgres` and
//! non-durable settings (`fsync`, `synchronous_commit` and `full_page_writes` off). When the tests
//! run as root, `initdb` and `postgres` run as the `postgres` OS user (see [`postgres_user`]).
//!
//! [`shared_cluster`] is one cluster per test process (so one per test under nextest), for tests
//! that only need a [`fresh_database`](PgCluster::fresh_database); tests that stop or restart
//! Postgres start their own with [`PgCluster::start`].
//!
//! [`postgres_user`]: crate::postgres_user

use std::env;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{self, Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once, OnceLock, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::child_process::{stop_child, wait_with_deadline};
use crate::parent_death::spawn_dying_with_process;
use crate::ports::free_port;
use crate::postgres_database::PgDatabase;
use crate::postgres_user::{self, OsUser};

/// Environment variable naming the directory holding `initdb` and `postgres` (default: the
/// newest `/usr/lib/postgresql/<version>/bin`).
pub const PG_BINDIR_ENV: &str = "QSESS_TEST_PG_BINDIR";

/// The superuser every cluster is initialised with; it needs no password (trust authentication).
pub const SUPERUSER: &str = "postgres";

/// PostgreSQL's default port, never used by tests.
const DEFAULT_PG_PORT: u16 = 5432;
/// Where Debian installs each PostgreSQL major version (`<root>/<version>/bin`).
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";
/// Prefix of every cluster's temporary directory, which [`remove_stale_cluster_dirs`] looks for.
const DIR_PREFIX: &str = "qsess-pg-";
/// File in a cluster directory holding the pid of the test process that owns it.
const OWNER_FILE: &str = "owner.pid";
/// The postmaster's stdout and stderr, in the cluster directory.
const LOG_FILE: &str = "postgres.log";
/// `initdb`'s output, in the cluster directory.
const INITDB_LOG_FILE: &str = "initdb.log";
/// The data directory, inside the cluster directory.
const DATA_DIR: &str = "data";

/// How long `initdb` may take.
const INITDB_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a spawned postmaster may take to accept a query.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a fast shutdown (SIGINT) may take before an immediate one (SIGQUIT) is asked for.
const FAST_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an immediate shutdown may take before the postmaster gets SIGKILL.
const IMMEDIATE_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout for each connection attempt the harness itself makes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between readiness and exit polls.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How the postmaster is stopped: SIGINT (fast shutdown), then SIGQUIT (immediate), then SIGKILL.
const POSTMASTER_STOP_SIGNALS: [(libc::c_int, Duration); 2] =
    [(libc::SIGINT, FAST_STOP_TIMEOUT), (libc::SIGQUIT, IMMEDIATE_STOP_TIMEOUT)];
/// How many ports to try when another process grabs the free port before postgres binds it.
const PORT_ATTEMPTS: usize = 3;
/// What the kernel sends the postmaster when the test process dies: a fast shutdown, which
/// disconnects clients (a surviving child of the test, such as a redis-server, could hold a
/// connection open forever and stall a smart shutdown).
const DEATH_SIGNAL: libc::c_int = libc::SIGINT;

/// Settings for every postmaster: private loopback port and socket directory are added per
/// cluster; these make it fast and non-durable, like pgtemp does.
const SERVER_SETTINGS: [&str; 5] = [
    "listen_addresses=127.0.0.1",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=200",
];

static SHARED: OnceLock<PgCluster> = OnceLock::new();
/// Numbers the databases made by [`PgCluster::fresh_database`] in this process.
static NEXT_DATABASE: AtomicU64 = AtomicU64::new(1);

/// A PostgreSQL cluster (data directory plus postmaster) private to this test process, on
/// `127.0.0.1` with trust authentication for [`SUPERUSER`].
///
/// Dropping it stops the postmaster (fast shutdown, then immediate, then SIGKILL), reaps it and
/// deletes the directory; if the thread is panicking, the server log is printed to stderr first.
/// If the test process dies without dropping it, the kernel sends the postmaster SIGINT (see
/// [`parent_death`](crate::parent_death)) and a later cluster start removes the leftover
/// directory ([`remove_stale_cluster_dirs`]).
#[derive(Debug)]
pub struct PgCluster {
    bin_dir: PathBuf,
    dir: TempDir,
    port: u16,
    server_user: Option<OsUser>,
    shared: bool,
    /// The running postmaster; `None` while [`stop`](Self::stop)ped.
    postmaster: Mutex<Option<Child>>,
}

/// The cluster shared by every test of this process, started on first use.
///
/// Statics are never dropped, so it is stopped and its directory deleted by an `atexit` hook when
/// the process exits normally (which libtest does after a failing test too), and by the
/// postmaster's parent-death signal if the process is killed. It cannot be
/// [`stop`](PgCluster::stop)ped or [`restart`](PgCluster::restart)ed. Failures of tests using it
/// print the part of its log written during the test (see [`PgDatabase`]).
///
/// # Panics
///
/// As [`PgCluster::start`] does; a later call tries again.
pub fn shared_cluster() -> &'static PgCluster {
    SHARED.get_or_init(|| {
        static AT_EXIT: Once = Once::new();
        AT_EXIT.call_once(|| {
            // SAFETY: atexit(3) only records the function pointer; the function is a plain
            // `extern "C" fn` that never unwinds.
            let status = unsafe { libc::atexit(stop_shared_cluster_at_exit) };
            assert_eq!(status, 0, "cannot register the shared PostgreSQL cluster's atexit hook");
        });
        PgCluster::start_cluster(true)
    })
}

/// Stops the shared cluster and deletes its directory; runs at process exit.
extern "C" fn stop_shared_cluster_at_exit() {
    if let Some(cluster) = SHARED.get() {
        // Must not panic: unwinding out of an `extern "C" fn` aborts.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| cluster.shut_down_for_good()));
    }
}

impl PgCluster {
    /// Runs `initdb` into a new temporary directory and starts a postmaster on a free loopback
    /// port, waiting (up to 20 s) until it answers a query. If the port turns out to be taken by
    /// another process, retries on a new port.
    ///
    /// # Panics
    ///
    /// If no PostgreSQL installation is found (see [`PG_BINDIR_ENV`]), if running as root and
    /// there is no `postgres` OS user, or if `initdb` or the postmaster fail; the message includes
    /// the command line and the log.
    pub fn start() -> PgCluster {
        Self::start_cluster(false)
    }

    fn start_cluster(shared: bool) -> PgCluster {
        remove_stale_cluster_dirs_once();
        let bin_dir = bin_dir();
        let server_user = postgres_user::server_user();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for PostgreSQL: {e}"));
        let owner_file = dir.path().join(OWNER_FILE);
        fs::write(&owner_file, process::id().to_string())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", owner_file.display()));
        postgres_user::give_to(dir.path(), server_user)
            .unwrap_or_else(|e| panic!("cannot give {} to the PostgreSQL OS user: {e}", dir.path().display()));
        run_initdb(&bin_dir, dir.path(), server_user);

        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_pg_port();
            let log_start = log_len(dir.path());
            let mut postmaster = spawn_postmaster(&bin_dir, dir.path(), port, server_user);
            match on_plain_thread(|| wait_until_ready(&mut postmaster, port)) {
                Ok(()) => {
                    return PgCluster {
                        bin_dir,
                        dir,
                        port,
                        server_user,
                        shared,
                        postmaster: Mutex::new(Some(postmaster)),
                    }
                }
                Err(reason) => {
                    stop_child(&mut postmaster, &POSTMASTER_STOP_SIGNALS);
                    let port_in_use = read_log_from(dir.path(), log_start).contains("Address already in use");
                    if port_in_use && attempt < PORT_ATTEMPTS {
                        continue;
                    }
                    panic!(
                        "PostgreSQL on port {port} failed to start: {reason}\ncommand: {:?}\n{}",
                        postmaster_command(&bin_dir, dir.path(), port, server_user),
                        quoted_log(dir.path(), port)
                    );
                }
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// The TCP port the postmaster listens on (on 127.0.0.1); the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the postmaster, or `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.lock_postmaster().as_ref().map(Child::id)
    }

    /// Whether this is the [`shared_cluster`].
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The cluster's temporary directory: it holds the data directory, the unix socket and the
    /// logs, and is deleted with the cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory (`initdb -D`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join(DATA_DIR)
    }

    /// The directory holding the `postgres` and `initdb` binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A URL for the `postgres` maintenance database, as the superuser:
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        database_url(self.port, "postgres")
    }

    /// A new superuser connection to the `postgres` maintenance database.
    ///
    /// Like every `postgres::Client`, it must not be created or used inside an async runtime.
    ///
    /// # Panics
    ///
    /// If the cluster cannot be reached.
    pub fn client(&self) -> postgres::Client {
        connect(self.port, "postgres")
            .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL on port {} ({}): {e}", self.port, self.url()))
    }

    /// Everything the postmaster has written to its stdout and stderr so far.
    pub fn log(&self) -> String {
        read_log_from(self.dir.path(), 0)
    }

    /// Creates a new, empty database with a name unique in this process
    /// (`qsess_test_<n>_<pid>`), dropped when the returned [`PgDatabase`] is.
    ///
    /// # Panics
    ///
    /// If `CREATE DATABASE` fails (the message includes the server log).
    pub fn fresh_database(&self) -> PgDatabase {
        let name = format!("qsess_test_{}_{}", NEXT_DATABASE.fetch_add(1, Ordering::Relaxed), process::id());
        let log_start = log_len(self.dir.path());
        let created = on_plain_thread(|| {
            connect(self.port, "postgres")?.batch_execute(&format!("create database {}", quote_identifier(&name)))
        });
        if let Err(e) = created {
            panic!(
                "cannot create database {name} on PostgreSQL on port {}: {e}\n{}",
                self.port,
                quoted_log(self.dir.path(), self.port)
            );
        }
        // Tests on the shared cluster print its log on failure through their databases; a
        // dedicated cluster prints its own when dropped.
        let shared_log = self.shared.then(|| (self.dir.path().join(LOG_FILE), log_start));
        PgDatabase::new(name, self.port, shared_log)
    }

    /// Stops the postmaster with a fast shutdown (clients are disconnected, open transactions
    /// rolled back), escalating to an immediate shutdown and then SIGKILL if it takes too long,
    /// and waits until it has exited. The port and data directory stay reserved for
    /// [`restart`](Self::restart). Does nothing if already stopped.
    ///
    /// # Panics
    ///
    /// On the [`shared_cluster`], which other tests rely on.
    pub fn stop(&self) {
        self.assert_dedicated("stop");
        if let Some(mut postmaster) = self.lock_postmaster().take() {
            stop_child(&mut postmaster, &POSTMASTER_STOP_SIGNALS);
        }
    }

    /// Starts the postmaster again on the same port and data directory (stopping it first if it
    /// is running) and waits until it answers a query. Data committed before a
    /// [`stop`](Self::stop) is still there.
    ///
    /// # Panics
    ///
    /// On the [`shared_cluster`], or if the postmaster does not come up within 20 s (the message
    /// includes the log; the port may have been taken by another process meanwhile).
    pub fn restart(&self) {
        self.assert_dedicated("restart");
        let mut postmaster = self.lock_postmaster();
        if let Some(mut running) = postmaster.take() {
            stop_child(&mut running, &POSTMASTER_STOP_SIGNALS);
        }
        let mut child = spawn_postmaster(&self.bin_dir, self.dir.path(), self.port, self.server_user);
        if let Err(reason) = on_plain_thread(|| wait_until_ready(&mut child, self.port)) {
            stop_child(&mut child, &POSTMASTER_STOP_SIGNALS);
            panic!(
                "PostgreSQL on port {} failed to restart: {reason}\n{}",
                self.port,
                quoted_log(self.dir.path(), self.port)
            );
        }
        *postmaster = Some(child);
    }

    fn assert_dedicated(&self, operation: &str) {
        assert!(
            !self.shared,
            "cannot {operation} the shared PostgreSQL cluster (port {}): other tests use it; start a \
             dedicated one with PgCluster::start()",
            self.port
        );
    }

    fn lock_postmaster(&self) -> MutexGuard<'_, Option<Child>> {
        self.postmaster.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the postmaster and deletes the directory, without panicking; for the shared
    /// cluster at process exit.
    fn shut_down_for_good(&self) {
        let mut postmaster = match self.postmaster.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Another thread is stopping or starting it; leave the directory to a later sweep.
            Err(TryLockError::WouldBlock) => return,
        };
        if let Some(mut child) = postmaster.take() {
            stop_child(&mut child, &POSTMASTER_STOP_SIGNALS);
        }
        let _ = fs::remove_dir_all(self.dir.path());
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if thread::panicking() {
            let port = self.port;
            let pid = self.pid().map_or_else(|| "stopped".to_owned(), |pid| format!("pid {pid}"));
            // One write, so parallel tests' output does not interleave within the log.
            let report = format!(
                "\n===== PostgreSQL on port {port} ({pid}) log =====\n{}===== end of log for port {port} =====\n",
                self.log()
            );
            let _ = io::stderr().write_all(report.as_bytes());
        }
        if let Some(mut postmaster) = self.lock_postmaster().take() {
            stop_child(&mut postmaster, &POSTMASTER_STOP_SIGNALS);
        }
        // The TempDir field then deletes the directory.
    }
}

/// A port from [`free_port`] that is not PostgreSQL's default, which a system server may use.
fn free_pg_port() -> u16 {
    loop {
        let port = free_port();
        if port != DEFAULT_PG_PORT {
            return port;
        }
    }
}

/// Removes the directories of clusters whose test process and postmaster are both gone, such as
/// those of a test process killed by a timeout. Runs automatically before the first cluster of
/// each process starts; only touches `qsess-pg-*` directories in the system temp dir that have an
/// owner file naming a dead process.
pub fn remove_stale_cluster_dirs() {
    let Ok(entries) = fs::read_dir(env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let is_cluster_dir = entry.file_name().to_str().is_some_and(|name| name.starts_with(DIR_PREFIX))
            && entry.file_type().is_ok_and(|kind| kind.is_dir());
        if !is_cluster_dir {
            continue;
        }
        let dir = entry.path();
        let Some(owner) = read_pid(&dir.join(OWNER_FILE)) else {
            // Just being created, or not ours.
            continue;
        };
        if owner == process::id() || process_alive(owner) {
            continue;
        }
        // postmaster.pid is removed at a clean shutdown; if it is still there, its process may
        // still be shutting down after the owner died.
        if read_pid(&dir.join(DATA_DIR).join("postmaster.pid")).is_some_and(process_alive) {
            continue;
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

fn remove_stale_cluster_dirs_once() {
    static SWEPT: Once = Once::new();
    SWEPT.call_once(remove_stale_cluster_dirs);
}

/// The number on the first line of `path`.
fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.lines().next()?.trim().parse().ok()
}

/// Whether `pid` names a live (not zombie) process, per `/proc`.
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the first field after the command name, which is in parentheses and may
    // itself contain spaces and parentheses.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

/// The directory holding `initdb` and `postgres`: `$QSESS_TEST_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = env::var_os(PG_BINDIR_ENV).filter(|dir| !dir.is_empty()) {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file() && dir.join("postgres").is_file(),
            "{PG_BINDIR_ENV}={} does not hold both initdb and postgres",
            dir.display()
        );
        return dir;
    }
    newest_bin_dir(Path::new(DEBIAN_PG_ROOT)).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server found: no {DEBIAN_PG_ROOT}/<version>/bin/initdb. Install it with \
             `apt-get install postgresql` (or run scripts/install-deps), or set {PG_BINDIR_ENV} to \
             the directory holding initdb and postgres"
        )
    })
}

/// The `bin` directory of the highest numbered version under `root` that has `initdb`.
fn newest_bin_dir(root: &Path) -> Option<PathBuf> {
    fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version: Vec<u32> =
                entry.file_name().to_str()?.split('.').map(|part| part.parse().ok()).collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

fn run_initdb(bin_dir: &Path, dir: &Path, server_user: Option<OsUser>) {
    let log_path = dir.join(INITDB_LOG_FILE);
    let mut command = Command::new(bin_dir.join("initdb"));
    command
        .arg("-D")
        .arg(dir.join(DATA_DIR))
        .args(["--auth=trust", "-U", SUPERUSER, "--encoding=UTF8", "--locale=C", "--no-sync"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(open_for_append(&log_path))
        .stderr(open_for_append(&log_path));
    postgres_user::run_as(&mut command, server_user);
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let outcome = match wait_with_deadline(&mut child, INITDB_TIMEOUT) {
        Some(status) if status.success() => return,
        Some(status) => format!("exited with {status}"),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            format!("did not finish within {INITDB_TIMEOUT:?}")
        }
    };
    let output = fs::read_to_string(&log_path).unwrap_or_else(|e| format!("(cannot read {}: {e})", log_path.display()));
    panic!("initdb {outcome}\ncommand: {command:?}\n--- initdb output ---\n{output}--- end of initdb output ---");
}

fn postmaster_command(bin_dir: &Path, dir: &Path, port: u16, server_user: Option<OsUser>) -> Command {
    let mut command = Command::new(bin_dir.join("postgres"));
    command.arg("-D").arg(dir.join(DATA_DIR)).arg("-p").arg(port.to_string());
    command.arg("-c").arg(format!("unix_socket_directories={}", dir.display()));
    for setting in SERVER_SETTINGS {
        command.args(["-c", setting]);
    }
    command.current_dir(dir).stdin(Stdio::null());
    postgres_user::run_as(&mut command, server_user);
    command
}

/// Spawns the postmaster (not through pg_ctl, so its pid is our child's), with stdout and stderr
/// appended to the cluster log and a parent-death signal.
fn spawn_postmaster(bin_dir: &Path, dir: &Path, port: u16, server_user: Option<OsUser>) -> Child {
    let mut command = postmaster_command(bin_dir, dir, port, server_user);
    let log_path = dir.join(LOG_FILE);
    command.stdout(open_for_append(&log_path)).stderr(open_for_append(&log_path));
    let described = format!("{command:?}");
    spawn_dying_with_process(command, DEATH_SIGNAL).unwrap_or_else(|e| panic!("cannot run {described}: {e}"))
}

/// Polls a query until it succeeds, the postmaster exits, or [`START_TIMEOUT`] passes.
fn wait_until_ready(postmaster: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) =
            postmaster.try_wait().map_err(|e| format!("cannot check whether postgres is running: {e}"))?
        {
            return Err(format!("it exited with {status}"));
        }
        let last_error = match connect(port, "postgres").and_then(|mut client| client.simple_query("select 1")) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(format!("no answer to `select 1` within {START_TIMEOUT:?} (last error: {last_error})"));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// A superuser connection to `database` on the cluster at `port`.
pub(crate) fn connect(port: u16, database: &str) -> Result<postgres::Client, postgres::Error> {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(SUPERUSER)
        .dbname(database)
        .connect_timeout(CONNECT_TIMEOUT)
        .connect(postgres::NoTls)
}

/// `postgres://postgres@127.0.0.1:<port>/<database>`.
pub(crate) fn database_url(port: u16, database: &str) -> String {
    format!("postgres://{SUPERUSER}@127.0.0.1:{port}/{database}")
}

/// `name` as a double-quoted SQL identifier.
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs `f` on a new thread and returns its result (re-raising its panic).
///
/// The sync `postgres` client runs a Tokio runtime of its own, which panics inside another
/// runtime; the harness's own connections go through this so that it also works from async tests.
pub(crate) fn on_plain_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    thread::scope(|scope| scope.spawn(f).join().unwrap_or_else(|payload| panic::resume_unwind(payload)))
}

fn open_for_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
}

fn log_len(dir: &Path) -> u64 {
    fs::metadata(dir.join(LOG_FILE)).map_or(0, |metadata| metadata.len())
}

/// The cluster log from byte `start` on.
pub(crate) fn read_log_from(dir: &Path, start: u64) -> String {
    read_file_from(&dir.join(LOG_FILE), start)
}

pub(crate) fn read_file_from(path: &Path, start: u64) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = usize::try_from(start).unwrap_or(usize::MAX).min(bytes.len());
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(cannot read {}: {e})\n", path.display()),
    }
}

/// The whole cluster log between marker lines, for panic messages.
fn quoted_log(dir: &Path, port: u16) -> String {
    format!(
        "--- PostgreSQL log (port {port}) ---\n{}--- end of PostgreSQL log (port {port}) ---\n",
        read_log_from(dir, 0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_bin_dir_compares_versions_numerically() {
        let root = tempfile::tempdir().unwrap();
        for version in ["9.6", "15", "16", "100-not-a-version", "17"] {
            let bin = root.path().join(version).join("bin");
            fs::create_dir_all(&bin).unwrap();
            if version != "17" {
                fs::write(bin.join("initdb"), "").unwrap();
            }
        }
        assert_eq!(newest_bin_dir(root.path()), Some(root.path().join("16").join("bin")));
        assert_eq!(newest_bin_dir(&root.path().join("missing")), None);
    }

    #[test]
    fn process_alive_sees_this_process_and_not_a_reaped_child() {
        assert!(process_alive(process::id()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("qsess_test_1_2"), "\"qsess_test_1_2\"");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }
}
