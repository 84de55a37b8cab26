//! Throwaway `redis-server` processes for tests: one private port and directory each, stopped on drop.

use std::env;
use std::ffi::OsString;
use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::child_process::stop_child;
use crate::module_build::module_path;
use crate::ports::free_port;
use crate::redis_cluster::free_cluster_port;

/// Environment variable naming the `redis-server` binary to run (default: `redis-server` on `PATH`).
pub const REDIS_SERVER_ENV: &str = "QSESS_TEST_REDIS_SERVER";

/// How long a server may take to answer PING after being spawned.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a replica may take to connect to and catch up with its primary.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How a server is stopped: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
const STOP_SIGNALS: [(libc::c_int, Duration); 1] = [(libc::SIGTERM, STOP_TIMEOUT)];
/// Pause between readiness and replication polls.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How many ports to try when another process grabs the free port before redis binds it.
const PORT_ATTEMPTS: usize = 3;

/// A `redis-server` child process on `127.0.0.1`, answering PING, with its own temporary `--dir`.
///
/// Dropping it sends SIGTERM (SIGKILL after 5 s) to that process only, reaps it and deletes the
/// directory. If the current thread is panicking, the server log is printed to stderr first.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    /// Port of the primary this server was started as a replica of.
    primary_port: Option<u16>,
    dir: TempDir,
    /// How it was started, for [`restart_empty`](RedisServer::restart_empty).
    builder: RedisServerBuilder,
}

/// The servers qsess supports; the harness runs whichever [`REDIS_SERVER_ENV`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerName {
    /// Redis 7.0 or newer.
    Redis,
    /// Valkey 8 or newer.
    Valkey,
}

/// Configures and starts a [`RedisServer`]; see [`RedisServer::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `.start()`"]
pub struct RedisServerBuilder {
    with_module: bool,
    module_args: Vec<String>,
    server_args: Vec<String>,
    primary_port: Option<u16>,
    /// Started with `--cluster-enabled yes`, on a port whose cluster bus port (+10000) is free too.
    cluster_enabled: bool,
}

