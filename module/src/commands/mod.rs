//! The QSESS commands, one file each, and the guard every entry point runs through.

mod byuser;
mod del;
mod get;
mod loader;
mod new;
mod peek;
mod restore;
mod restoreuser;
mod revoke;
mod revokeuser;
mod rotate;
mod set;
mod streams;
mod touch;

use crate::error::CommandError;
use crate::info::COUNTERS;
use crate::panic_guard;
use redis_module::{Context, RedisResult, RedisString, RedisValue};

type Command = fn(&Context, &[&[u8]]) -> Result<RedisValue, CommandError>;

/// Runs a command: no panic reaches Redis, and typed errors become error replies here and only here.
fn run(ctx: &Context, arguments: Vec<RedisString>, command: Command) -> RedisResult {
    COUNTERS.commands.increment();
    let words: Vec<&[u8]> = arguments.iter().map(RedisString::as_slice).collect();
    panic_guard::guarded_reply(ctx, || command(ctx, &words))
}

pub(crate) fn qsess_set(ctx: &Context, arguments: Vec<RedisString>) -> RedisResult {
    run(ctx, arguments, set::set)
}

pub(crate) fn qsess_new(ctx: &Context, arguments: Vec<RedisString>) -> RedisResult {
    run(ctx, arguments, new::new)
}

pub(crate) fn qsess_get(ctx: &Context, arguments: Vec<RedisString>) -> RedisResult {
    run(ctx, arguments, get::get)
}

pub(crate) fn qsess_peek(ctx: &Context, arguments: Vec<RedisString>) -> RedisResult {
    run(ctx, arguments, peek::peek)
}

pub(crate) fn qsess_touch(ctx: &Context, arguments: Vec<RedisString>) -> RedisResult {
    run(ctx, arguments, touch::touch)
}

pub(crate) fn qsess_rotate(ctx: &Context, arguments: Vec<RedisString>) -> RedisResult {
    run(ctx, arguments, rotate::rotate)
}

pub(crate) fn qsess_del(ctx: &Context, arguments: Vec<RedisString>) -> RedisResult {
    run(ctx, arguments, del::del)
}

pub(crate) fn qsess_byuser(ctx: &Context, arguments: Vec<RedisString>) -> RedisResult {
    run(ctx, arguments, byuser::byuser)
}

pub(crate) fn qsess_revokeuser(ctx: &Context, arguments: Vec<RedisString>) -> RedisResult {
    run(ctx, arguments, revokeuser::revokeuser)
}

pub(crate) fn qsess_restore(ctx: &Context, arguments: Vec<RedisString>) -> RedisResult {
    run(ctx, arguments, restore::restore)
}

pub(crate) fn qsess_restoreuser(ctx: &Context, arguments: Vec<RedisString>) -> RedisResult {
    run(ctx, arguments, restoreuser::restoreuser)
}

pub(crate) fn qsess_loader(ctx: &Context, arguments: Vec<RedisString>) -> RedisResult {
    run(ctx, arguments, loader::loader)
}

pub(crate) fn qsess_revoke(ctx: &Context, arguments: Vec<RedisString>) -> RedisResult {
    run(ctx, arguments, revoke::revoke)
}

pub(crate) fn qsess_streams(ctx: &Context, arguments: Vec<RedisString>) -> RedisResult {
    run(ctx, arguments, streams::streams)
}
