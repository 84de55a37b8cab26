//! Removes rows whose sessions expired more than the grace margin ago, in small batches on a timer.

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

/// Deletes expired rows until none are left; returns how many.
pub async fn purge_expired(client: &Client, config: &PurgeConfig) -> Result<u64, Error> {
    let grace_seconds = config.grace.as_secs_f64();
    let mut total = 0;
    loop {
        let deleted = client.execute(PURGE_EXPIRED, &[&grace_seconds, &config.batch_rows]).await?;
        total += deleted;
        if deleted < config.batch_rows as u64 {
            break;
        }
    }
    if total > 0 {
        tracing::info!(rows = total, "purged expired sessions");
    }
    metrics::counter!("qsess_syncd_purged_rows_total").increment(total);
    Ok(total)
}
