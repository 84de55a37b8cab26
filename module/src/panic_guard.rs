//! Panics stop at the FFI boundary: the command answers `ERR internal error` and the Redis log says
//! where it happened, instead of the whole server aborting.

use crate::error::CommandError;
use crate::info::COUNTERS;
use redis_module::{Context, RedisError};
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL_HOOK: Once = Once::new();

/// Records panic messages for [`catch`] instead of printing them to a stderr nobody reads.
pub(crate) fn install_hook() {
    INSTALL_HOOK.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let message = info.to_string();
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(message));
        }));
    });
}

/// Runs `body`; `None` if it panicked, after logging the panic to the Redis log.
pub(crate) fn catch<T>(ctx: &Context, body: impl FnOnce() -> T) -> Option<T> {
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => Some(value),
        Err(_) => {
            let message = LAST_PANIC.with(|last| last.borrow_mut().take()).unwrap_or_default();
            ctx.log_warning(&format!("qsess: a command failed with an internal error and was stopped: {message}"));
            None
        }
    }
}

/// Runs `body` as every reply is run, in a command or in a blocked client's callback: a panic becomes
/// `ERR internal error` and a typed error its one mapping ([`CommandError::into_redis_error`]), each
/// counted in `INFO qsess`.
pub(crate) fn guarded_reply<T>(ctx: &Context, body: impl FnOnce() -> Result<T, CommandError>) -> Result<T, RedisError> {
    match catch(ctx, body) {
        Some(Ok(value)) => Ok(value),
        Some(Err(error)) => {
            COUNTERS.errors.increment();
            Err(error.into_redis_error())
        }
        None => {
            COUNTERS.panics.increment();
            Err(RedisError::Str("ERR internal error"))
        }
    }
}
