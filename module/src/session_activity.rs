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
    Ok(read_live(effects, name, use_record)?.is_some())
}

/// Opens the record key for reading and, when the session is live, runs `on_live` on it; counts the
/// hit or the miss. `None` when the session is not live.
fn read_live<T>(
    effects: &Effects<'_>,
    name: &RedisString,
    on_live: impl FnOnce(&SessionRecord<'_>) -> Result<T, CommandError>,
) -> Result<Option<T>, CommandError> {
    let Some(key) = RedisKey::open_readable_named(effects.ctx, name)? else {
        COUNTERS.misses.increment();
        return Ok(None);
    };
    let Some(record) = live_record(&key, effects.now_ms)? else {
        COUNTERS.misses.increment();
        return Ok(None);
    };
    COUNTERS.hits.increment();
    on_live(&record).map(Some)
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
    let mut use_record = Some(use_record);
    let due = read_live(effects, name, |record| match expiry::touched(record, &effects.settings, effects.now_ms) {
        None => {
            if let Some(use_record) = use_record.take() {
                use_record(record)?;
            }
            Ok(None)
        }
        Some(touched) => Ok(Some((
            touched.encode(),
            touched.version,
            touched.seen_ms,
            touched.expires_ms().ok_or(CommandError::NoTimeout)?,
            touched.user.map(<[u8]>::to_vec),
        ))),
    })?;
    let Some(due) = due else { return Ok(false) };
    // Not due: answered from the record as it was read.
    let Some((encoded, version, seen_ms, expires_ms, user)) = due else { return Ok(true) };
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
    if let Some(use_record) = use_record {
        use_record(&SessionRecord::decode(&encoded)?)?;
    }
    Ok(true)
}
