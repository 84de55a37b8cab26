//! `QSESS.TOUCH sid`: activity without reading; replies 1 if the session is live, else 0.

use crate::access::{Caller, KeyAccess};
use crate::effects::Effects;
use crate::error::CommandError;
use crate::session_activity::with_activity;
use crate::session_id;
use crate::session_lookup::session_key_name;
use crate::settings::keyspace;
use redis_module::{Context, RedisValue};

pub(crate) fn touch(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let [_, session_id] = arguments else {
        return Err(CommandError::WrongArity("qsess.touch"));
    };
    let effects = Effects::new(ctx)?;
    let address = session_id::locate(session_id, keyspace().buckets)?;
    let caller = Caller::of(ctx);
    let name = session_key_name(ctx, &address);
    caller.require_named(&name, KeyAccess::Write)?;
    caller.require_change_stream(address.bucket)?;
    let live = with_activity(&effects, &address, &name, |_| Ok(()))?;
    Ok(RedisValue::Integer(i64::from(live)))
}
