//! Stopping a child process the harness started (redis-server, the postmaster, qsess-syncd): signals
//! in escalating order, each given time to work, then SIGKILL, and always reaping it.
//!
//! Only ever signals the child's own pid, and only while it is unreaped, so the pid cannot have been
//! reused by another process.

use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// How often a wait for a child's exit checks again.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Stops `child` if it is still running: each of `signals` in turn, waiting up to its timeout for the
/// child to exit, then SIGKILL; always reaps it. Never panics.
pub(crate) fn stop_child(child: &mut Child, signals: &[(libc::c_int, Duration)]) {
    for &(signal, timeout) in signals {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let sent = signal_unreaped_child(child, signal);
        if sent && wait_with_deadline(child, timeout).is_some() {
            return;
        }
    }
    // Child::kill sends SIGKILL (and is a no-op error if the child already exited).
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `signal` to `child` unless it has already been reaped; reports whether it was sent.
pub(crate) fn signal_unreaped_child(child: &mut Child, signal: libc::c_int) -> bool {
    if !matches!(child.try_wait(), Ok(None)) {
        return false;
    }
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return false;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own child, which has not been
    // reaped yet (try_wait above returned None), so the pid still names that process.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Waits up to `timeout` for `child` to exit; `None` if it is still running (or cannot be waited for).
pub(crate) fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
            Ok(None) | Err(_) => return None,
        }
    }
}