impl RedisServer {
    /// A builder for a server that loads the qsess module ([`module_path`]) with no module
    /// arguments and no extra server arguments.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder {
            with_module: true,
            module_args: Vec::new(),
            server_args: Vec::new(),
            primary_port: None,
            cluster_enabled: false,
        }
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's connection URL, `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The process id of the `redis-server` child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL to the `redis-server` child, as a crash would: no shutdown, no goodbye to
    /// replicas or cluster peers. Returns at once; the process is reaped when the server is dropped
    /// (or restarted), and its port closes as soon as the kernel has ended it.
    pub fn kill_with_sigkill(&self) {
        self.signal(libc::SIGKILL);
    }

    /// Sends `signal` to the `redis-server` child without waiting or reaping.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        // Only the `&mut self` methods (drop, restart_empty) reap the child, and restart_empty
        // replaces it with a new, unreaped one, so while `&self` is held the pid still names our
        // child (alive or a zombie) and cannot have been reused by another process.
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) has no memory-safety preconditions; see above for why the pid is ours.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// The server's temporary working directory (`--dir`), deleted on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client for [`url`](Self::url) (RESP2).
    ///
    /// # Panics
    ///
    /// If the URL is rejected by the `redis` crate.
    pub fn client(&self) -> redis::Client {
        open_client(&self.url())
    }

    /// Which server this is, from `INFO server`: [`ServerName::Valkey`] when it reports
    /// `server_name:valkey`, else [`ServerName::Redis`]. Tests whose expectations differ between
    /// servers branch on this and say why.
    ///
    /// # Panics
    ///
    /// If the server cannot be reached.
    pub fn server_name(&self) -> ServerName {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut self.connection())
            .unwrap_or_else(|e| panic!("INFO server on port {} failed: {e}", self.port));
        match info_field(&info, "server_name") {
            Some("valkey") => ServerName::Valkey,
            _ => ServerName::Redis,
        }
    }

    /// A new RESP2 connection to the server.
    ///
    /// # Panics
    ///
    /// If the server cannot be reached.
    pub fn connection(&self) -> redis::Connection {
        connect(&self.url(), self.port)
    }

    /// A new RESP3 connection to the server (`HELLO 3` is sent on connect).
    ///
    /// # Panics
    ///
    /// If the server cannot be reached.
    pub fn connection_resp3(&self) -> redis::Connection {
        connect(&format!("{}?protocol=resp3", self.url()), self.port)
    }

    /// Everything the server has logged so far (its `--logfile`, which also receives the
    /// process's stdout and stderr, so startup errors are included).
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// Waits until this replica's link to the primary it was started with
    /// ([`RedisServerBuilder::replica_of`]) is up and its replication offset has caught up with
    /// the primary's.
    ///
    /// # Panics
    ///
    /// If this server was not started as a replica, or after a 10 s deadline (the message
    /// includes both servers' last `INFO replication`).
    pub fn wait_for_sync(&self) {
        let primary_port = self.primary_port.unwrap_or_else(|| {
            panic!("wait_for_sync on the server on port {}, which was not started with replica_of", self.port)
        });
        self.wait_caught_up_with_port(primary_port);
    }

    /// Waits until this server's replication link is up and its `master_repl_offset` has caught
    /// up with `primary`'s, so that every write acknowledged by `primary` before this call is
    /// visible here.
    ///
    /// # Panics
    ///
    /// After a 10 s deadline, with both servers' last `INFO replication` in the message.
    pub fn wait_caught_up(&self, primary: &RedisServer) {
        self.wait_caught_up_with_port(primary.port);
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and starts a new `redis-server` with the
    /// same arguments on the same port and directory, holding no data: what a server that lost
    /// everything looks like to its clients. Persistence files left in the directory are deleted
    /// first, so the new server starts empty even when started with persistence on. The log goes on
    /// in the same file, after a line saying the harness restarted it.
    ///
    /// # Panics
    ///
    /// If the new server does not answer PING within 10 s (for example because another process took
    /// the port meanwhile); the message includes the log.
    pub fn restart_empty(&mut self) {
        stop_child(&mut self.child, &STOP_SIGNALS);
        for file in ["dump.rdb", "appendonly.aof"] {
            let _ = fs::remove_file(self.dir.path().join(file));
        }
        let _ = fs::remove_dir_all(self.dir.path().join("appendonlydir"));
        let mut log = open_log_for_append(&log_path(self.dir.path()));
        let _ = writeln!(log, "===== qsess test harness: restarting redis-server empty on port {} =====", self.port);
        let module = self.builder.with_module.then(module_path);
        match self.builder.spawn_until_ready(module, self.port, self.dir.path()) {
            Ok(child) => self.child = child,
            Err(failure) => panic!("restarting empty: {}", failure.message),
        }
    }

    fn wait_caught_up_with_port(&self, primary_port: u16) {
        let primary_url = format!("redis://127.0.0.1:{primary_port}/");
        let mut primary = connect(&primary_url, primary_port);
        let mut replica = self.connection();
        let deadline = Instant::now() + SYNC_TIMEOUT;
        loop {
            // Read the primary first: the replica must reach at least that offset.
            let primary_info = info_replication(&mut primary, primary_port);
            let replica_info = info_replication(&mut replica, self.port);
            let primary_offset =
                info_field(&primary_info, "master_repl_offset").and_then(|offset| offset.parse::<i64>().ok());
            let replica_offset =
                info_field(&replica_info, "master_repl_offset").and_then(|offset| offset.parse::<i64>().ok());
            let link_up = info_field(&replica_info, "master_link_status") == Some("up");
            let caught_up = matches!(
                (primary_offset, replica_offset),
                (Some(p), Some(r)) if r >= p
            );
            if link_up && caught_up {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "replica on port {} did not catch up with primary on port {primary_port} \
                     within {SYNC_TIMEOUT:?}\n--- replica INFO replication ---\n{replica_info}\n\
                     --- primary INFO replication ---\n{primary_info}",
                    self.port
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl RedisServerBuilder {
    /// Appends the module argument pair `name value` after the module path on `--loadmodule`.
    ///
    /// # Panics
    ///
    /// [`start`](Self::start) panics if module arguments are combined with
    /// [`without_module`](Self::without_module).
    pub fn module_arg(mut self, name: impl Display, value: impl Display) -> Self {
        self.module_args.push(name.to_string());
        self.module_args.push(value.to_string());
        self
    }

    /// Appends an extra server argument and its value, such as `("--maxmemory", "10mb")`, after
    /// the harness's own arguments (so it overrides them).
    pub fn server_arg(mut self, name: impl Display, value: impl Display) -> Self {
        self.server_args.push(name.to_string());
        self.server_args.push(value.to_string());
        self
    }

    /// Starts a plain `redis-server` without the qsess module (for baselines and harness tests).
    /// Never builds the module.
    pub fn without_module(mut self) -> Self {
        self.with_module = false;
        self
    }

    /// Makes the server a replica of `primary` (`--replicaof 127.0.0.1 <port>`); see
    /// [`RedisServer::wait_for_sync`].
    pub fn replica_of(mut self, primary: &RedisServer) -> Self {
        self.primary_port = Some(primary.port);
        self
    }

    /// Starts the server as a Redis Cluster node (`--cluster-enabled yes`, its node table in
    /// `nodes.conf` in its directory) on a port whose cluster bus port, port + 10000, is free too.
    /// The node holds no slots until it is joined into a cluster; see
    /// [`RedisCluster`](crate::RedisCluster).
    pub fn cluster_enabled(mut self) -> Self {
        self.cluster_enabled = true;
        self
    }

    /// Spawns the server and waits (up to 10 s) until it answers PING.
    ///
    /// If the chosen port turns out to be taken by another process, retries on a new port.
    ///
    /// # Panics
    ///
    /// If `redis-server` cannot be run, or it exits or does not answer PING within 10 s; the
    /// message includes the command line and the server log. Also panics if the module cannot
    /// be built (see [`module_path`]).
    pub fn start(self) -> RedisServer {
        assert!(
            self.with_module || self.module_args.is_empty(),
            "module arguments {:?} given for a server started without_module()",
            self.module_args
        );
        let module = self.with_module.then(module_path);
        for attempt in 1..=PORT_ATTEMPTS {
            match self.try_start(module) {
                Ok(server) => return server,
                Err(failure) if failure.port_in_use && attempt < PORT_ATTEMPTS => continue,
                Err(failure) => panic!("{}", failure.message),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    fn try_start(&self, module: Option<&Path>) -> Result<RedisServer, StartFailure> {
        let port = if self.cluster_enabled { free_cluster_port() } else { free_port() };
        let dir = tempfile::Builder::new()
            .prefix("qsess-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for redis: {e}"));
        let child = self.spawn_until_ready(module, port, dir.path())?;
        Ok(RedisServer { child, port, primary_port: self.primary_port, dir, builder: self.clone() })
    }

    /// Spawns `redis-server` on `port` with `dir` as its `--dir` (appending to the log there) and
    /// waits until it answers PING.
    fn spawn_until_ready(&self, module: Option<&Path>, port: u16, dir: &Path) -> Result<Child, StartFailure> {
        let log_path = log_path(dir);
        let log_start = fs::metadata(&log_path).map_or(0, |metadata| metadata.len());
        let mut command = Command::new(redis_server_binary());
        command
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log_path)
            .args(["--enable-debug-command", "local"])
            .args(["--enable-module-command", "local"])
            // Replicas get their full sync at once rather than after the default 5 s delay.
            .args(["--repl-diskless-sync-delay", "0"]);
        if let Some(module) = module {
            command.arg("--loadmodule").arg(module).args(&self.module_args);
        }
        if self.cluster_enabled {
            command.args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]);
        }
        if let Some(primary_port) = self.primary_port {
            command.args(["--replicaof", "127.0.0.1"]).arg(primary_port.to_string());
        }
        command.args(&self.server_args);

        // stdout and stderr share the log file (both in append mode, like redis's own writes),
        // so errors printed before the log file is configured are kept too.
        let log_for_output = open_log_for_append(&log_path);
        let log_for_errors = open_log_for_append(&log_path);
        command.stdin(Stdio::null()).stdout(log_for_output).stderr(log_for_errors);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                "cannot run {:?}: not found. Install it with `apt-get install redis-server` \
                 (Debian package redis-server, or run scripts/install-deps), or set \
                 {REDIS_SERVER_ENV} to the path of a redis-server binary",
                command.get_program()
            ),
            Err(e) => panic!("cannot run {command:?}: {e}"),
        };

        match wait_until_ready(&mut child, port) {
            Ok(()) => Ok(child),
            Err(reason) => {
                stop_child(&mut child, &STOP_SIGNALS);
                let log = read_log(dir);
                let since_start = log.get(usize::try_from(log_start).unwrap_or(usize::MAX)..).unwrap_or(&log);
                Err(StartFailure {
                    port_in_use: since_start.contains("Address already in use"),
                    message: format!(
                        "redis-server on port {port} failed to start: {reason}\n\
                         command: {command:?}\n--- redis log ---\n{log}--- end of redis log ---"
                    ),
                })
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if thread::panicking() {
            // One write, so parallel tests' output does not interleave within the log.
            let report = format!(
                "\n===== redis-server on port {} (pid {}) log =====\n{}===== end of log for port {} =====\n",
                self.port,
                self.child.id(),
                self.log(),
                self.port
            );
            let _ = io::stderr().write_all(report.as_bytes());
        }
        stop_child(&mut self.child, &STOP_SIGNALS);
    }
}

/// Why one attempt at starting a server failed.
struct StartFailure {
    /// The server could not bind its port: worth retrying on another one.
    port_in_use: bool,
    message: String,
}

fn redis_server_binary() -> OsString {
    env::var_os(REDIS_SERVER_ENV).filter(|path| !path.is_empty()).unwrap_or_else(|| OsString::from("redis-server"))
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("redis.log")
}

fn open_log_for_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
}

fn read_log(dir: &Path) -> String {
    match fs::read(log_path(dir)) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("(cannot read {}: {e})\n", log_path(dir).display()),
    }
}

/// Polls PING until it answers, the process exits, or [`START_TIMEOUT`] passes.
fn wait_until_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let url = format!("redis://127.0.0.1:{port}/");
    let client = open_client(&url);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) =
            child.try_wait().map_err(|e| format!("cannot check whether redis-server is running: {e}"))?
        {
            return Err(format!("it exited with {status}"));
        }
        let last_error = match ping(&client) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(format!("no answer to PING within {START_TIMEOUT:?} (last error: {last_error})"));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

