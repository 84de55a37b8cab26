//! Waking waiters: signalling a key as ready (Redis then answers every client blocked on it) and
//! publishing on a channel (how a read-only command asks the loader for something).
//!
//! Kept apart from `blocking.rs` so that writers (`effects.rs`, `QSESS.RESTOREUSER`) can wake waiters
//! without depending on how waiting clients are answered.

use crate::error::CommandError;
use crate::redis_key::api;
use redis_module::{Context, RedisString};

/// Publishes `message` on `channel`: how a read-only command asks the loader for something.
pub(crate) fn publish(ctx: &Context, channel: &[u8], message: &[u8]) -> Result<(), CommandError> {
    let publish_message = api!(RedisModule_PublishMessage);
    let channel = RedisString::create_from_slice(ctx.get_raw(), channel);
    let message = RedisString::create_from_slice(ctx.get_raw(), message);
    // SAFETY: live command context and live strings, which Redis copies.
    unsafe { publish_message(ctx.get_raw(), channel.inner, message.inner) };
    Ok(())
}

/// Wakes every client blocked on `key_name`.
pub(crate) fn signal_key_ready(ctx: &Context, key_name: &[u8]) -> Result<(), CommandError> {
    let signal = api!(RedisModule_SignalKeyAsReady);
    let key = RedisString::create_from_slice(ctx.get_raw(), key_name);
    // SAFETY: live command context and a live key name, which Redis copies.
    unsafe { signal(ctx.get_raw(), key.inner) };
    Ok(())
}
