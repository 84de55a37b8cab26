//! The `qsess-syncd` binary as a test child process: `run` in the background ([`Daemon`]) or a
//! one-shot command such as `migrate` or `verify` ([`run_syncd`]).
//!
//! The binary is the one cargo builds ([`syncd_binary_path`]). Every child gets the parent-death
//! signal SIGKILL (see [`parent_death`](crate::parent_death)), so a killed test process leaves no
//! daemon behind; `QSESS_*` variables of the test's own environment are removed so that only the
//! arguments a test gives count.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::cargo_build::syncd_binary_path;
use crate::child_process::{signal_unreaped_child, stop_child};
use crate::eventually::eventually;
use crate::parent_death::spawn_dying_with_process;

/// How often exit and log polls look again.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// The batch wait every [`Daemon`] runs with unless told otherwise: short, so tests see changes soon.
pub const TEST_BATCH_WAIT: &str = "5ms";

/// A `qsess-syncd run` child process whose stdout and stderr go to a log file in its own temporary
/// directory.
///
/// Dropping it kills it (SIGKILL to its own pid, while it is unreaped) unless it already exited; if
/// the thread is panicking, its log is printed to stderr first.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// The exit status, once reaped.
    exited: Option<ExitStatus>,
    dir: TempDir,
    command: String,
}

/// Configures and starts a [`Daemon`]; see [`Daemon::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `.start()`"]
pub struct DaemonBuilder {
    redis_url: String,
    database_url: String,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
}

impl Daemon {
    /// A daemon mirroring `redis_url` into `database_url`, with `--batch-wait 5ms` unless
    /// [`arg`](DaemonBuilder::arg) gives another.
    pub fn builder(redis_url: impl Into<String>, database_url: impl Into<String>) -> DaemonBuilder {
        DaemonBuilder {
            redis_url: redis_url.into(),
            database_url: database_url.into(),
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// Starts `qsess-syncd run --redis-url <redis_url> --database-url <database_url> --batch-wait 5ms
    /// <extra_args>`.
    pub fn start(redis_url: impl Into<String>, database_url: impl Into<String>, extra_args: &[&str]) -> Daemon {
        Self::builder(redis_url, database_url).args(extra_args).start()
    }

    /// The process id of the daemon.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The command line it was started with.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The file receiving its stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("qsess-syncd.log")
    }

    /// Everything it has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        match fs::read(self.log_path()) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(cannot read {}: {e})\n", self.log_path().display()),
        }
    }

    /// Waits until the log contains `needle`.
    ///
    /// # Panics
    ///
    /// After `timeout`, or if the daemon exits first; the message quotes the log.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        eventually(timeout, &format!("the qsess-syncd log to say {needle:?}"), || {
            let log = self.log();
            if log.contains(needle) {
                return Ok(());
            }
            match self.try_exit_status() {
                Some(status) => panic!("qsess-syncd exited with {status} before logging {needle:?}; log:\n{log}"),
                None => Err(format!("not yet; log so far:\n{log}")),
            }
        });
    }

    /// The exit status if it has exited (reaping it), else `None`.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().unwrap_or_else(|e| panic!("cannot wait for qsess-syncd: {e}"));
        }
        self.exited
    }

    /// Panics (with the log) unless it is still running.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.try_exit_status() {
            panic!("qsess-syncd exited with {status}; log:\n{}", self.log());
        }
    }

    /// Kills it with SIGKILL, as a crash or the OOM killer would, and reaps it.
    ///
    /// # Panics
    ///
    /// If it had already exited (the message quotes the log).
    pub fn kill_9(&mut self) {
        self.assert_running();
        self.signal(libc::SIGKILL);
        let status = self.wait_exit(Duration::from_secs(10));
        assert_eq!(status.signal(), Some(libc::SIGKILL), "qsess-syncd ended with {status} instead of SIGKILL");
    }

    /// Sends SIGTERM, asking for a clean shutdown; see [`wait_exit`](Self::wait_exit).
    ///
    /// # Panics
    ///
    /// If it had already exited (the message quotes the log).
    pub fn terminate(&mut self) {
        self.assert_running();
        self.signal(libc::SIGTERM);
    }

    /// Waits for it to exit and returns its status.
    ///
    /// # Panics
    ///
    /// If it is still running after `timeout` (the message quotes the log); it is then killed.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return status;
            }
            if Instant::now() >= deadline {
                let log = self.log();
                self.signal(libc::SIGKILL);
                let _ = self.child.wait();
                panic!("qsess-syncd (pid {}) did not exit within {timeout:?}; log:\n{log}", self.child.id());
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sends `signal` to the daemon's own pid, if it has not been reaped (so the pid is still ours).
    fn signal(&mut self, signal: libc::c_int) {
        if self.try_exit_status().is_some() {
            return;
        }
        signal_unreaped_child(&mut self.child, signal);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if thread::panicking() {
            // One write, so parallel tests' output does not interleave within the log.
            let report = format!(
                "\n===== qsess-syncd (pid {}) log =====\n{}\n{}===== end of qsess-syncd log =====\n",
                self.child.id(),
                self.command,
                self.log()
            );
            let _ = io::stderr().write_all(report.as_bytes());
        }
        if self.try_exit_status().is_none() {
            // No grace: the test is over, and the daemon's shutdown is tested where it matters.
            stop_child(&mut self.child, &[]);
        }
    }
}

