//! `QSESS.RESTOREUSER bucket uid` (internal, for qsess-syncd): the loader has restored every live
//! session the mirror holds for this user; wakes the `QSESS.BYUSER` calls waiting for them and lets
//! further ones answer from Redis for `qsess.negative-cache-ms`.

use crate::access::{Caller, KeyAccess};
use crate::effects::Effects;
use crate::error::CommandError;
use crate::session_options::validate_user_id;
use crate::settings::keyspace;
use crate::waiter_signals;
use redis_module::{Context, RedisValue};

/// The shortest life of the marker: long enough to be there when Redis serves the waiters.
const MIN_MARKER_TTL_MS: u64 = 100;

pub(crate) fn restoreuser(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let [_, bucket, user_id] = arguments else {
        return Err(CommandError::WrongArity("qsess.restoreuser"));
    };
    let caller = Caller::of(ctx);
    caller.require_loader_role()?;
    let buckets = keyspace().buckets;
    let bucket = keyspace().buckets.of_tag(bucket)?;
    validate_user_id(user_id)?;
    let user_bucket = buckets.of_user(user_id);
    if user_bucket != bucket {
        return Err(CommandError::WrongBucket { session_bucket: bucket, user_bucket });
    }
    let effects = Effects::new(ctx)?;
    let names = &keyspace().names;
    let marker = names.user_loaded(bucket, user_id);
    caller.require(&marker, KeyAccess::Write)?;
    let ttl_ms = effects.settings.negative_cache_ms.max(MIN_MARKER_TTL_MS);
    effects.write_marker(&marker, effects.now_ms + ttl_ms)?;
    waiter_signals::signal_key_ready(ctx, &marker)?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}
