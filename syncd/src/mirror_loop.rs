//! The mirror loop: read and fold a batch, commit it to Postgres, acknowledge it, trim; repeat until
//! shutdown.
//!
//! Nothing is acknowledged before Postgres committed it, so a crash at any point leaves the batch
//! pending and the next start re-reads it; the version guard makes the replay harmless.

use crate::change_batch::FoldedBatch;
use crate::config::RunConfig;
use crate::error::Error;
use crate::mirror_sink::Mirror;
use crate::retry::{self, Backoff};
use crate::shutdown::Shutdown;
use crate::stream_entry::{EntryId, StreamEntry};
use crate::stream_source::{ChangeStreams, READ_BLOCK};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Where the mirror loop reads changes and acknowledges them: every bucket's stream of a standalone
/// server ([`ChangeStreams`]), or the per-slot streams of one cluster node
/// ([`ClusterStreams`](crate::cluster_streams::ClusterStreams)). An entry's `stream` is its bucket,
/// and [`stream_names`](Self::stream_names) names the stream of every bucket.
pub trait ChangeSource: Send + 'static {
    /// Up to `max` entries: this consumer's pending ones first, then new ones, waiting up to `block`
    /// for the first when given.
    fn read(
        &mut self,
        max: usize,
        block: Option<Duration>,
    ) -> impl Future<Output = Result<Vec<StreamEntry>, Error>> + Send;
    /// Acknowledges entries whose changes Postgres committed.
    fn ack(&mut self, entries: &[StreamEntry]) -> impl Future<Output = Result<(), Error>> + Send;
    /// Trims below what is acknowledged and not pending; `newest_acknowledged` is indexed by bucket.
    fn trim(&mut self, newest_acknowledged: &[Option<EntryId>]) -> impl Future<Output = Result<(), Error>> + Send;
    /// Forgets the connection after an error; the next call reconnects and re-reads pending entries.
    fn reset(&mut self);
    /// The name of every bucket's stream, indexed by bucket.
    fn stream_names(&self) -> Arc<[String]>;
}

/// How often acknowledged entries are trimmed away: often enough that the stream stays small, rarely
/// enough that trimming costs nothing next to the batches.
const TRIM_INTERVAL: Duration = Duration::from_millis(100);

/// Batches read ahead of those being committed: reading overlaps the Postgres transactions, and
/// read-ahead entries are pending, so a crash re-reads them.
const READ_AHEAD_BATCHES: usize = 2;

/// Batches committed at once, each in its own transaction on its own connection. One Postgres backend
/// is single-threaded, and under an update-heavy load it, not the daemon, is what limits the mirror;
/// two let Postgres use a second core. Order does not matter: every write is guarded by version, so
/// a newer batch committing first wins exactly as it would afterwards, and each batch is acknowledged
/// only after its own commit.
pub const COMMIT_CONNECTIONS: usize = 2;

/// Mirrors a standalone server's change streams until shutdown.
pub async fn run(config: &RunConfig, shutdown: Shutdown) -> Result<(), Error> {
    let client = crate::stream_source::open_client(config.redis_url.as_str())?;
    let streams = || ChangeStreams::new(client.clone(), &config.group, &config.consumer);
    run_with(config, shutdown, streams(), streams).await
}