impl DaemonBuilder {
    /// Appends one argument after `run --redis-url .. --database-url ..`.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments after `run --redis-url .. --database-url ..`.
    pub fn args<S: Into<OsString> + Clone>(mut self, args: &[S]) -> Self {
        self.args.extend(args.iter().cloned().map(Into::into));
        self
    }

    /// Sets an environment variable for the daemon, such as `("QSESS_LOG", "debug")`.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((name.into(), value.into()));
        self
    }

    /// Spawns the daemon. It is not waited for: use [`Daemon::wait_for_log`] or poll the mirror.
    ///
    /// # Panics
    ///
    /// If the binary cannot be built or spawned.
    pub fn start(self) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("qsess-syncd-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for qsess-syncd: {e}"));
        let mut command = syncd_command();
        command.arg("run").arg("--redis-url").arg(&self.redis_url).arg("--database-url").arg(&self.database_url);
        if !self.args.iter().any(|arg| arg.to_str().is_some_and(|arg| arg.starts_with("--batch-wait"))) {
            command.args(["--batch-wait", TEST_BATCH_WAIT]);
        }
        command.args(&self.args);
        for (name, value) in &self.envs {
            command.env(name, value);
        }
        let log_path = dir.path().join("qsess-syncd.log");
        let log = File::create(&log_path).unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let log_for_errors = log.try_clone().unwrap_or_else(|e| panic!("cannot duplicate a file handle: {e}"));
        command.stdin(Stdio::null()).stdout(log).stderr(log_for_errors);
        let described = format!("{command:?}");
        let child =
            spawn_dying_with_process(command, libc::SIGKILL).unwrap_or_else(|e| panic!("cannot run {described}: {e}"));
        Daemon { child, exited: None, dir, command: described }
    }
}

/// What a one-shot `qsess-syncd` command did.
#[derive(Debug, Clone)]
pub struct SyncdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl SyncdOutput {
    /// stdout and stderr together, for assertions about everything it printed.
    pub fn everything(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `qsess-syncd <args>` to completion and returns its exit status and output.
///
/// # Panics
///
/// If it cannot be run or has not exited after `timeout` (it is then killed; the message quotes
/// what it printed).
pub fn run_syncd<S: AsRef<std::ffi::OsStr>>(args: &[S], timeout: Duration) -> SyncdOutput {
    run_syncd_with_env(args, &[], timeout)
}

/// [`run_syncd`] with extra environment variables.
pub fn run_syncd_with_env<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    envs: &[(&str, &str)],
    timeout: Duration,
) -> SyncdOutput {
    let dir = tempfile::Builder::new()
        .prefix("qsess-syncd-cmd-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut command = syncd_command();
    command.args(args);
    for (name, value) in envs {
        command.env(name, value);
    }
    let create = |path: &Path| File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    command.stdin(Stdio::null()).stdout(create(&out_path)).stderr(create(&err_path));
    let described = format!("{command:?}");
    let mut child =
        spawn_dying_with_process(command, libc::SIGKILL).unwrap_or_else(|e| panic!("cannot run {described}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("cannot wait for {described}: {e}")) {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(POLL_INTERVAL);
    };
    let read = |path: &Path| String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned();
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    match status {
        Some(status) => SyncdOutput { status, stdout, stderr },
        None => panic!("{described} did not exit within {timeout:?}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}"),
    }
}

/// A command for the binary with the `QSESS_*` variables of this process removed.
fn syncd_command() -> Command {
    let mut command = Command::new(syncd_binary_path());
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|name| name.starts_with("QSESS_")) {
            command.env_remove(name);
        }
    }
    command
}
