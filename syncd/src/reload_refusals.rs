//! Why the loader skipped a reload request or a restore: counted by reason in
//! `qsess_syncd_reload_refused_total{reason}` and logged, as a warning at most every ten seconds per
//! reason, never with a session id or a user id. None of them stops the loader.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often a refusal of the same kind is logged as a warning; in between they are counted (the
/// metric counts every one) and logged at debug, so a flood of bad messages cannot flood the log.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Why the loader skipped a request or a restore, the `reason` label of
/// `qsess_syncd_reload_refused_total`. None of them stops the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A `reload-user` message that is not `<bucket> <uid>` with a bucket the server has and a
    /// non-empty UTF-8 uid of at most 256 bytes without NUL.
    MalformedRequest,
    /// Postgres refused the lookup of a requested user for good (not a lost connection).
    QueryRefused,
    /// A mirrored row that cannot be turned into a record.
    UnrestorableRow,
    /// The module answered `QSESS.RESTORE` with an error.
    RestoreRefused,
    /// The module answered `QSESS.RESTOREUSER` with an error.
    RestoreUserRefused,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MalformedRequest => "malformed_request",
            Refusal::QueryRefused => "query_refused",
            Refusal::UnrestorableRow => "unrestorable_row",
            Refusal::RestoreRefused => "restore_refused",
            Refusal::RestoreUserRefused => "restoreuser_refused",
        }
    }
}

/// Counts every refusal and logs it, as a warning at most once per [`WARN_EVERY`] per reason.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// Per reason: when it was last logged as a warning, and how many came since.
    last_warned: HashMap<Refusal, (Option<Instant>, u64)>,
}

impl Refusals {
    /// `detail` must never hold a session id or a user id: it says what was wrong, not with what.
    pub(crate) fn record(&mut self, refusal: Refusal, detail: &str) {
        metrics::counter!("qsess_syncd_reload_refused_total", "reason" => refusal.label()).increment(1);
        let now = Instant::now();
        let entry = self.last_warned.entry(refusal).or_insert((None, 0));
        entry.1 += 1;
        if entry.0.is_none_or(|warned| now.duration_since(warned) >= WARN_EVERY) {
            tracing::warn!(
                reason = refusal.label(),
                count = entry.1,
                detail,
                "the loader skipped a request it cannot answer; it carries on"
            );
            *entry = (Some(now), 0);
        } else {
            tracing::debug!(reason = refusal.label(), detail, "the loader skipped a request it cannot answer");
        }
    }
}

/// The module's error reply, code and message, for a log line (qsess's errors never echo ids).
pub(crate) fn server_error_text(error: &redis::ServerError) -> String {
    match error.details() {
        Some(details) => format!("{} {details}", error.code()),
        None => error.code().to_owned(),
    }
}
