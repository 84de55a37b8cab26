//! Which of a cluster node's per-slot streams have something to read: `QSESS.STREAMS`, polled every few
//! milliseconds by one task, its news handed to the mirror reader and to the loader.
//!
//! A cluster has up to 16384 change streams and as many miss streams, and the server refuses a read
//! across slots, so polling them all is out. The module remembers which buckets got an entry since the
//! previous `QSESS.STREAMS` and forgets them once told: exactly one task per daemon may ask, or the
//! mirror and the loader would take each other's news. `QSESS.STREAMS ALL` (every stream of a slot this
//! node serves) is the safety net: when the watch starts or reconnects, when a reader met a `MOVED` or
//! `ASK`, and every few seconds.

use crate::config::RetryConfig;
use crate::error::Error;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::stream_source;
use qsess_record::BucketTags;
use redis::aio::MultiplexedConnection;
use redis::Value;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often the watch asks for news: a change waits at most this long before the mirror reads it, and
/// one small command per 10 ms costs a node nothing.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// How often every stream is listed anyway, in case news was lost (another client asked, a slot arrived
/// by resharding without a new entry).
const EVERYTHING_EVERY: Duration = Duration::from_secs(5);
/// The shortest interval between two listings asked for by readers: a reshard of hundreds of slots
/// brings a `MOVED` per slot, and each listing makes the reader look at every stream once.
const EVERYTHING_AT_MOST_EVERY: Duration = Duration::from_millis(250);

/// What the watch found since a consumer last looked, as slots (the buckets of a cluster).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found {
    /// Slots whose change or miss stream got an entry.
    pub written: BTreeSet<u16>,
    /// The newest full listing (`QSESS.STREAMS ALL`), if one came: every slot this node serves whose
    /// change or miss stream exists. A stream not listed is not this node's to read.
    pub every: Option<BTreeSet<u16>>,
}

impl Found {
    pub fn is_empty(&self) -> bool {
        self.written.is_empty() && self.every.is_none()
    }
}

/// One consumer's news, kept until it takes them; a consumer waits on it when it has nothing to do.
#[derive(Debug, Default)]
pub struct Inbox {
    found: Mutex<Found>,
    ready: Notify,
}

impl Inbox {
    fn deliver(&self, slots: &[u16], every: bool) {
        if slots.is_empty() && !every {
            return;
        }
        {
            let mut found = self.found.lock().unwrap_or_else(PoisonError::into_inner);
            if every {
                found.every = Some(slots.iter().copied().collect());
            } else {
                found.written.extend(slots.iter().copied());
            }
        }
        // One permit is kept when nobody waits, so news that lands between `take` and `wait` still wakes.
        self.ready.notify_one();
    }

    /// Everything found since the previous call.
    pub fn take(&self) -> Found {
        std::mem::take(&mut *self.found.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Waits until news arrives or `timeout` passes.
    pub async fn wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.ready.notified()).await;
    }
}

/// The watch's two consumers and their way to ask for a full listing.
#[derive(Debug, Default)]
pub struct StreamWatch {
    /// The mirror reader's news (change streams).
    pub mirror: Inbox,
    /// The loader's news (miss streams).
    pub loader: Inbox,
    everything_requested: AtomicBool,
}

impl StreamWatch {
    pub fn new() -> Arc<StreamWatch> {
        Arc::new(StreamWatch::default())
    }

    /// Asks for a full listing soon (after a `MOVED` or `ASK`, or a reconnect).
    pub fn request_everything(&self) {
        self.everything_requested.store(true, Ordering::Relaxed);
    }

