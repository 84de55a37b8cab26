//! Writing one session, the shared write behind `QSESS.SET` and `QSESS.NEW`: every check first
//! (ACL, condition, tombstone, bucket, the per-user cap), then every effect, `LIMIT` included.

use crate::access::{Caller, KeyAccess};
use crate::bucket::Buckets;
use crate::effects::{Effects, EndingSession};
use crate::error::CommandError;
use crate::geo;
use crate::info::COUNTERS;
use crate::redis_key::RedisKey;
use crate::session_id::SessionAddress;
use crate::session_lookup::{self, live_record};
use crate::session_options::{Condition, Owner, SessionOptions};
use crate::session_update::{self, Found};
use crate::settings::keyspace;
use qsess_record::{ChangeRecord, DeleteReason, Handle};

/// The write behind `QSESS.SET` and `QSESS.NEW`: every check first, then every effect.
/// Returns the new version, or `None` when the `NX`/`XX` condition did not hold.
pub(crate) fn write_session(
    effects: &Effects<'_>,
    address: &SessionAddress,
    options: &SessionOptions<'_>,
) -> Result<Option<u64>, CommandError> {
    let ctx = effects.ctx;
    let buckets = keyspace().buckets;
    // Before any key is touched: on a cluster the user's keys are on another node when this fails.
    if let Some(Owner::User(user_id)) = options.owner {
        if buckets.of_user(user_id) != address.bucket {
            return Err(owner_bucket_error(buckets, address.bucket, buckets.of_user(user_id)));
        }
    }
    let caller = Caller::of(ctx);
    let session_name = session_lookup::session_key_name(ctx, address);
    caller.require_named(&session_name, KeyAccess::Write)?;
    if let Some(Owner::User(user_id)) = options.owner {
        caller.require_user(user_id, KeyAccess::Write)?;
    }
    let stream_name = session_lookup::change_stream_name(ctx, address.bucket);
    caller.require_named(&stream_name, KeyAccess::Write)?;
    let session_key = RedisKey::open_writable_named(ctx, &session_name)?;

    // Everything that borrows the stored record lives in this block, which ends before the record
    // key is written.
    let (encoded, version, expires_ms, old_user, new_user, created) = {
        let old = live_record(&session_key, effects.now_ms)?;
        match (options.condition, &old) {
            (Some(Condition::OnlyCreate), Some(_)) | (Some(Condition::OnlyUpdate), None) => return Ok(None),
            _ => {}
        }
        if old.is_none() && session_lookup::is_tombstoned(ctx, address)? {
            COUNTERS.rejected_revoked.increment();
            return Err(CommandError::Revoked);
        }
        let wanted = session_update::lookups(old.as_ref(), options, &effects.settings);
        let found = Found {
            place: wanted.locate.and_then(geo::locate),
            device: wanted.describe.and_then(|user_agent| qsess_record::cached_device_summary(&user_agent.text())),
        };
        let record = match &old {
            Some(old) => session_update::update(old, options, &effects.settings, &found, effects.now_ms)?,
            None => session_update::create(options, &effects.settings, &found, effects.now_ms)?,
        };
        if let Some(user_id) = record.user {
            let user_bucket = buckets.of_user(user_id);
            if user_bucket != address.bucket {
                return Err(owner_bucket_error(buckets, address.bucket, user_bucket));
            }
        }
        if options.limit.is_some() && record.user.is_none() {
            return Err(CommandError::LimitWithoutUser);
        }
        let expires_ms = record.expires_ms().ok_or(CommandError::NoTimeout)?;
        (
            record.encode(),
            record.version,
            expires_ms,
            old.as_ref().and_then(|old| old.user).map(<[u8]>::to_vec),
            record.user.map(<[u8]>::to_vec),
            old.is_none(),
        )
    };

    let new_index = match &new_user {
        Some(user_id) => Some(session_lookup::open_index_writable(ctx, address.bucket, user_id)?),
        None => None,
    };
    let old_index = match &old_user {
        Some(user_id) if new_user.as_ref() != Some(user_id) => {
            Some(session_lookup::open_index_writable(ctx, address.bucket, user_id)?)
        }
        _ => None,
    };
    if let Some(new_index) = &new_index {
        let joins_the_index = created || old_user != new_user;
        let limited_within_cap = options.limit.is_some_and(|limit| limit <= effects.settings.max_sessions_per_user);
        if joins_the_index && !limited_within_cap {
            require_room_for_one_more(effects, new_index)?;
        }
    }
    let stream = session_lookup::open_stream_writable_named(ctx, &stream_name)?;
    let others = match (options.limit, &new_index) {
        (Some(_), Some(index)) => {
            let owner = new_user.as_deref().unwrap_or_default();
            other_sessions(effects, address.bucket, &address.handle, owner, index)?
        }
        _ => Vec::new(),
    };

    // The change entry goes first: appending is the only write that can still fail (a stream whose
    // ids ran out), and a failure then leaves nothing written.
    let change = ChangeRecord::Set { handle: address.handle, user: new_user.as_deref(), version, record: &encoded };
    // One string for the record: the change entry, the key and the replicated SET share it.
    let record = redis_module::RedisString::create_from_slice(ctx.get_raw(), &encoded);
    effects.append_change_sharing_record(&stream, &change, &record)?;
    effects.write_record_string(&session_key, &record, expires_ms)?;
    if let Some(old_index) = &old_index {
        effects.index_remove(old_index, &address.handle)?;
    }
    if let Some(new_index) = &new_index {
        effects.index_add(new_index, &address.handle, expires_ms)?;
    }
    if let (Some(limit), Some(index)) = (options.limit, &new_index) {
        enforce_limit(effects, address.bucket, others, limit, index, &stream)?;
    }
    if created {
        COUNTERS.created.increment();
    } else {
        COUNTERS.updated.increment();
    }
    Ok(Some(version))
}