/// The mirror loop over any [`ChangeSource`]: `reader` reads, and `more_sources` makes the handles
/// that acknowledge and trim, so that they never wait behind a read.
pub async fn run_with<Source: ChangeSource>(
    config: &RunConfig,
    shutdown: Shutdown,
    reader: Source,
    mut more_sources: impl FnMut() -> Source,
) -> Result<(), Error> {
    let (batches, mut read_batches) = mpsc::channel::<ReadBatch>(READ_AHEAD_BATCHES);
    let reader = tokio::spawn(read_continuously(config.clone(), reader, shutdown, batches));
    let mut trimmer = more_sources();
    let mut idle_slots: Vec<CommitSlot<Source>> = (0..COMMIT_CONNECTIONS)
        .map(|_| CommitSlot { mirror: Mirror::new(&config.database_url), acknowledger: more_sources() })
        .collect();
    let mut in_flight = FuturesUnordered::new();
    let mut reading = true;
    let mut newest_untrimmed: Vec<Option<EntryId>> = Vec::new();
    let mut last_trim = Instant::now();
    let mut outcome = Ok(());
    // The reader stops at shutdown and closes the channel; every batch it read is committed first.
    loop {
        tokio::select! {
            received = read_batches.recv(), if reading && !idle_slots.is_empty() => match received {
                Some(read) => match idle_slots.pop() {
                    Some(slot) => in_flight.push(commit_and_acknowledge(config, slot, read)),
                    // The branch runs only while a slot is idle; the batch stays pending if not.
                    None => {
                        outcome = Err(Error::Internal("a batch arrived with no idle commit slot"));
                        break;
                    }
                },
                None => reading = false,
            },
            Some((slot, read, result)) = in_flight.next(), if !in_flight.is_empty() => {
                idle_slots.push(slot);
                let elapsed = match result {
                    Ok(elapsed) => elapsed,
                    Err(error) => {
                        outcome = Err(error);
                        break;
                    }
                };
                let entries = &read.batch.entries;
                for entry in entries.iter() {
                    if newest_untrimmed.len() <= entry.stream {
                        newest_untrimmed.resize(entry.stream + 1, None);
                    }
                    let newest = &mut newest_untrimmed[entry.stream];
                    *newest = (*newest).max(Some(entry.id));
                }
                if last_trim.elapsed() >= TRIM_INTERVAL || (read_batches.is_empty() && in_flight.is_empty()) {
                    match trimmer.trim(&newest_untrimmed).await {
                        Ok(()) => newest_untrimmed.clear(),
                        // Trimming only reclaims memory; the next attempt covers these entries too.
                        Err(error) => {
                            tracing::warn!(error = %crate::error::chain(&error), "trimming the change streams failed; will retry")
                        }
                    }
                    last_trim = Instant::now();
                }
                record_lag(entries);
                metrics::counter!("qsess_syncd_changes_mirrored_total").increment(entries.len() as u64);
                metrics::counter!("qsess_syncd_batches_total").increment(1);
                metrics::histogram!("qsess_syncd_batch_entries").record(entries.len() as f64);
                metrics::histogram!("qsess_syncd_batch_seconds").record(elapsed.as_secs_f64());
                tracing::debug!(entries = entries.len(), sessions = read.batch.changes.len(), "mirrored batch");
            },
            else => break,
        }
    }
    // On an error, batches still in flight are dropped with their transactions (rolled back) and stay
    // pending in Redis: the next start re-reads them, as after a crash.
    drop(in_flight);
    if outcome.is_err() {
        reader.abort();
    }
    match reader.await {
        Ok(Err(error)) if outcome.is_ok() => outcome = Err(error),
        _ => {}
    }
    if outcome.is_ok() {
        tracing::info!("mirror loop stopped; every batch read was committed and acknowledged");
    }
    outcome
}

/// A Postgres connection and a Redis handle that commit and acknowledge one batch at a time.
struct CommitSlot<Source> {
    mirror: Mirror,
    acknowledger: Source,
}

/// Commits a batch, then acknowledges it; gives the slot back with the batch and how long it took.
async fn commit_and_acknowledge<Source: ChangeSource>(
    config: &RunConfig,
    mut slot: CommitSlot<Source>,
    read: ReadBatch,
) -> (CommitSlot<Source>, ReadBatch, Result<Duration, Error>) {
    let started = Instant::now();
    let result = match commit(config, &mut slot.mirror, &read.stream_names, &read.batch).await {
        Ok(()) => acknowledge(config, &mut slot.acknowledger, &read.batch.entries).await,
        Err(error) => Err(error),
    };
    (slot, read, result.map(|()| started.elapsed()))
}

