//! The Redis side of the mirror on a cluster node: every slot's change stream read with its own
//! `XREADGROUP`, pipelined on one connection, polled rather than blocking.
//!
//! A cluster refuses a read across slots (`CROSSSLOT`), and a node may serve thousands of slots, so
//! the reader reads only the streams the watch (`cluster_watch.rs`) reported and the bookkeeping
//! (`cluster_stream_set.rs`) keeps active. Every reply is judged on its own: `MOVED`/`ASK` forgets the
//! stream (its slot moved, with the pending entries, to a node whose daemon re-reads them), `TRYAGAIN`
//! and `CLUSTERDOWN` wait a moment, `NOGROUP` recreates the group. Acknowledging and trimming follow the
//! standalone rules (`stream_source.rs`): only what Postgres committed, only below what is pending.

use crate::cluster_node::{server_error, ErrorClass};
use crate::cluster_stream_set::{PlannedRead, ReadFrom, StreamSet};
use crate::cluster_watch::StreamWatch;
use crate::error::Error;
use crate::mirror_loop::ChangeSource;
use crate::stream_entry::{EntryId, StreamEntry};
use crate::stream_source::{self, Layout};
use redis::aio::MultiplexedConnection;
use redis::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the reader pauses when a node answered `TRYAGAIN` or `CLUSTERDOWN` and nothing else had
/// entries: a slot migration or a failover takes longer than this, and the pause keeps the reader from
/// spinning through it.
const TRY_LATER_PAUSE: Duration = Duration::from_millis(50);

/// One cluster node's change streams, for reading (with the watch's news) or for acknowledging and
/// trimming (without). An entry's `stream` is its slot.
pub struct ClusterStreams {
    client: redis::Client,
    connection: Option<MultiplexedConnection>,
    layout: Layout,
    /// The change stream of every slot, indexed by slot.
    names: Arc<[String]>,
    group: String,
    consumer: String,
    /// The reader's news; `None` for the handles that acknowledge and trim.
    watch: Option<Arc<StreamWatch>>,
    streams: StreamSet,
}

impl ClusterStreams {
    /// `layout` is the node's (a cluster layout), `names` its `change_streams()`, shared by every handle.
    pub fn new(
        client: redis::Client,
        layout: Layout,
        names: Arc<[String]>,
        group: &str,
        consumer: &str,
        watch: Option<Arc<StreamWatch>>,
    ) -> ClusterStreams {
        ClusterStreams {
            client,
            connection: None,
            layout,
            names,
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            watch,
            streams: StreamSet::default(),
        }
    }

    async fn connection(&mut self) -> Result<MultiplexedConnection, Error> {
        if let Some(connection) = &self.connection {
            return Ok(connection.clone());
        }
        let mut connection = stream_source::connect(&self.client).await?;
        let layout = Layout::read(&mut connection).await?;
        if layout != self.layout {
            return Err(Error::Config(format!(
                "qsess layout changed from {:?} to {layout:?} while running; restart qsess-syncd",
                self.layout
            )));
        }
        // Whatever happened while disconnected (a crash between read and ack, a failover), every
        // stream's pending entries are read again once the watch lists it.
        self.streams.forget_everything();
        if let Some(watch) = &self.watch {
            watch.request_everything();
        }
        self.connection = Some(connection.clone());
        Ok(connection)
    }

    fn name(&self, slot: usize) -> Result<&str, Error> {
        self.names.get(slot).map(String::as_str).ok_or(Error::Internal("a stream index beyond the last slot"))
    }

    /// Forgets a stream whose slot another node serves now, and asks for a fresh listing.
    fn slot_left(&mut self, slot: u16) {
        tracing::debug!(stream = %self.names.get(usize::from(slot)).map_or("", String::as_str), "the slot is served elsewhere now; leaving its stream to that node's daemon");
        self.streams.forget(slot);
        if let Some(watch) = &self.watch {
            watch.request_everything();
        }
    }

    /// Reads up to `max` entries, waiting up to `block` for news when nothing is active.
    pub async fn read(&mut self, max: usize, block: Option<Duration>) -> Result<Vec<StreamEntry>, Error> {
        let deadline = block.map(|block| Instant::now() + block);
        loop {
            let mut connection = self.connection().await?;
            if let Some(watch) = &self.watch {
                self.streams.discover(watch.mirror.take());
            }
            let plan = self.streams.plan(max);
            let mut paused = false;
            if !plan.is_empty() {
                let (entries, try_later) = self.read_planned(&mut connection, &plan).await?;
                if !entries.is_empty() {
                    return Ok(entries);
                }
                if try_later {
                    let Some(deadline) = deadline else { return Ok(Vec::new()) };
                    tokio::time::sleep(TRY_LATER_PAUSE.min(deadline.saturating_duration_since(Instant::now()))).await;
                    paused = true;
                } else if self.streams.has_active() {
                    // Pending entries drained, or a group just created: read on without waiting.
                    continue;
                }
            }
            let (Some(deadline), Some(watch)) = (deadline, &self.watch) else { return Ok(Vec::new()) };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            if !paused {
                watch.mirror.wait(left).await;
            }
        }
    }

