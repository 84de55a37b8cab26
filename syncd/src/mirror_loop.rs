//! The mirror loop: read a batch, commit it to Postgres, acknowledge it, trim; repeat until shutdown.
//!
//! Nothing is acknowledged before Postgres committed it, so a crash at any point leaves the batch
//! pending and the next start re-reads it; the version guard makes the replay harmless.

use crate::change_batch::FoldedBatch;
use crate::config::RunConfig;
use crate::error::Error;
use crate::mirror_sink::Mirror;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::stream_entry::StreamEntry;
use crate::stream_source::{ChangeStreams, READ_BLOCK};
use std::time::Instant;

pub async fn run(config: &RunConfig, mut shutdown: Shutdown) -> Result<(), Error> {
    let client = redis::Client::open(config.redis_url.as_str())?;
    let mut streams = ChangeStreams::new(client, &config.group, &config.consumer);
    let mut mirror = Mirror::new(&config.database_url);
    loop {
        if shutdown.is_requested() {
            break;
        }
        let Some(entries) = read_batch(config, &mut streams, &mut shutdown).await? else { break };
        if entries.is_empty() {
            continue;
        }
        let started = Instant::now();
        let batch = FoldedBatch::fold(&entries);
        // Once read, a batch is finished even if shutdown is requested meanwhile: commit, then ack.
        commit(config, &mut mirror, &streams, &batch).await?;
        acknowledge(config, &mut streams, &entries).await?;
        metrics::counter!("qsess_syncd_changes_mirrored_total").increment(entries.len() as u64);
        metrics::counter!("qsess_syncd_batches_total").increment(1);
        metrics::histogram!("qsess_syncd_batch_entries").record(entries.len() as f64);
        metrics::histogram!("qsess_syncd_batch_seconds").record(started.elapsed().as_secs_f64());
        tracing::debug!(entries = entries.len(), sessions = batch.changes.len(), "mirrored batch");
    }
    tracing::info!("mirror loop stopped; every batch read was committed and acknowledged");
    Ok(())
}

/// Fills a batch up to the size limit, waiting at most `max_wait` after its first entry.
/// `None` when shutdown was requested before anything was read.
async fn read_batch(
    config: &RunConfig,
    streams: &mut ChangeStreams,
    shutdown: &mut Shutdown,
) -> Result<Option<Vec<StreamEntry>>, Error> {
    let mut entries: Vec<StreamEntry> = Vec::new();
    let mut first_arrival: Option<Instant> = None;
    let mut backoff = Backoff::new(config.retry.clone());
    loop {
        let room = config.batch.max_changes - entries.len();
        let block = if entries.is_empty() { Some(READ_BLOCK) } else { None };
        let read = tokio::select! {
            read = streams.read(room, block) => read,
            _ = shutdown.requested(), if entries.is_empty() => return Ok(None),
        };
        match read {
            Ok(mut more) => {
                backoff = Backoff::new(config.retry.clone());
                let got_any = !more.is_empty();
                entries.append(&mut more);
                if entries.is_empty() {
                    return Ok(Some(entries));
                }
                let first = *first_arrival.get_or_insert_with(Instant::now);
                if !got_any || entries.len() >= config.batch.max_changes || first.elapsed() >= config.batch.max_wait {
                    return Ok(Some(entries));
                }
            }
            Err(error) if error.is_retryable() => {
                streams.reset();
                metrics::counter!("qsess_syncd_retries_total", "target" => "redis").increment(1);
                tracing::warn!(error = %error, attempt = backoff.attempts(), "reading the change streams failed; retrying");
                if !entries.is_empty() {
                    // Entries already read are delivered and pending; commit them rather than wait.
                    return Ok(Some(entries));
                }
                if !backoff.wait(shutdown).await {
                    return Ok(None);
                }
            }
            Err(error) => return Err(error),
        }
    }
}

async fn commit(
    config: &RunConfig,
    mirror: &mut Mirror,
    streams: &ChangeStreams,
    batch: &FoldedBatch,
) -> Result<(), Error> {
    let mut backoff = Backoff::new(config.retry.clone());
    loop {
        match mirror.apply(batch, streams.keys()).await {
            Ok(outcome) => {
                if outcome.rejected > 0 {
                    metrics::counter!("qsess_syncd_rejected_changes_total").increment(outcome.rejected as u64);
                    tracing::error!(rejected = outcome.rejected, "changes recorded in qsess.rejected_changes");
                }
                return Ok(());
            }
            Err(error) if error.is_retryable() => {
                mirror.reset();
                metrics::counter!("qsess_syncd_retries_total", "target" => "postgres").increment(1);
                tracing::warn!(error = %error, attempt = backoff.attempts(), "writing to postgres failed; retrying");
                // Shutdown does not cut this short: the batch is read and must be committed first.
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn acknowledge(config: &RunConfig, streams: &mut ChangeStreams, entries: &[StreamEntry]) -> Result<(), Error> {
    let mut backoff = Backoff::new(config.retry.clone());
    loop {
        let result = match streams.ack(entries).await {
            Ok(()) => streams.trim(entries).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(error) if error.is_retryable() => {
                streams.reset();
                metrics::counter!("qsess_syncd_retries_total", "target" => "redis").increment(1);
                tracing::warn!(error = %error, attempt = backoff.attempts(), "acknowledging failed; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(error) => return Err(error),
        }
    }
}
