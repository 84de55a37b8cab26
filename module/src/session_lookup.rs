//! Reading sessions, owner indexes and tombstones, with the checks every command needs before writing.

use crate::error::CommandError;
use crate::redis_key::{KeyKind, RedisKey};
use crate::session_id::SessionAddress;
use crate::settings::keyspace;
use qsess_record::{SessionRecord, UserRevocationValue};
use redis_module::{Context, RedisString};

/// The live record in `key`, or `None` if the key is missing or the session is over by our clock
/// (Redis may not have expired it yet). Anything but a string under our prefix is `WRONGTYPE`.
pub(crate) fn live_record<'k>(key: &'k RedisKey<'_>, now_ms: u64) -> Result<Option<SessionRecord<'k>>, CommandError> {
    key.require_kind(KeyKind::String)?;
    let Some(bytes) = key.string_value()? else {
        return Ok(None);
    };
    let record = SessionRecord::decode(bytes)?;
    Ok((!record.is_expired_at(now_ms)).then_some(record))
}

/// Whether a session with this address was ended and may not come back.
pub(crate) fn is_tombstoned(ctx: &Context, address: &SessionAddress) -> Result<bool, CommandError> {
    let name = keyspace().names.tombstone(address.bucket, &address.handle);
    Ok(RedisKey::open_readable(ctx, &name)?.is_some())
}

/// Whether `QSESS.REVOKEUSER` ended this session's owner's sessions after its last activity (and did not
/// keep this one with `EXCEPT`): then a reload of it must be refused.
pub(crate) fn revoked_with_user(
    ctx: &Context,
    address: &SessionAddress,
    record: &SessionRecord<'_>,
) -> Result<bool, CommandError> {
    let Some(user_id) = record.user else { return Ok(false) };
    let name = keyspace().names.user_revocation(address.bucket, user_id);
    let Some(key) = RedisKey::open_readable(ctx, &name)? else { return Ok(false) };
    let Some(value) = key.string_value()? else { return Ok(false) };
    let revocation = UserRevocationValue::parse(value);
    let kept = revocation.except == Some(address.handle.as_bytes());
    // Last activity, not creation: a session active since the revocation (kept with EXCEPT, then
    // rotated, or created in the same millisecond) was live in Redis after it and is not covered.
    Ok(record.seen_ms < revocation.at_ms && !kept)
}

/// Opens a user's index for writing, refusing a key of another type.
pub(crate) fn open_index_writable<'ctx>(
    ctx: &'ctx Context,
    bucket: u32,
    user_id: &[u8],
) -> Result<RedisKey<'ctx>, CommandError> {
    let index = RedisKey::open_writable(ctx, &keyspace().names.user_index(bucket, user_id))?;
    index.require_kind(KeyKind::SortedSet)?;
    Ok(index)
}

/// Opens a bucket's change stream for writing, refusing a key of another type.
pub(crate) fn open_stream_writable(ctx: &Context, bucket: u32) -> Result<RedisKey<'_>, CommandError> {
    let stream = RedisKey::open_writable(ctx, &keyspace().names.change_stream(bucket))?;
    stream.require_kind(KeyKind::Stream)?;
    Ok(stream)
}

/// A session's record key name as a Redis string: made once per command, then shared by the ACL
/// check and every open of the key.
pub(crate) fn session_key_name(ctx: &Context, address: &SessionAddress) -> RedisString {
    RedisString::create_from_slice(ctx.get_raw(), &keyspace().names.session(address.bucket, &address.handle))
}

/// A bucket's change stream name as a Redis string, shared by its ACL check and its open.
pub(crate) fn change_stream_name(ctx: &Context, bucket: u32) -> RedisString {
    RedisString::create_from_slice(ctx.get_raw(), &keyspace().names.change_stream(bucket))
}

/// [`open_stream_writable`] of a name made by [`change_stream_name`].
pub(crate) fn open_stream_writable_named<'ctx>(
    ctx: &'ctx Context,
    name: &RedisString,
) -> Result<RedisKey<'ctx>, CommandError> {
    let stream = RedisKey::open_writable_named(ctx, name)?;
    stream.require_kind(KeyKind::Stream)?;
    Ok(stream)
}

/// Opens a session's record key for writing.
pub(crate) fn open_session_writable<'ctx>(
    ctx: &'ctx Context,
    address: &SessionAddress,
) -> Result<RedisKey<'ctx>, CommandError> {
    RedisKey::open_writable(ctx, &keyspace().names.session(address.bucket, &address.handle))
}