    /// Polls `QSESS.STREAMS` until shutdown. Lost connections are retried; an error that waiting cannot
    /// heal (an older module without the command, an ACL without it) ends the watch.
    pub async fn run(
        self: Arc<Self>,
        client: redis::Client,
        retry: RetryConfig,
        mut shutdown: Shutdown,
    ) -> Result<(), Error> {
        let mut backoff = Backoff::new(retry);
        let mut connection: Option<MultiplexedConnection> = None;
        let mut last_everything: Option<Instant> = None;
        while !shutdown.is_requested() {
            if connection.is_none() {
                match stream_source::connect(&client).await {
                    Ok(opened) => {
                        connection = Some(opened);
                        // What happened while disconnected is unknown: list everything.
                        last_everything = None;
                    }
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(error = %crate::error::chain(&error), "watching the cluster node's streams failed; retrying");
                        if !backoff.wait(&mut shutdown).await {
                            break;
                        }
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            }
            let Some(open) = connection.as_mut() else { continue };
            let everything = match last_everything {
                None => true,
                Some(at) => {
                    at.elapsed() >= EVERYTHING_EVERY
                        || (at.elapsed() >= EVERYTHING_AT_MOST_EVERY
                            && self.everything_requested.swap(false, Ordering::Relaxed))
                }
            };
            match ask(open, everything).await {
                Ok(slots) => {
                    backoff.reset();
                    if everything {
                        last_everything = Some(Instant::now());
                        self.everything_requested.store(false, Ordering::Relaxed);
                    }
                    self.mirror.deliver(&slots, everything);
                    self.loader.deliver(&slots, everything);
                }
                Err(error) if error.is_retryable() => {
                    tracing::warn!(error = %crate::error::chain(&error), "asking the cluster node for its streams failed; retrying");
                    connection = None;
                    if !backoff.wait(&mut shutdown).await {
                        break;
                    }
                    continue;
                }
                Err(error) => return Err(error),
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = shutdown.requested() => break,
            }
        }
        Ok(())
    }
}

/// `QSESS.STREAMS` or `QSESS.STREAMS ALL`, as slots.
async fn ask(connection: &mut MultiplexedConnection, everything: bool) -> Result<Vec<u16>, Error> {
    let mut command = redis::cmd("QSESS.STREAMS");
    if everything {
        command.arg("ALL");
    }
    let reply: Value = command.query_async(connection).await?;
    parse_streams_reply(&reply)
}

/// The slots a `QSESS.STREAMS` reply names (an array of bucket tags). A tag that is not one qsess
/// writes on a cluster is skipped: a standalone module's decimal tags, or anything unexpected.
pub fn parse_streams_reply(reply: &Value) -> Result<Vec<u16>, Error> {
    let items = match reply {
        Value::Array(items) | Value::Set(items) => items,
        Value::Nil => return Ok(Vec::new()),
        other => return Err(Error::UnexpectedReply(format!("QSESS.STREAMS replied {other:?}, not an array"))),
    };
    let mut slots = Vec::with_capacity(items.len());
    for item in items {
        let tag = match item {
            Value::BulkString(bytes) => bytes.as_slice(),
            Value::SimpleString(text) => text.as_bytes(),
            other => return Err(Error::UnexpectedReply(format!("QSESS.STREAMS tag {other:?} is not a string"))),
        };
        match BucketTags::ClusterSlot.bucket_of_tag(tag, 0).and_then(|slot| u16::try_from(slot).ok()) {
            Some(slot) => slots.push(slot),
            None => tracing::debug!(tag = %String::from_utf8_lossy(tag), "QSESS.STREAMS named a tag that is no slot's"),
        }
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use qsess_record::slot_tag;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn a_streams_reply_is_a_list_of_slot_tags() {
        let reply = Value::Array(vec![bulk(slot_tag(0)), bulk(slot_tag(16_383)), bulk(slot_tag(5_000))]);
        assert_eq!(parse_streams_reply(&reply).unwrap(), vec![0, 16_383, 5_000]);
        assert!(parse_streams_reply(&Value::Array(vec![])).unwrap().is_empty());
        assert!(parse_streams_reply(&Value::Int(1)).is_err());
        assert!(parse_streams_reply(&Value::Array(vec![Value::Int(1)])).is_err());
    }

    #[test]
    fn tags_qsess_does_not_write_are_skipped() {
        // "{x}" is no tag, and a slot is named by its one canonical tag only.
        let not_canonical = (0..)
            .map(|n: u32| format!("zz{n}"))
            .find(|tag| slot_tag(qsess_record::key_slot(tag.as_bytes())) != tag)
            .unwrap();
        let reply = Value::Array(vec![bulk("{x}"), bulk(&not_canonical), bulk(""), bulk(slot_tag(42))]);
        assert_eq!(parse_streams_reply(&reply).unwrap(), vec![42]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_inbox_keeps_news_until_taken_and_wakes_its_consumer() {
        let inbox = Inbox::default();
        inbox.deliver(&[3, 1], false);
        inbox.deliver(&[3, 7], false);
        // News delivered before the wait still wakes it.
        tokio::time::timeout(Duration::from_millis(1), inbox.wait(Duration::from_secs(60))).await.unwrap();
        let found = inbox.take();
        assert_eq!(found.written.into_iter().collect::<Vec<_>>(), vec![1, 3, 7]);
        assert_eq!(found.every, None);
        assert!(inbox.take().is_empty());

        inbox.deliver(&[9], true);
        inbox.deliver(&[2], true);
        inbox.deliver(&[], false);
        let found = inbox.take();
        assert_eq!(found.every, Some(BTreeSet::from([2])), "the newest listing replaces an older one");
        inbox.deliver(&[], true);
        assert_eq!(inbox.take().every, Some(BTreeSet::new()), "an empty listing is news too");
    }
}
