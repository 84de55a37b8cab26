//! Fixed bounds on command input that are not operator settings.

/// Longest accepted session id. Real cookies are 32 to 64 bytes; the bound keeps hashing cheap.
pub(crate) const MAX_SESSION_ID_BYTES: usize = 256;

/// Longest accepted user id: room for a UUID, an email address or a composite key.
pub(crate) const MAX_USER_ID_BYTES: usize = 256;

/// Longest accepted user agent. Real ones are 100 to 300 bytes; longer ones are junk or attacks, and a
/// longer field would push the record out of jemalloc's 512-byte class (ARCHITECTURE.md, memory).
pub(crate) const MAX_USER_AGENT_BYTES: usize = 512;

/// Longest accepted timeout: ten years in milliseconds, far from any overflow in expiry arithmetic.
pub(crate) const MAX_TIMEOUT_MS: u64 = 10 * 366 * 24 * 60 * 60 * 1000;

/// Highest version a restored record may carry: every version fits an `f64` score, an `i64` reply and
/// `version + 1` without wrapping.
pub(crate) const MAX_VERSION: u64 = 1 << 53;

/// Most ids one `QSESS.DEL` or handles one `QSESS.REVOKE` takes: ending a session costs about 15 µs,
/// so a call holds Redis for under 10 ms.
pub(crate) const MAX_IDS_PER_CALL: usize = 500;

/// Highest accepted `LIMIT n`.
pub(crate) const MAX_SESSIONS_PER_USER_LIMIT: u64 = 1_000_000;
