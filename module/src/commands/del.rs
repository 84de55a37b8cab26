//! `QSESS.DEL sid [sid ...]`: log out. Replies how many of the sessions existed.

use crate::commands::ending::SessionsToEnd;
use crate::effects::Effects;
use crate::error::CommandError;
use crate::session_id;
use crate::settings::keyspace;
use qsess_record::DeleteReason;
use redis_module::{Context, RedisValue};

pub(crate) fn del(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let [_, session_ids @ ..] = arguments else {
        return Err(CommandError::WrongArity("qsess.del"));
    };
    if session_ids.is_empty() {
        return Err(CommandError::WrongArity("qsess.del"));
    }
    let effects = Effects::new(ctx)?;
    let addresses = session_ids
        .iter()
        .map(|session_id| session_id::locate(session_id, keyspace().buckets))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sessions = SessionsToEnd::new(&effects);
    for address in addresses {
        sessions.add(address, None)?;
    }
    let ended = sessions.end_all(DeleteReason::Logout)?;
    Ok(RedisValue::Integer(ended as i64))
}
