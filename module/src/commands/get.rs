//! `QSESS.GET sid [NOTOUCH]`: the session's record, or nil. Counts as activity unless `NOTOUCH`.
//!
//! Activity is debounced: a read writes only when `seen` is older than the touch granularity, so most
//! reads are pure reads and a busy session adds one `touch` change record per granularity.

use crate::access::{Caller, KeyAccess};
use crate::effects::Effects;
use crate::error::CommandError;
use crate::expiry;
use crate::info::COUNTERS;
use crate::read_through::{self, MissOutcome};
use crate::redis_key::RedisKey;
use crate::reply::{RecordFields, Reply};
use crate::session_id::{self, SessionAddress};
use crate::session_lookup::{self, live_record};
use crate::settings::keyspace;
use qsess_record::{ChangeRecord, SessionRecord};
use redis_module::{Context, RedisValue};

pub(crate) fn get(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let (session_id, touch) = match arguments {
        [_, session_id] => (*session_id, true),
        [_, session_id, option] if option.eq_ignore_ascii_case(b"NOTOUCH") => (*session_id, false),
        [_, _, _] => return Err(CommandError::UnknownOption { command: "QSESS.GET", accepted: "NOTOUCH" }),
        _ => return Err(CommandError::WrongArity("qsess.get")),
    };
    let effects = Effects::new(ctx)?;
    let address = session_id::locate(session_id, keyspace().buckets)?;
    // NOTOUCH only reads; a GET may write activity (and its change entry).
    let caller = Caller::of(ctx);
    if touch {
        caller.require_session(&address, KeyAccess::Write)?;
        caller.require_change_stream(address.bucket)?;
    } else {
        caller.require_session(&address, KeyAccess::Read)?;
    }
    let reply = Reply::new(ctx);
    let found = if touch {
        with_activity(&effects, &address, |record| reply.record(&address.handle, record, RecordFields::Full))?
    } else {
        without_activity(&effects, &address, |record| reply.record(&address.handle, record, RecordFields::Full))?
    };
    if !found && read_through::on_miss(&effects, &address)? == MissOutcome::AnswerNil {
        reply.null()?;
    }
    Ok(RedisValue::NoReply)
}

/// Answers a `QSESS.GET` that waited for a reload, once its key was signalled: the restored record,
/// or nil when the loader found nothing (or the session is gone again).
pub(crate) fn reply_after_wait(ctx: &Context, arguments: &[&[u8]]) -> Result<(), CommandError> {
    let reply = Reply::new(ctx);
    let Some(session_id) = arguments.get(1) else {
        return reply.null();
    };
    let address = session_id::locate(session_id, keyspace().buckets)?;
    let now_ms = crate::redis_key::now_ms()?;
    let name = keyspace().names.session(address.bucket, &address.handle);
    let key = RedisKey::open_readable(ctx, &name)?;
    match key.as_ref().map(|key| live_record(key, now_ms)).transpose()?.flatten() {
        Some(record) => {
            COUNTERS.hits.increment();
            reply.record(&address.handle, &record, RecordFields::Full)
        }
        None => reply.null(),
    }
}

/// Reads a session without writing anything; calls `use_record` when it is live. Reports whether it was.
pub(crate) fn without_activity(
    effects: &Effects<'_>,
    address: &SessionAddress,
    use_record: impl FnOnce(&SessionRecord<'_>) -> Result<(), CommandError>,
) -> Result<bool, CommandError> {
    let name = keyspace().names.session(address.bucket, &address.handle);
    let Some(key) = RedisKey::open_readable(effects.ctx, &name)? else {
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
/// is after the command. Reports whether the session was live.
pub(crate) fn with_activity(
    effects: &Effects<'_>,
    address: &SessionAddress,
    use_record: impl FnOnce(&SessionRecord<'_>) -> Result<(), CommandError>,
) -> Result<bool, CommandError> {
    // Opened for reading first: closing a key opened for writing signals it as modified (WATCH
    // aborts, client-side caches are invalidated), which a read that records no activity must not do.
    let name = keyspace().names.session(address.bucket, &address.handle);
    let touched = {
        let Some(key) = RedisKey::open_readable(effects.ctx, &name)? else {
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
    let key = RedisKey::open_writable(effects.ctx, &name)?;
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
