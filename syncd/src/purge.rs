//! Removes rows whose sessions expired more than the grace margin ago, and refused changes past their
//! retention, in small batches on a timer.
//!
//! A refused change's payload (`fields`: for a `set`, the whole record with the session's data) is
//! erased on the same rule as a row, `grace` after the session would have expired (after the refusal
//! when the change does not say), so a refusal never keeps data longer than the mirror would; the rest
//! of it stays for `rejected_retention` after the refusal, for an operator to see what and why.

use crate::config::PurgeConfig;
use crate::error::Error;
use tokio_postgres::Client;

const PURGE_EXPIRED: &str = "
delete from qsess.sessions
where handle in (
    select handle from qsess.sessions
    where expires_at < now() - make_interval(secs => $1::float8)
    limit $2
)";

const ERASE_REJECTED_PAYLOADS: &str = "
update qsess.rejected_changes set fields = '\\x', payload_erased_at = now()
where id in (
    select id from qsess.rejected_changes
    where payload_erased_at is null
      and coalesce(session_expires_at, rejected_at) < now() - make_interval(secs => $1::float8)
    limit $2
)";

const PURGE_REJECTED: &str = "
delete from qsess.rejected_changes
where id in (
    select id from qsess.rejected_changes
    where rejected_at < now() - make_interval(secs => $1::float8)
    limit $2
)";

/// What one purge did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// Expired session rows deleted.
    pub sessions: u64,
    /// Refused changes whose payload was erased.
    pub rejected_payloads_erased: u64,
    /// Refused changes deleted.
    pub rejected_changes: u64,
}

/// Deletes expired rows until none are left; returns how many.
pub async fn purge_expired(client: &Client, config: &PurgeConfig) -> Result<u64, Error> {
    let total = in_batches(client, PURGE_EXPIRED, config.grace.as_secs_f64(), config.batch_rows).await?;
    if total > 0 {
        tracing::info!(rows = total, "purged expired sessions");
    }
    metrics::counter!("qsess_syncd_purged_rows_total").increment(total);
    Ok(total)
}

/// Erases the payloads of refused changes whose sessions are over, then deletes refused changes
/// older than the retention; returns (erased, deleted).
pub async fn purge_rejected(client: &Client, config: &PurgeConfig) -> Result<(u64, u64), Error> {
    let erased = in_batches(client, ERASE_REJECTED_PAYLOADS, config.grace.as_secs_f64(), config.batch_rows).await?;
    let deleted =
        in_batches(client, PURGE_REJECTED, config.rejected_retention.as_secs_f64(), config.batch_rows).await?;
    if erased > 0 || deleted > 0 {
        tracing::info!(erased, deleted, "purged refused changes in qsess.rejected_changes");
    }
    metrics::counter!("qsess_syncd_rejected_payloads_erased_total").increment(erased);
    metrics::counter!("qsess_syncd_purged_rejected_changes_total").increment(deleted);
    Ok((erased, deleted))
}

/// One purge: expired sessions, then refused changes.
pub async fn purge(client: &Client, config: &PurgeConfig) -> Result<Purged, Error> {
    let sessions = purge_expired(client, config).await?;
    let (rejected_payloads_erased, rejected_changes) = purge_rejected(client, config).await?;
    Ok(Purged { sessions, rejected_payloads_erased, rejected_changes })
}

/// Runs `statement` (with an age in seconds and a batch size) until a batch affects fewer rows than
/// the batch size, so no statement holds long locks; returns the rows affected.
async fn in_batches(client: &Client, statement: &str, age_seconds: f64, batch_rows: i64) -> Result<u64, Error> {
    let mut total = 0;
    loop {
        let affected = client.execute(statement, &[&age_seconds, &batch_rows]).await?;
        total += affected;
        if affected < batch_rows as u64 {
            return Ok(total);
        }
    }
}
