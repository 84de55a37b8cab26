//! The miss path of `QSESS.GET`: while a loader holds its lease, a missing session may be alive in
//! Postgres, so the client waits (at most `qsess.miss-timeout-ms`) for the loader to restore it.
//!
//! Each id is requested once however many clients wait for it, ids the loader reported missing are
//! answered at once for `qsess.negative-cache-ms`, and revoked ids (tombstoned) never wait.

use crate::blocking::{self, AnswerAfterWait};
use crate::effects::Effects;
use crate::error::CommandError;
use crate::info::COUNTERS;
use crate::loader;
use crate::miss_tracker;
use crate::redis_key::{KeyKind, RedisKey};
use crate::session_id::SessionAddress;
use crate::session_lookup;
use crate::settings::keyspace;
use crate::waiter_signals;
use redis_module::ContextFlags;

/// Requests kept in a miss stream: the loader reads them within milliseconds, and a waiter gives up
/// after `qsess.miss-timeout-ms`, so older requests are worthless.
const MISS_STREAM_MAX_LEN: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MissOutcome {
    /// The client waits; the reply comes from the command's [`AnswerAfterWait`].
    Blocked,
    /// No reload is possible or useful: answer nil now.
    AnswerNil,
}

pub(crate) fn on_miss<Answer: AnswerAfterWait>(
    effects: &Effects<'_>,
    address: &SessionAddress,
) -> Result<MissOutcome, CommandError> {
    let ctx = effects.ctx;
    if !loader::is_attached(effects.now_ms) || ctx.get_flags().contains(ContextFlags::DENY_BLOCKING) {
        return Ok(MissOutcome::AnswerNil);
    }
    if session_lookup::is_tombstoned(ctx, address)? {
        return Ok(MissOutcome::AnswerNil);
    }
    let names = &keyspace().names;
    let not_found = names.not_found(address.bucket, &address.handle);
    if RedisKey::open_readable(ctx, &not_found)?.is_some() {
        COUNTERS.negative_cache_hits.increment();
        return Ok(MissOutcome::AnswerNil);
    }
    let timeout_ms = effects.settings.miss_timeout_ms;
    let must_request =
        miss_tracker::tracker().start_request(address.handle, effects.now_ms, effects.now_ms + timeout_ms);
    if must_request {
        request_reload(effects, address)?;
        COUNTERS.reload_requests.increment();
    }
    // Redis wakes a waiter only through a key that exists, so the client waits on each key an answer
    // can create: the session itself, the not-found marker, and the tombstone of a revoked id.
    let keys =
        [names.session(address.bucket, &address.handle), not_found, names.tombstone(address.bucket, &address.handle)];
    blocking::block_on_keys::<Answer>(ctx, &keys, timeout_ms)?;
    COUNTERS.waits.increment();
    Ok(MissOutcome::Blocked)
}

/// `QSESS.BYUSER` of a user with no index while a loader is attached: Redis may have lost the user's
/// sessions, so ask the loader (over Pub/Sub, since BYUSER is read-only) and wait for its answer.
pub(crate) fn on_user_miss<Answer: AnswerAfterWait>(
    effects: &Effects<'_>,
    bucket: u32,
    user_id: &[u8],
) -> Result<MissOutcome, CommandError> {
    let ctx = effects.ctx;
    if !loader::is_attached(effects.now_ms) || ctx.get_flags().contains(ContextFlags::DENY_BLOCKING) {
        return Ok(MissOutcome::AnswerNil);
    }
    let names = &keyspace().names;
    let loaded_marker = names.user_loaded(bucket, user_id);
    if RedisKey::open_readable(ctx, &loaded_marker)?.is_some() {
        return Ok(MissOutcome::AnswerNil);
    }
    let mut request = names.bucket_tag(bucket).as_bytes().to_vec();
    request.push(b' ');
    request.extend_from_slice(user_id);
    waiter_signals::publish(ctx, &names.user_reload_channel(), &request)?;
    COUNTERS.reload_requests.increment();
    // Only the marker: the first restored session creates the index, which would wake the waiter
    // before the rest of the user's sessions are back.
    blocking::block_on_keys::<Answer>(ctx, &[loaded_marker], effects.settings.miss_timeout_ms)?;
    COUNTERS.waits.increment();
    Ok(MissOutcome::Blocked)
}

/// Appends `h <handle>` to the bucket's miss stream, replicated like every other write.
fn request_reload(effects: &Effects<'_>, address: &SessionAddress) -> Result<(), CommandError> {
    let stream = RedisKey::open_writable(effects.ctx, &keyspace().names.miss_stream(address.bucket))?;
    stream.require_kind(KeyKind::Stream)?;
    effects.append_fields(&stream, &[(b"h", address.handle.as_bytes())])?;
    if stream.length()? > MISS_STREAM_MAX_LEN + MISS_STREAM_MAX_LEN / 10 {
        effects.trim_stream(&stream, MISS_STREAM_MAX_LEN)?;
    }
    Ok(())
}
