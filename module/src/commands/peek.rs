//! `QSESS.PEEK sid`: the record without counting as activity. Read-only, so it works on replicas.

use crate::access::{Caller, KeyAccess};
use crate::effects::Effects;
use crate::error::CommandError;
use crate::reply::{RecordFields, Reply};
use crate::session_activity::without_activity;
use crate::session_id;
use crate::session_lookup::session_key_name;
use crate::settings::keyspace;
use redis_module::{Context, RedisValue};

pub(crate) fn peek(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let [_, session_id] = arguments else {
        return Err(CommandError::WrongArity("qsess.peek"));
    };
    let effects = Effects::new(ctx)?;
    let address = session_id::locate(session_id, keyspace().buckets)?;
    let name = session_key_name(ctx, &address);
    Caller::of(ctx).require_named(&name, KeyAccess::Read)?;
    let reply = Reply::new(ctx);
    if !without_activity(&effects, &name, |record| reply.record(&address.handle, record, RecordFields::Full))? {
        reply.null()?;
    }
    Ok(RedisValue::NoReply)
}
