//! `QSESS.ROTATE old-sid new-sid`: the same session under a new id, at login or privilege change.
//!
//! Data, owner and creation time move to the new id; the old id is dead at once and tombstoned.
//! Replies the new version, or nil when the old session does not exist.

use crate::access::{Caller, KeyAccess};
use crate::effects::{Effects, EndingSession};
use crate::error::CommandError;
use crate::info::COUNTERS;
use crate::session_id;
use crate::session_lookup::{self, live_record};
use crate::session_update;
use crate::settings::keyspace;
use qsess_record::{ChangeRecord, DeleteReason};
use redis_module::{Context, RedisValue};

pub(crate) fn rotate(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let [_, old_session_id, new_session_id] = arguments else {
        return Err(CommandError::WrongArity("qsess.rotate"));
    };
    if old_session_id == new_session_id {
        return Err(CommandError::SameIds);
    }
    let effects = Effects::new(ctx)?;
    let buckets = keyspace().buckets;
    let old_address = session_id::locate(old_session_id, buckets)?;
    let new_address = session_id::locate(new_session_id, buckets)?;
    if old_address.bucket != new_address.bucket && buckets.is_cluster() {
        return Err(CommandError::RotateAcrossSlots);
    }
    if old_address.bucket != new_address.bucket {
        return Err(CommandError::WrongBucket { session_bucket: new_address.bucket, user_bucket: old_address.bucket });
    }
    let bucket = old_address.bucket;
    let caller = Caller::of(ctx);
    caller.require_session(&old_address, KeyAccess::Write)?;
    caller.require_session(&new_address, KeyAccess::Write)?;
    caller.require_change_stream(bucket)?;
    let old_key = session_lookup::open_session_writable(ctx, &old_address)?;
    let new_key = session_lookup::open_session_writable(ctx, &new_address)?;
    let (encoded, version, expires_ms, user) = {
        let Some(old) = live_record(&old_key, effects.now_ms)? else {
            return Ok(RedisValue::Null);
        };
        if live_record(&new_key, effects.now_ms)?.is_some() {
            return Err(CommandError::NewIdInUse);
        }
        if session_lookup::is_tombstoned(ctx, &new_address)? {
            COUNTERS.rejected_revoked.increment();
            return Err(CommandError::Revoked);
        }
        let rotated = session_update::rotate(&old, effects.now_ms);
        let expires_ms = rotated.expires_ms().ok_or(CommandError::NoTimeout)?;
        (rotated.encode(), rotated.version, expires_ms, rotated.user.map(<[u8]>::to_vec))
    };
    let index = match &user {
        Some(user_id) => Some(session_lookup::open_index_writable(ctx, bucket, user_id)?),
        None => None,
    };
    let stream = session_lookup::open_stream_writable(ctx, bucket)?;

    let ending = EndingSession { bucket, handle: old_address.handle, key: &old_key };
    effects.end_session(&ending, index.as_ref(), &stream, DeleteReason::Rotate)?;
    effects.write_record(&new_key, &encoded, expires_ms)?;
    if let Some(index) = &index {
        effects.index_add(index, &new_address.handle, expires_ms)?;
    }
    let change = ChangeRecord::Set { handle: new_address.handle, user: user.as_deref(), version, record: &encoded };
    effects.append_change(&stream, &change)?;
    COUNTERS.rotations.increment();
    Ok(RedisValue::Integer(version as i64))
}
