//! Which buckets' streams got entries since qsess-syncd last asked (`QSESS.STREAMS`).
//!
//! On Redis Cluster every hash slot with sessions has its own change stream and miss stream, and a
//! multi-key read across slots is refused, so the daemon reads each stream with its own command.
//! This set tells it which of a node's thousands of streams have something new, so it need not poll
//! them all. It lives in memory only: after a restart, a failover or a resharding the daemon asks for
//! every stream (`QSESS.STREAMS ALL`), which reads the keys themselves.

use crate::cluster_slots::SlotSet;
use std::sync::Mutex;

static WRITTEN_BUCKETS: Mutex<Option<SlotSet>> = Mutex::new(None);

/// Notes that `bucket`'s change stream or miss stream got an entry.
pub(crate) fn note_stream_written(bucket: u32) {
    if let Ok(mut written) = WRITTEN_BUCKETS.lock() {
        written.get_or_insert_with(SlotSet::empty).insert(bucket as u16);
    }
}

/// The buckets noted since the previous call, forgetting them.
pub(crate) fn take_written_buckets() -> SlotSet {
    WRITTEN_BUCKETS.lock().ok().and_then(|mut written| written.take()).unwrap_or_else(SlotSet::empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_buckets_are_reported_once() {
        note_stream_written(3);
        note_stream_written(16_383);
        note_stream_written(3);
        assert_eq!(take_written_buckets().iter().collect::<Vec<_>>(), vec![3, 16_383]);
        assert_eq!(take_written_buckets().len(), 0);
    }
}
