//! The loader on a cluster primary: holds its own node's lease, answers the misses of the slots that
//! node serves, and the user reloads of those slots.
//!
//! As on a standalone server (`reload.rs`, whose lookups and answers it shares), but every slot has
//! its own miss stream and a read across slots is refused: the watch (`cluster_watch.rs`) says which
//! miss streams got requests, and each is read with its own `XREAD` from where the loader left it, in
//! one pipeline. A restore answered `MOVED`/`ASK` (the slot left this node meanwhile) is dropped
//! quietly: the waiting client's timeout answers it, as it would without a loader.

use crate::cluster_node::{server_error, ErrorClass};
use crate::cluster_watch::StreamWatch;
use crate::config::RetryConfig;
use crate::error::Error;
use crate::mirror_sink;
use crate::reload::{answer_misses, LoaderLease, Refusals, MAX_BATCH, READ_BLOCK, SELECT_SESSIONS};
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::stream_entry::EntryId;
use crate::stream_source::{self, Layout};
use qsess_record::Handle;
use redis::aio::MultiplexedConnection;
use redis::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How far before attaching the loader starts reading a miss stream it meets for the first time, in
/// ms of the node's clock (stream ids) against the daemon's, which runs beside it. A request written
/// before the lease was held was answered nil at once; one a little older than that is answered
/// again, which is harmless.
const FIRST_READ_MARGIN_MS: u64 = 1_000;

/// Runs the loader of one cluster primary until shutdown, reconnecting with backoff (capped at
/// [`RENEW_EVERY`], as on a standalone server); detaches on the way out.
pub async fn run(
    redis_url: String,
    database_url: String,
    retry: RetryConfig,
    layout: Layout,
    watch: Arc<StreamWatch>,
    shutdown: Shutdown,
) {
    let loader = ClusterLoader { redis_url, database_url, layout, watch };
    crate::reload::keep_loader_attached(&loader.redis_url, retry, shutdown, &loader).await;
}

struct ClusterLoader {
    redis_url: String,
    database_url: String,
    layout: Layout,
    watch: Arc<StreamWatch>,
}

impl crate::reload::LoaderAttachment for ClusterLoader {
    fn serve<'a>(
        &'a self,
        shutdown: &'a mut Shutdown,
        backoff: &'a mut Backoff,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send + 'a {
        serve(&self.redis_url, &self.database_url, &self.layout, &self.watch, shutdown, backoff)
    }
}

async fn serve(
    redis_url: &str,
    database_url: &str,
    layout: &Layout,
    watch: &StreamWatch,
    shutdown: &mut Shutdown,
    backoff: &mut Backoff,
) -> Result<(), Error> {
    let client = stream_source::open_client(redis_url)?;
    let mut connection = stream_source::connect(&client).await?;
    let current = Layout::read(&mut connection).await?;
    if current != *layout {
        return Err(Error::Config(format!("qsess layout changed from {layout:?} to {current:?}; restart qsess-syncd")));
    }
    let postgres = mirror_sink::connect(database_url).await?;
    let select = postgres.prepare(SELECT_SESSIONS).await?;
    let mut lease = LoaderLease::attach(&client, &mut connection, database_url, layout).await?;
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let mut cursors = MissCursors::new(EntryId { ms: now_ms.saturating_sub(FIRST_READ_MARGIN_MS), seq: 0 });
    // Every miss stream is read once from the start point, so a request made between attaching and the
    // watch's next news is not missed.
    watch.request_everything();
    let mut refusals = Refusals::default();
    let mut to_read: BTreeSet<u16> = BTreeSet::new();
    tracing::info!("attached as the loader of this cluster node");
    while !shutdown.is_requested() {
        lease.keep(&mut connection, backoff).await?;
        let found = watch.loader.take();
        if let Some(every) = &found.every {
            cursors.keep_only(every);
            to_read.extend(every);
        }
        to_read.extend(found.written);
        if to_read.is_empty() {
            watch.loader.wait(READ_BLOCK).await;
            continue;
        }
        let (misses, unfinished) = read_misses(&mut connection, layout, &to_read, &mut cursors, watch).await?;
        to_read = unfinished;
        if !misses.is_empty() {
            answer_misses(&mut connection, &postgres, &select, layout, &misses, &mut refusals).await?;
        }
    }
    Ok(())
}

