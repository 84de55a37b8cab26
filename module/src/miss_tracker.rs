//! Misses waiting for the loader, kept only on the primary, so that each id is requested once however
//! many clients wait for it. (Ids the loader reported missing are remembered in the keyspace, as
//! `<prefix>:{B}:n:<handle>` keys, because waiters can only be woken by a key that exists.)

use qsess_record::Handle;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Most misses tracked at once; losing an entry costs at most one duplicate request.
const CAPACITY: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct MissTracker {
    in_flight: HashMap<Handle, u64>,
}

impl MissTracker {
    /// Records a miss; true when no request for this id is in flight, i.e. one must be sent.
    pub(crate) fn start_request(&mut self, handle: Handle, now_ms: u64, until_ms: u64) -> bool {
        if self.in_flight.get(&handle).is_some_and(|&pending_until| pending_until > now_ms) {
            return false;
        }
        if self.in_flight.len() >= CAPACITY {
            self.in_flight.retain(|_, until_ms| *until_ms > now_ms);
        }
        if self.in_flight.len() >= CAPACITY {
            self.in_flight.clear();
        }
        self.in_flight.insert(handle, until_ms);
        true
    }

    /// The loader answered for this id.
    pub(crate) fn finish(&mut self, handle: &Handle) {
        self.in_flight.remove(handle);
    }
}

static TRACKER: OnceLock<Mutex<MissTracker>> = OnceLock::new();

/// The tracker. Commands run one at a time on Redis's main thread, so the lock is never contended.
pub(crate) fn tracker() -> MutexGuard<'static, MissTracker> {
    TRACKER.get_or_init(Mutex::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_per_id_until_it_is_answered_or_times_out() {
        let mut tracker = MissTracker::default();
        let handle = Handle::from_session_id(b"sid");
        assert!(tracker.start_request(handle, 1_000, 1_250));
        assert!(!tracker.start_request(handle, 1_100, 1_350));
        assert!(tracker.start_request(handle, 1_250, 1_500), "a timed-out request is sent again");
        tracker.finish(&handle);
        assert!(tracker.start_request(handle, 1_301, 1_551));
    }
}
