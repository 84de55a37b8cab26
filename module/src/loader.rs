//! The loader lease: qsess-syncd says it is there and renews the lease; only while it holds one does
//! a miss wait for a reload instead of answering nil at once.

use std::sync::atomic::{AtomicU64, Ordering};

static LEASE_UNTIL_MS: AtomicU64 = AtomicU64::new(0);

/// Grants or renews the lease until `until_ms`; 0 detaches. Who may call it is decided by the ACL
/// (`access::Caller::require_loader_role`), not here: the daemon renews and detaches from different
/// connections, so a per-connection owner would refuse its own detach.
pub(crate) fn set_lease(until_ms: u64) {
    LEASE_UNTIL_MS.store(until_ms, Ordering::Relaxed);
}

pub(crate) fn is_attached(now_ms: u64) -> bool {
    LEASE_UNTIL_MS.load(Ordering::Relaxed) > now_ms
}

/// Whether a loader holds a lease right now, by the wall clock (for INFO, which has no command clock).
pub(crate) fn is_attached_now() -> bool {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default();
    is_attached(now_ms)
}