fn ping(client: &redis::Client) -> Result<(), String> {
    let mut con = client.get_connection_with_timeout(Duration::from_secs(1)).map_err(|e| e.to_string())?;
    con.set_read_timeout(Some(Duration::from_secs(1))).map_err(|e| e.to_string())?;
    let pong: String = redis::cmd("PING").query(&mut con).map_err(|e| e.to_string())?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(format!("PING answered {pong:?}"))
    }
}

fn open_client(url: &str) -> redis::Client {
    redis::Client::open(url).unwrap_or_else(|e| panic!("bad redis URL {url}: {e}"))
}

fn connect(url: &str, port: u16) -> redis::Connection {
    open_client(url)
        .get_connection()
        .unwrap_or_else(|e| panic!("cannot connect to redis-server on port {port} ({url}): {e}"))
}

fn info_replication(con: &mut redis::Connection, port: u16) -> String {
    redis::cmd("INFO")
        .arg("replication")
        .query(con)
        .unwrap_or_else(|e| panic!("INFO replication on port {port} failed: {e}"))
}

/// The value of `field:value` in an `INFO` reply.
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':')).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::info_field;

    #[test]
    fn info_field_reads_exact_fields() {
        let info = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n\
                    master_repl_offset:42\r\nmaster_repl_offset_extra:7\r\n";
        assert_eq!(info_field(info, "master_repl_offset"), Some("42"));
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "master_host"), None);
    }
}
