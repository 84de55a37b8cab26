//! Blocking a `QSESS.GET` on its session key until the loader restores it (or says it does not exist),
//! with `RedisModule_BlockClientOnKeys`: Redis keeps the waiters, wakes every one of them when
//! `QSESS.RESTORE` signals the key, answers nil at the timeout, and frees them on disconnect.

use crate::commands::{reply_after_user_wait, reply_after_wait};
use crate::error::CommandError;
use crate::info::COUNTERS;
use crate::redis_key::api;
use redis_module::{raw, Context, RedisString};
use std::os::raw::c_int;

/// Blocks the calling client until one of `key_names` is signalled, for at most `timeout_ms`.
pub(crate) fn block_on_keys(ctx: &Context, key_names: &[Vec<u8>], timeout_ms: u64) -> Result<(), CommandError> {
    let block_on_keys = api!(RedisModule_BlockClientOnKeys);
    let names: Vec<RedisString> =
        key_names.iter().map(|name| RedisString::create_from_slice(ctx.get_raw(), name)).collect();
    let mut keys: Vec<*mut raw::RedisModuleString> = names.iter().map(|name| name.inner).collect();
    // SAFETY: live command context; Redis copies the key names before returning and owns the blocked
    // client from here on; no private data is passed, so nothing needs freeing.
    let blocked = unsafe {
        block_on_keys(
            ctx.get_raw(),
            Some(on_key_ready),
            Some(on_timeout),
            None,
            timeout_ms.min(i64::MAX as u64) as i64,
            keys.as_mut_ptr(),
            keys.len() as c_int,
            std::ptr::null_mut(),
        )
    };
    if blocked.is_null() {
        return Err(CommandError::Internal);
    }
    Ok(())
}

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

/// Redis calls this for each client blocked on a key that was signalled: answer with what is there now.
extern "C" fn on_key_ready(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let context = Context::new(ctx);
    let words = arguments(argv, argc);
    let is_byuser = words.first().is_some_and(|name| name.eq_ignore_ascii_case(b"qsess.byuser"));
    let answered = crate::panic_guard::catch(&context, || {
        if is_byuser {
            reply_after_user_wait(&context, &words)
        } else {
            reply_after_wait(&context, &words)
        }
    });
    if !matches!(answered, Some(Ok(()))) {
        context.reply_error_string("ERR internal error");
    }
    raw::REDISMODULE_OK as c_int
}

extern "C" fn on_timeout(ctx: *mut raw::RedisModuleCtx, argv: *mut *mut raw::RedisModuleString, argc: c_int) -> c_int {
    COUNTERS.miss_timeouts.increment();
    let context = Context::new(ctx);
    let words = arguments(argv, argc);
    if words.first().is_some_and(|name| name.eq_ignore_ascii_case(b"qsess.byuser")) {
        // BYUSER answers an array whatever happens: the sessions Redis holds now (none, usually).
        let answered = crate::panic_guard::catch(&context, || reply_after_user_wait(&context, &words));
        if !matches!(answered, Some(Ok(()))) {
            context.reply(Ok(redis_module::RedisValue::Array(Vec::new())));
        }
    } else {
        context.reply(Ok(redis_module::RedisValue::Null));
    }
    raw::REDISMODULE_OK as c_int
}

/// The blocked command's arguments, borrowed for the callback's duration.
fn arguments<'a>(argv: *mut *mut raw::RedisModuleString, argc: c_int) -> Vec<&'a [u8]> {
    if argv.is_null() || argc <= 0 {
        return Vec::new();
    }
    // SAFETY: Redis passes `argc` valid strings at `argv`, alive for the callback.
    let raw_arguments = unsafe { std::slice::from_raw_parts(argv, argc as usize) };
    raw_arguments.iter().map(|&argument| RedisString::string_as_slice(argument)).collect()
}
