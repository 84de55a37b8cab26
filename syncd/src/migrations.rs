//! The mirror's schema: the versioned SQL files of `sql/`, embedded in the binary and applied in order.
//! Released files are never edited; refinery refuses to run when an applied file changed.

use crate::error::Error;
use crate::mirror_sink;

mod embedded {
    refinery::embed_migrations!("../sql");
}

/// Applies every migration not yet applied; returns how many ran. Idempotent.
pub async fn migrate(database_url: &str) -> Result<usize, Error> {
    let mut client = mirror_sink::connect(database_url).await?;
    // Keep refinery's bookkeeping inside our schema, next to the tables it describes.
    client.batch_execute("create schema if not exists qsess").await?;
    let report =
        embedded::migrations::runner().set_migration_table_name("qsess.schema_history").run_async(&mut client).await?;
    for migration in report.applied_migrations() {
        tracing::info!(version = migration.version(), name = migration.name(), "applied migration");
    }
    Ok(report.applied_migrations().len())
}
