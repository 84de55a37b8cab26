//! The mirror's schema: the versioned SQL files of `sql/`, embedded in the binary and applied in order.
//! Released files are never edited; refinery refuses to run when an applied file changed.

use crate::error::Error;
use crate::mirror_sink;

mod embedded {
    refinery::embed_migrations!("../sql");
}

/// The advisory lock that makes daemons starting together migrate one at a time ("qsess" in ASCII).
const MIGRATION_LOCK: i64 = 0x0071_7365_7373;

/// How many times one `migrate` runs the migrations when one fails in a way that may pass next time.
const ATTEMPTS: u32 = 5;

/// Applies every migration not yet applied; returns how many ran. Idempotent, and safe to run from
/// several daemons at once (one per Redis Cluster node start together): they take turns. A migration
/// that loses a deadlock is run again (each is one transaction, rolled back): altering a table and
/// replacing a view over it takes their locks in the opposite order from a query of the view, so a
/// DBA's query can make Postgres abort the migration (seen in CI: V2 against a `select` on
/// `qsess.live_sessions` while the daemon started).
pub async fn migrate(database_url: &str) -> Result<usize, Error> {
    let mut attempt = 1;
    loop {
        match migrate_once(database_url).await {
            Err(error @ Error::Migration(_)) if attempt < ATTEMPTS && error.is_retryable() => {
                tracing::warn!(error = %crate::error::chain(&error), attempt, "a migration failed and may pass when run again; running it again");
                tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt))).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

async fn migrate_once(database_url: &str) -> Result<usize, Error> {
    let mut client = mirror_sink::connect(database_url).await?;
    // Held by this session until it ends (the connection closes with `client`), so a failed run cannot
    // leave it taken. Without it two daemons race to create the same schema and tables, and the loser
    // fails with "already exists".
    client.execute("select pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    // Keep refinery's bookkeeping inside our schema, next to the tables it describes.
    client.batch_execute("create schema if not exists qsess").await?;
    let report =
        embedded::migrations::runner().set_migration_table_name("qsess.schema_history").run_async(&mut client).await?;
    client.execute("select pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    for migration in report.applied_migrations() {
        tracing::info!(version = migration.version(), name = migration.name(), "applied migration");
    }
    Ok(report.applied_migrations().len())
}
