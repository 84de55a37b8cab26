//! Encoded session records built by hand, as qsess-syncd would hand them to `QSESS.RESTORE`: the
//! restore, hardening and access-control tests vary a few fields of the same plain record.

use qsess_record::SessionRecord;

/// A record created, last updated and last seen at `created_ms`, owned by `user`, with no absolute
/// deadline, no request metadata (IP, user agent) and no GeoIP fields. Tests that need one of those set
/// it with struct update syntax: `SessionRecord { ip, ..restorable_record(...) }`.
pub(crate) fn restorable_record<'a>(
    user: Option<&'a [u8]>,
    version: u64,
    created_ms: u64,
    idle_ms: u64,
    data: &'a [u8],
) -> SessionRecord<'a> {
    SessionRecord::plain(user, version, created_ms, idle_ms, data)
}
