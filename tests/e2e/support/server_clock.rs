//! The server's clock, which decides expiry and activity: tests read it rather than their own.

use qsess_tests::eventually;
use redis::Connection;
use std::time::Duration;

/// The server's clock in ms (`TIME`), signed like the integers Redis replies with (`PEXPIRETIME`,
/// `created`, `seen`, `expires`), which tests compare it to.
pub(crate) fn server_clock_ms(con: &mut Connection) -> i64 {
    let (seconds, microseconds): (i64, i64) = redis::cmd("TIME").query(con).unwrap();
    seconds * 1000 + microseconds / 1000
}

/// Waits until the server's clock is past `ms`, e.g. so that the next session gets a later creation time.
pub(crate) fn wait_until_server_clock_is_past(con: &mut Connection, ms: i64) {
    eventually(Duration::from_secs(30), &format!("the server clock to pass {ms}"), || match server_clock_ms(con) {
        now if now > ms => Ok(()),
        now => Err(format!("clock at {now}")),
    });
}

/// Waits for the server clock to tick, so that a read with touch-granularity-ms 0 records activity.
pub(crate) fn wait_for_the_next_server_millisecond(con: &mut Connection) {
    let start = server_clock_ms(con);
    wait_until_server_clock_is_past(con, start);
}
