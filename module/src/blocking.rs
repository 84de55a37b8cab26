//! Blocking a command on keys until the loader restores what it waits for (or says it does not
//! exist), with `RedisModule_BlockClientOnKeys`: Redis keeps the waiters, wakes every one of them when
//! a key is signalled (`waiter_signals.rs`), calls back at the timeout, and frees them on disconnect.
//!
//! The command that blocks hands over how it answers ([`AnswerAfterWait`]), so this file knows no
//! command: the callbacks are instantiated per command, which needs no private data to free.

use crate::error::CommandError;
use crate::info::COUNTERS;
use crate::panic_guard;
use crate::redis_key::api;
use redis_module::{raw, Context, RedisString};
use std::os::raw::c_int;

/// How a blocked command answers, given its own arguments.
pub(crate) trait AnswerAfterWait {
    /// Answers once one of its keys was signalled: with what Redis holds now.
    fn when_ready(ctx: &Context, arguments: &[&[u8]]) -> Result<(), CommandError>;
    /// Answers when the wait timed out.
    fn at_timeout(ctx: &Context, arguments: &[&[u8]]) -> Result<(), CommandError>;
}

/// Blocks the calling client until one of `key_names` is signalled, for at most `timeout_ms`; the
/// answer then comes from `Answer`.
pub(crate) fn block_on_keys<Answer: AnswerAfterWait>(
    ctx: &Context,
    key_names: &[Vec<u8>],
    timeout_ms: u64,
) -> Result<(), CommandError> {
    let block_on_keys = api!(RedisModule_BlockClientOnKeys);
    let names: Vec<RedisString> =
        key_names.iter().map(|name| RedisString::create_from_slice(ctx.get_raw(), name)).collect();
    let mut keys: Vec<*mut raw::RedisModuleString> = names.iter().map(|name| name.inner).collect();
    // SAFETY: live command context; Redis copies the key names before returning and owns the blocked
    // client from here on; no private data is passed, so nothing needs freeing.
    let blocked = unsafe {
        block_on_keys(
            ctx.get_raw(),
            Some(on_key_ready::<Answer>),
            Some(on_timeout::<Answer>),
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

/// Redis calls this for each client blocked on a key that was signalled: answer with what is there now.
extern "C" fn on_key_ready<Answer: AnswerAfterWait>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let context = Context::new(ctx);
    let words = arguments(argv, argc);
    answer_guarded(&context, || Answer::when_ready(&context, &words));
    raw::REDISMODULE_OK as c_int
}

extern "C" fn on_timeout<Answer: AnswerAfterWait>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    COUNTERS.miss_timeouts.increment();
    let context = Context::new(ctx);
    let words = arguments(argv, argc);
    answer_guarded(&context, || Answer::at_timeout(&context, &words));
    raw::REDISMODULE_OK as c_int
}

/// Runs an answer through the same guard as every command: a typed error or a panic becomes the same
/// error reply, with the same counters, as it would in the command itself.
fn answer_guarded(context: &Context, answer: impl FnOnce() -> Result<(), CommandError>) {
    if let Err(error) = panic_guard::guarded_reply(context, answer) {
        context.reply(Err(error));
    }
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
