//! Reading one session, with or without recording the activity: the shared read behind `QSESS.GET`,
//! `QSESS.PEEK` and `QSESS.TOUCH`.
//!
//! Activity is debounced: a read writes only when `seen` is older than the touch granularity, so most
//! reads are pure reads and a busy session adds one `touch` change record per granularity.

use crate::effects::Effects;
use crate::error::CommandError;
use crate::expiry;
use crate::info::COUNTERS;
use crate::redis_key::RedisKey;
use crate::session_id::SessionAddress;
use crate::session_lookup::{self, live_record};
use qsess_record::{ChangeRecord, SessionRecord};
use redis_module::RedisString;

/// Reads a session without writing anything; calls `use_record` when it is live. Reports whether it was.
/// `name` is the session's record key (`session_lookup::session_key_name`), checked by the caller.
pub(crate) fn without_activity(
    effects: &Effects<'_>,
    name: &RedisString,
    use_record: impl FnOnce(&SessionRecord<'_>) -> Result<(), CommandError>,
) -> Result<bool, CommandError> {
    let Some(key) = RedisKey::open_readable_named(effects.ctx, name)? else {
        COUNTERS.misses.increment();
        return Ok(false);
    };
    let Some(record) = live_record(&key, effects.now_ms)? else {
        COUNTERS.misses.increment();
        return Ok(false);
    };
    COUNTERS.hits.increment();
    use_record(&record)?;
    Ok(true)
}

/// Reads a session and records the activity when it is due; calls `use_record` with the record as it
/// is after the command. Reports whether the session was live. `name` is the session's record key
/// (`session_lookup::session_key_name`), checked by the caller.
pub(crate) fn with_activity(
    effects: &Effects<'_>,
    address: &SessionAddress,
    name: &RedisString,
    use_record: impl FnOnce(&SessionRecord<'_>) -> Result<(), CommandError>,
) -> Result<bool, CommandError> {
    // Opened for reading first: closing a key opened for writing signals it as modified (WATCH
    // aborts, client-side caches are invalidated), which a read that records no activity must not do.
    let touched = {
        let Some(key) = RedisKey::open_readable_named(effects.ctx, name)? else {
            COUNTERS.misses.increment();
            return Ok(false);
        };
        let Some(record) = live_record(&key, effects.now_ms)? else {
            COUNTERS.misses.increment();
            return Ok(false);
        };
        COUNTERS.hits.increment();
        match expiry::touched(&record, &effects.settings, effects.now_ms) {
            None => {
                use_record(&record)?;
                return Ok(true);
            }
            Some(touched) => (
                touched.encode(),
                touched.version,
                touched.seen_ms,
                touched.expires_ms().ok_or(CommandError::NoTimeout)?,
                touched.user.map(<[u8]>::to_vec),
            ),
        }
    };
    let (encoded, version, seen_ms, expires_ms, user) = touched;
    let key = RedisKey::open_writable_named(effects.ctx, name)?;
    let index = match &user {
        Some(user_id) => Some(session_lookup::open_index_writable(effects.ctx, address.bucket, user_id)?),
        None => None,
    };
    let stream = session_lookup::open_stream_writable(effects.ctx, address.bucket)?;
    effects.write_record(&key, &encoded, expires_ms)?;
    if let Some(index) = &index {
        effects.index_add(index, &address.handle, expires_ms)?;
    }
    let change = ChangeRecord::Touch { handle: address.handle, user: user.as_deref(), version, seen_ms, expires_ms };
    effects.append_change(&stream, &change)?;
    COUNTERS.touches.increment();
    use_record(&SessionRecord::decode(&encoded)?)?;
    Ok(true)
}