/// Where the loader left each slot's miss stream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MissCursors {
    /// Where a stream met for the first time is read from.
    start: EntryId,
    last: BTreeMap<u16, EntryId>,
}

impl MissCursors {
    fn new(start: EntryId) -> MissCursors {
        MissCursors { start, last: BTreeMap::new() }
    }

    fn after(&self, slot: u16) -> EntryId {
        self.last.get(&slot).copied().unwrap_or(self.start)
    }

    fn advance(&mut self, slot: u16, id: EntryId) {
        let last = self.last.entry(slot).or_insert(id);
        *last = (*last).max(id);
    }

    /// Forgets the streams of slots this node no longer lists: if a slot comes back, its stream is read
    /// from the start point again (requests made elsewhere meanwhile were that node's to answer).
    fn keep_only(&mut self, listed: &BTreeSet<u16>) {
        self.last.retain(|slot, _| listed.contains(slot));
    }

    fn forget(&mut self, slot: u16) {
        self.last.remove(&slot);
    }
}

/// Reads the miss streams of `slots`, one `XREAD` each in one pipeline: the requests, deduplicated, and
/// the slots that may have more (a full read, or a node that asked to try again).
async fn read_misses(
    connection: &mut MultiplexedConnection,
    layout: &Layout,
    slots: &BTreeSet<u16>,
    cursors: &mut MissCursors,
    watch: &StreamWatch,
) -> Result<(Vec<(u32, Handle)>, BTreeSet<u16>), Error> {
    let keys: Vec<String> = slots.iter().map(|slot| layout.miss_stream(u32::from(*slot))).collect();
    let mut pipeline = redis::pipe();
    pipeline.ignore_errors();
    for (slot, key) in slots.iter().zip(&keys) {
        pipeline.cmd("XREAD").arg("COUNT").arg(MAX_BATCH).arg("STREAMS").arg(key).arg(cursors.after(*slot).to_string());
    }
    let replies: Vec<Value> = pipeline.query_async(connection).await?;
    let mut misses = Vec::new();
    let mut unfinished = BTreeSet::new();
    for ((slot, key), reply) in slots.iter().zip(&keys).zip(&replies) {
        if let Value::ServerError(error) = reply {
            match ErrorClass::of(error) {
                ErrorClass::SlotElsewhere => {
                    cursors.forget(*slot);
                    watch.request_everything();
                }
                ErrorClass::TryLater => {
                    unfinished.insert(*slot);
                }
                ErrorClass::NoGroup | ErrorClass::Other => return Err(server_error(error)),
            }
            continue;
        }
        let entries = stream_source::parse_read_reply(reply, std::slice::from_ref(key))?;
        if entries.len() >= MAX_BATCH {
            unfinished.insert(*slot);
        }
        for entry in entries {
            cursors.advance(*slot, entry.id);
            let handle =
                entry.fields.iter().find(|(name, _)| name == b"h").and_then(|(_, value)| Handle::parse(value).ok());
            if let Some(handle) = handle {
                let miss = (u32::from(*slot), handle);
                if !misses.contains(&miss) {
                    misses.push(miss);
                }
            }
        }
    }
    Ok((misses, unfinished))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miss_streams_are_read_from_where_the_loader_left_them() {
        let start = EntryId { ms: 1_000, seq: 0 };
        let mut cursors = MissCursors::new(start);
        assert_eq!(cursors.after(3), start, "a stream met for the first time starts at the start point");
        cursors.advance(3, EntryId { ms: 1_500, seq: 2 });
        cursors.advance(3, EntryId { ms: 1_200, seq: 0 });
        assert_eq!(cursors.after(3), EntryId { ms: 1_500, seq: 2 }, "never backwards");
        cursors.advance(9, EntryId { ms: 2_000, seq: 0 });
        cursors.keep_only(&BTreeSet::from([9]));
        assert_eq!(cursors.after(3), start, "a slot this node no longer lists starts over");
        assert_eq!(cursors.after(9), EntryId { ms: 2_000, seq: 0 });
        cursors.forget(9);
        assert_eq!(cursors.after(9), start);
    }
}