/// Entries read together, already folded, with the names of the streams their `stream` indexes
/// refer to. The reader folds, so folding one batch overlaps committing the one before.
struct ReadBatch {
    batch: FoldedBatch,
    stream_names: Arc<[String]>,
}

/// Reads batches until shutdown, handing each to the committer; the channel's bound is the read-ahead.
async fn read_continuously<Source: ChangeSource>(
    config: RunConfig,
    mut streams: Source,
    mut shutdown: Shutdown,
    batches: mpsc::Sender<ReadBatch>,
) -> Result<(), Error> {
    loop {
        let Some(entries) = read_batch(&config, &mut streams, &mut shutdown).await? else { return Ok(()) };
        if entries.is_empty() {
            continue;
        }
        let stream_names = streams.stream_names();
        let batch = FoldedBatch::fold(entries);
        if batches.send(ReadBatch { batch, stream_names }).await.is_err() {
            // The committer stopped on an error; what was read stays pending for the next start.
            return Ok(());
        }
    }
}

/// How long each change took from the module's write (its stream id's time) to its acknowledgement.
fn record_lag(entries: &[StreamEntry]) {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let lag = metrics::histogram!("qsess_syncd_lag_seconds");
    for entry in entries {
        lag.record(now_ms.saturating_sub(entry.id.ms) as f64 / 1000.0);
    }
}

/// Fills a batch up to the size limit, waiting at most `max_wait` after its first entry.
/// `None` when shutdown was requested before anything was read.
async fn read_batch<Source: ChangeSource>(
    config: &RunConfig,
    streams: &mut Source,
    shutdown: &mut Shutdown,
) -> Result<Option<Vec<StreamEntry>>, Error> {
    let mut entries: Vec<StreamEntry> = Vec::new();
    let mut first_arrival: Option<Instant> = None;
    let mut backoff = Backoff::new(config.retry.clone());
    loop {
        if entries.is_empty() && shutdown.is_requested() {
            return Ok(None);
        }
        let room = config.batch.max_changes - entries.len();
        let block = if entries.is_empty() { Some(READ_BLOCK) } else { None };
        // A read is never abandoned half-way: Redis marks entries pending as it sends them, so a
        // dropped reply would leave them for the next start. Shutdown waits for at most one READ_BLOCK.
        let read = streams.read(room, block).await;
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
                tracing::warn!(error = %crate::error::chain(&error), attempt = backoff.attempts(), "reading the change streams failed; retrying");
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
    stream_names: &[String],
    batch: &FoldedBatch,
) -> Result<(), Error> {
    // Shutdown does not cut the retries short: the batch is read and must be committed first.
    let outcome = retry::retry_through_shutdown(
        &config.retry,
        mirror,
        async |mirror: &mut Mirror| mirror.apply(batch, stream_names).await,
        |mirror, error, attempt| {
            mirror.reset();
            metrics::counter!("qsess_syncd_retries_total", "target" => "postgres").increment(1);
            tracing::warn!(error = %crate::error::chain(error), attempt, "writing to postgres failed; retrying");
        },
    )
    .await?;
    if outcome.rejected > 0 {
        metrics::counter!("qsess_syncd_rejected_changes_total").increment(outcome.rejected as u64);
        tracing::error!(rejected = outcome.rejected, "changes recorded in qsess.rejected_changes");
    }
    Ok(())
}

async fn acknowledge<Source: ChangeSource>(
    config: &RunConfig,
    streams: &mut Source,
    entries: &[StreamEntry],
) -> Result<(), Error> {
    retry::retry_through_shutdown(
        &config.retry,
        streams,
        async |streams: &mut Source| streams.ack(entries).await,
        |streams, error, attempt| {
            streams.reset();
            metrics::counter!("qsess_syncd_retries_total", "target" => "redis").increment(1);
            tracing::warn!(error = %crate::error::chain(error), attempt, "acknowledging failed; retrying");
        },
    )
    .await
}
