//! `QSESS.RESTORE bucket handle record|NOTFOUND`: the loader's answer to a miss (internal, for qsess-syncd).
//!
//! Writes the record as the mirror has it (its own version, creation, activity and expiry), re-indexes
//! it and wakes every client waiting for it, unless the id was revoked (tombstone), Redis already holds
//! the same or a newer version, or the session is already over. `NOTFOUND` wakes the waiters with nil
//! and leaves a not-found marker that answers further misses for `qsess.negative-cache-ms`. No change record is written: the
//! mirror is where the record came from. Replies RESTORED, NOTFOUND, REVOKED, STALE or EXPIRED.

use crate::access::{Caller, KeyAccess};
use crate::effects::Effects;
use crate::error::CommandError;
use crate::info::COUNTERS;
use crate::limits::{MAX_TIMEOUT_MS, MAX_VERSION};
use crate::miss_tracker;
use crate::session_id::SessionAddress;
use crate::session_lookup::{self, live_record};
use crate::session_write::owner_bucket_error;
use crate::settings::keyspace;
use crate::waiter_signals;
use qsess_record::{Handle, SessionRecord};
use redis_module::{Context, RedisValue};

pub(crate) fn restore(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let [_, bucket, handle, payload] = arguments else {
        return Err(CommandError::WrongArity("qsess.restore"));
    };
    let caller = Caller::of(ctx);
    caller.require_loader_role()?;
    let bucket = keyspace().buckets.of_tag(bucket)?;
    let handle = Handle::parse(handle)?;
    let effects = Effects::new(ctx)?;
    let address = SessionAddress { bucket, handle };
    caller.require_session(&address, KeyAccess::Write)?;
    let names = &keyspace().names;
    let outcome = if payload.eq_ignore_ascii_case(b"NOTFOUND") {
        Outcome::NotFound
    } else {
        restore_record(&effects, &address, payload)?
    };
    miss_tracker::tracker().finish(&handle);
    // Wake the waiters through the key that now answers them (see read_through.rs).
    let woken_through = match outcome {
        Outcome::Restored | Outcome::Stale => names.session(bucket, &handle),
        Outcome::Revoked => names.tombstone(bucket, &handle),
        Outcome::NotFound | Outcome::Expired => {
            let marker = names.not_found(bucket, &handle);
            // The marker must outlive the command for Redis to serve the waiters, even without a cache.
            let ttl_ms = effects.settings.negative_cache_ms.max(MIN_MARKER_TTL_MS);
            effects.write_marker(&marker, effects.now_ms + ttl_ms)?;
            marker
        }
    };
    waiter_signals::signal_key_ready(ctx, &woken_through)?;
    match outcome {
        Outcome::Restored => COUNTERS.restores.increment(),
        Outcome::NotFound => {}
        _ => COUNTERS.restores_refused.increment(),
    }
    Ok(RedisValue::SimpleStringStatic(outcome.as_str()))
}

/// The shortest life of a not-found marker: long enough to be there when Redis serves the waiters.
const MIN_MARKER_TTL_MS: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Restored,
    NotFound,
    Revoked,
    Stale,
    Expired,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Restored => "RESTORED",
            Outcome::NotFound => "NOTFOUND",
            Outcome::Revoked => "REVOKED",
            Outcome::Stale => "STALE",
            Outcome::Expired => "EXPIRED",
        }
    }
}

fn restore_record(effects: &Effects<'_>, address: &SessionAddress, payload: &[u8]) -> Result<Outcome, CommandError> {
    let ctx = effects.ctx;
    let record = SessionRecord::decode(payload).map_err(CommandError::BadRestorePayload)?;
    check_ranges(&record, effects.now_ms)?;
    let Some(expires_ms) = record.expires_ms().filter(|expires_ms| *expires_ms > effects.now_ms) else {
        return Ok(Outcome::Expired);
    };
    // Before the owner's keys are read: on a cluster they would be in another slot.
    if let Some(user_id) = record.user {
        let user_bucket = keyspace().buckets.of_user(user_id);
        if user_bucket != address.bucket {
            return Err(owner_bucket_error(keyspace().buckets, address.bucket, user_bucket));
        }
    }
    if session_lookup::is_tombstoned(ctx, address)? {
        return Ok(Outcome::Revoked);
    }
    if session_lookup::revoked_with_user(ctx, address, &record)? {
        // Leave a tombstone too: the id stays refused, and the waiters wake through it.
        effects.write_tombstone(address.bucket, &address.handle, record.version + 1, Some(expires_ms))?;
        return Ok(Outcome::Revoked);
    }
    let key = session_lookup::open_session_writable(ctx, address)?;
    if let Some(held) = live_record(&key, effects.now_ms)?.filter(|held| held.version >= record.version) {
        // Redis has it already; make sure its owner's index lists it (the index may be what was lost).
        if let (Some(user_id), Some(held_expires_ms)) = (held.user, held.expires_ms()) {
            let user_id = user_id.to_vec();
            let index = session_lookup::open_index_writable(ctx, address.bucket, &user_id)?;
            effects.index_add(&index, &address.handle, held_expires_ms)?;
        }
        return Ok(Outcome::Stale);
    }
    let index = match record.user {
        Some(user_id) => Some(session_lookup::open_index_writable(ctx, address.bucket, user_id)?),
        None => None,
    };
    effects.write_record(&key, payload, expires_ms)?;
    if let Some(index) = &index {
        effects.index_add(index, &address.handle, expires_ms)?;
    }
    Ok(Outcome::Restored)
}

/// A restored record is written as given, so everything the module derives from it (expiry times it
/// replicates as `PXAT`, index scores, `version + 1`) must be in range before the first write: an
/// out-of-range time would make an immortal key, or one a replica refuses.
fn check_ranges(record: &SessionRecord<'_>, now_ms: u64) -> Result<(), CommandError> {
    let latest_ms = now_ms.saturating_add(MAX_TIMEOUT_MS);
    if record.version == 0 || record.version > MAX_VERSION {
        return Err(CommandError::RestoreOutOfRange("version"));
    }
    if record.idle_ms > MAX_TIMEOUT_MS {
        return Err(CommandError::RestoreOutOfRange("idle timeout"));
    }
    let times = [
        ("creation time", record.created_ms),
        ("update time", record.updated_ms),
        ("last activity", record.seen_ms),
        ("absolute deadline", record.absolute_deadline_ms),
        ("expiry", record.expires_ms().unwrap_or(0)),
    ];
    match times.into_iter().find(|(_, time_ms)| *time_ms > latest_ms) {
        Some((what, _)) => Err(CommandError::RestoreOutOfRange(what)),
        None => Ok(()),
    }
}