    /// One pipeline: per planned stream, `XGROUP CREATE` when needed, then `XREADGROUP`. Returns the
    /// entries read and whether a node asked to try again later.
    async fn read_planned(
        &mut self,
        connection: &mut MultiplexedConnection,
        plan: &[PlannedRead],
    ) -> Result<(Vec<StreamEntry>, bool), Error> {
        let mut pipeline = redis::pipe();
        // Every reply is read on its own: one moved slot must not hide the other streams' entries.
        pipeline.ignore_errors();
        for read in plan {
            let key = self.name(usize::from(read.slot))?;
            if read.create_group {
                // From id 0 and without MKSTREAM: everything in the stream is unmirrored, and a stream
                // that does not exist has nothing to mirror (creating it would write into the slot).
                pipeline.cmd("XGROUP").arg("CREATE").arg(key).arg(&self.group).arg("0");
            }
            let command = pipeline.cmd("XREADGROUP");
            command
                .arg("GROUP")
                .arg(&self.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(read.count)
                .arg("STREAMS")
                .arg(key);
            match read.from {
                ReadFrom::Pending(after) => command.arg(after.to_string()),
                ReadFrom::New => command.arg(">"),
            };
        }
        let replies: Vec<Value> = pipeline.query_async(connection).await?;
        let mut replies = replies.into_iter();
        let mut entries = Vec::new();
        let mut try_later = false;
        for read in plan {
            let slot = read.slot;
            if read.create_group {
                let created = replies.next().ok_or(Error::Internal("a pipeline reply is missing"))?;
                let group_ok = match &created {
                    Value::Okay | Value::SimpleString(_) => {
                        // Debug, not info: a cluster has a stream per slot in use, thousands of them.
                        tracing::debug!(stream = %self.name(usize::from(slot))?, group = %self.group, "created consumer group");
                        metrics::counter!("qsess_syncd_consumer_groups_created_total").increment(1);
                        true
                    }
                    Value::ServerError(error) if error.code() == "BUSYGROUP" => true,
                    Value::ServerError(error) => match ErrorClass::of(error) {
                        ErrorClass::SlotElsewhere => {
                            self.slot_left(slot);
                            false
                        }
                        ErrorClass::TryLater => {
                            try_later = true;
                            false
                        }
                        // "The XGROUP subcommand requires the key to exist": only the slot's miss
                        // stream exists, or the change stream was deleted. Nothing to mirror.
                        _ => {
                            tracing::debug!(stream = %self.name(usize::from(slot))?, error = %error, "no change stream to read");
                            self.streams.forget(slot);
                            false
                        }
                    },
                    other => return Err(Error::UnexpectedReply(format!("XGROUP CREATE replied {other:?}"))),
                };
                if group_ok {
                    self.streams.group_ready(slot);
                } else {
                    // The read that followed answers NOGROUP, or was refused for the same reason.
                    replies.next();
                    continue;
                }
            }
            let reply = replies.next().ok_or(Error::Internal("a pipeline reply is missing"))?;
            match reply {
                Value::ServerError(error) => match ErrorClass::of(&error) {
                    ErrorClass::SlotElsewhere => self.slot_left(slot),
                    ErrorClass::TryLater => try_later = true,
                    ErrorClass::NoGroup => {
                        tracing::warn!(
                            stream = %self.name(usize::from(slot))?,
                            group = %self.group,
                            "consumer group is missing (the node lost its data?); recreating it and reading every entry left in the stream"
                        );
                        self.streams.group_missing(slot);
                    }
                    ErrorClass::Other => return Err(server_error(&error)),
                },
                reply => {
                    let key = self.name(usize::from(slot))?.to_owned();
                    let mut read_entries = stream_source::parse_read_reply(&reply, std::slice::from_ref(&key))?;
                    let last = read_entries.iter().map(|entry| entry.id).max();
                    self.streams.read_returned(read, read_entries.len(), last);
                    if matches!(read.from, ReadFrom::Pending(_)) && last.is_none() {
                        tracing::debug!(stream = %key, "finished re-reading pending entries");
                    }
                    for entry in &mut read_entries {
                        entry.stream = usize::from(slot);
                    }
                    entries.append(&mut read_entries);
                }
            }
        }
        Ok((entries, try_later))
    }

    /// Acknowledges committed entries, one `XACK` per stream in one pipeline. A stream whose slot moved
    /// keeps its entries pending, and the daemon of the node that serves it now re-reads them (the
    /// version guards make the second commit a no-op). `TRYAGAIN`/`CLUSTERDOWN` are retried.
    pub async fn ack(&mut self, entries: &[StreamEntry]) -> Result<(), Error> {
        let mut per_stream: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for entry in entries {
            per_stream.entry(entry.stream).or_default().push(entry.id.to_string());
        }
        if per_stream.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        let mut pipeline = redis::pipe();
        pipeline.ignore_errors();
        for (stream, ids) in &per_stream {
            pipeline.cmd("XACK").arg(self.name(*stream)?).arg(&self.group).arg(ids);
        }
        let replies: Vec<Value> = pipeline.query_async(&mut connection).await?;
        let mut retry = None;
        for (stream, reply) in per_stream.keys().zip(&replies) {
            let Value::ServerError(error) = reply else { continue };
            match ErrorClass::of(error) {
                ErrorClass::SlotElsewhere => tracing::debug!(
                    stream = %self.name(*stream)?,
                    "the slot moved before its entries were acknowledged; the node serving it now re-reads them"
                ),
                // The group vanished with the node's data; the entries are committed, nothing is left to ack.
                ErrorClass::NoGroup => {}
                ErrorClass::TryLater => retry = Some(server_error(error)),
                ErrorClass::Other => return Err(server_error(error)),
            }
        }
        // Acknowledging twice is harmless, so a retry sends the whole pipeline again.
        retry.map_or(Ok(()), Err)
    }

    /// Trims each stream with acknowledged entries below its oldest pending entry, or below everything
    /// acknowledged when none is pending (approximate `MINID`, which never removes more than asked).
    /// A stream that moved or cannot answer now is skipped: trimming only reclaims memory.
    pub async fn trim(&mut self, newest_acknowledged: &[Option<EntryId>]) -> Result<(), Error> {
        let targets: Vec<(usize, EntryId)> =
            newest_acknowledged.iter().enumerate().filter_map(|(stream, newest)| Some((stream, (*newest)?))).collect();
        if targets.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        let mut pending = redis::pipe();
        pending.ignore_errors();
        for (stream, _) in &targets {
            pending.cmd("XPENDING").arg(self.name(*stream)?).arg(&self.group);
        }
        let summaries: Vec<Value> = pending.query_async(&mut connection).await?;
        let mut trims = redis::pipe();
        trims.ignore_errors();
        let mut trimming = 0;
        for ((stream, newest), summary) in targets.iter().zip(&summaries) {
            if let Value::ServerError(error) = summary {
                match ErrorClass::of(error) {
                    ErrorClass::Other => return Err(server_error(error)),
                    _ => continue,
                }
            }
            let mut minimum = newest.next();
            if let Some(oldest_pending) = stream_source::oldest_in_pending_summary(summary) {
                minimum = minimum.min(oldest_pending);
            }
            trims.cmd("XTRIM").arg(self.name(*stream)?).arg("MINID").arg("~").arg(minimum.to_string());
            trimming += 1;
        }
        if trimming == 0 {
            return Ok(());
        }
        let trimmed: Vec<Value> = trims.query_async(&mut connection).await?;
        for reply in &trimmed {
            if let Value::ServerError(error) = reply {
                if ErrorClass::of(error) == ErrorClass::Other {
                    return Err(server_error(error));
                }
            }
        }
        Ok(())
    }
}

impl ChangeSource for ClusterStreams {
    async fn read(&mut self, max: usize, block: Option<Duration>) -> Result<Vec<StreamEntry>, Error> {
        ClusterStreams::read(self, max, block).await
    }

    async fn ack(&mut self, entries: &[StreamEntry]) -> Result<(), Error> {
        ClusterStreams::ack(self, entries).await
    }

    async fn trim(&mut self, newest_acknowledged: &[Option<EntryId>]) -> Result<(), Error> {
        ClusterStreams::trim(self, newest_acknowledged).await
    }

    fn reset(&mut self) {
        self.connection = None;
    }

    fn stream_names(&self) -> Arc<[String]> {
        self.names.clone()
    }
}