/// Refuses a session that would take its owner past `qsess.max-sessions-per-user`: every command over
/// one user's sessions costs time in proportion to their number, and Redis has one thread. The index
/// may still list expired members, so only when its size reaches the cap are the live ones counted.
fn require_room_for_one_more(effects: &Effects<'_>, index: &RedisKey<'_>) -> Result<(), CommandError> {
    let limit = effects.settings.max_sessions_per_user;
    if (index.length()? as u64) < limit {
        return Ok(());
    }
    let live = index.sorted_set_range(effects.now_ms as f64 + 1.0, f64::INFINITY)?.len() as u64;
    if live >= limit {
        return Err(CommandError::TooManySessions { limit });
    }
    Ok(())
}

/// Another session in the owner's index: its creation time, or `None` if its record is gone.
struct OtherSession<'ctx> {
    handle: Handle,
    created_ms: Option<u64>,
    key: RedisKey<'ctx>,
}

/// The other sessions the owner's index lists. A member whose record is gone, unreadable, or now owned
/// by someone else (it expired and its id was used again) is stale, not one of the owner's sessions.
fn other_sessions<'ctx>(
    effects: &Effects<'ctx>,
    bucket: u32,
    keep: &Handle,
    owner: &[u8],
    index: &RedisKey<'ctx>,
) -> Result<Vec<OtherSession<'ctx>>, CommandError> {
    let mut others = Vec::new();
    for (member, _) in index.sorted_set_range(f64::NEG_INFINITY, f64::INFINITY)? {
        let Ok(handle) = Handle::parse(member.as_slice()) else { continue };
        if handle == *keep {
            continue;
        }
        let key = session_lookup::open_session_writable(effects.ctx, &SessionAddress { bucket, handle })?;
        let created_ms = match live_record(&key, effects.now_ms) {
            Ok(record) => record.filter(|record| record.user == Some(owner)).map(|record| record.created_ms),
            Err(CommandError::CorruptRecord(_)) => None,
            Err(error) => return Err(error),
        };
        others.push(OtherSession { handle, created_ms, key });
    }
    Ok(others)
}

/// Revokes the oldest sessions so that the owner keeps at most `limit`, the one just written included.
fn enforce_limit(
    effects: &Effects<'_>,
    bucket: u32,
    others: Vec<OtherSession<'_>>,
    limit: u64,
    index: &RedisKey<'_>,
    stream: &RedisKey<'_>,
) -> Result<(), CommandError> {
    let (mut live, gone): (Vec<_>, Vec<_>) = others.into_iter().partition(|other| other.created_ms.is_some());
    for stale in &gone {
        effects.index_remove(index, &stale.handle)?;
    }
    let excess = (live.len() as u64 + 1).saturating_sub(limit) as usize;
    live.sort_by_key(|other| (other.created_ms, other.handle));
    for oldest in live.iter().take(excess) {
        let ending = EndingSession { bucket, handle: oldest.handle, key: &oldest.key };
        effects.end_session(&ending, Some(index), stream, DeleteReason::Limit)?;
    }
    Ok(())
}

/// A session must live in its owner's bucket (on a cluster: hash slot).
pub(crate) fn owner_bucket_error(buckets: Buckets, session_bucket: u32, user_bucket: u32) -> CommandError {
    if buckets.is_cluster() {
        CommandError::SessionOutsideUserSlot
    } else {
        CommandError::WrongBucket { session_bucket, user_bucket }
    }
}
