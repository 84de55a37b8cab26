//! `QSESS.LOADER lease-ms`: qsess-syncd attaches as the loader, or renews its lease, for `lease-ms`;
//! `QSESS.LOADER 0` detaches. While no lease is held, a miss answers nil at once.

use crate::access::Caller;
use crate::error::CommandError;
use crate::loader;
use crate::redis_key::now_ms;
use crate::session_options::parse_integer;
use redis_module::{Context, RedisValue};

/// A lease longer than this would keep clients waiting long after a loader died.
const MAX_LEASE_MS: u64 = 60_000;

pub(crate) fn loader(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let [_, lease] = arguments else {
        return Err(CommandError::WrongArity("qsess.loader"));
    };
    Caller::of(ctx).require_loader_role()?;
    let lease_ms = parse_integer(lease, "lease (ms)", 0, MAX_LEASE_MS)?;
    let until_ms = if lease_ms == 0 { 0 } else { now_ms()? + lease_ms };
    loader::set_lease(until_ms);
    Ok(RedisValue::SimpleStringStatic("OK"))
}
