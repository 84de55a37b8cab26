//! Polling helper: retry a check until it succeeds or a deadline passes.

use std::thread;
use std::time::{Duration, Instant};

/// How long [`eventually`] sleeps between attempts.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Calls `f` every ~10 ms until it returns `Ok`, and returns that value.
///
/// `f` is always called at least once, and once more at (or just after) the deadline.
///
/// # Panics
///
/// If `f` has not returned `Ok` within `timeout`; the message names `what` and quotes the last
/// error `f` returned.
///
/// ```
/// use std::time::Duration;
/// use qsess_tests::eventually;
///
/// let mut calls = 0;
/// let n = eventually(Duration::from_secs(1), "the third call", || {
///     calls += 1;
///     if calls < 3 { Err(format!("only {calls} calls")) } else { Ok(calls) }
/// });
/// assert_eq!(n, 3);
/// ```
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        let last_error = match f() {
            Ok(value) => return value,
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {:?} waiting for {what}; last error: {last_error}", now - start);
        }
        thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}
