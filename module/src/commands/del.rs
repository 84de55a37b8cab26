//! `QSESS.DEL sid [sid ...]`: log out. Replies how many of the sessions existed.

use crate::access::{Caller, KeyAccess};
use crate::effects::Effects;
use crate::error::CommandError;
use crate::limits::MAX_IDS_PER_CALL;
use crate::redis_key::server_memory_full;
use crate::session_ending::{Found, SessionsToEnd};
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
    if session_ids.len() > MAX_IDS_PER_CALL {
        return Err(CommandError::TooManyIds { command: "QSESS.DEL", max: MAX_IDS_PER_CALL });
    }
    let effects = Effects::new(ctx)?;
    let addresses = session_ids
        .iter()
        .map(|session_id| session_id::locate(session_id, keyspace().buckets))
        .collect::<Result<Vec<_>, _>>()?;
    // Clients route the call by its first id; on a cluster the others must share its slot.
    let first_bucket = addresses.first().map(|address| address.bucket);
    if keyspace().buckets.is_cluster() && addresses.iter().any(|address| Some(address.bucket) != first_bucket) {
        return Err(CommandError::IdsInSeveralSlots { command: "QSESS.DEL" });
    }
    let caller = Caller::of(ctx);
    for address in &addresses {
        caller.require_session(address, KeyAccess::Write)?;
        caller.require_change_stream(address.bucket)?;
    }
    let mut sessions = SessionsToEnd::new(&effects);
    // Ending an id Redis does not hold adds a tombstone and a change entry: under maxmemory that
    // would let unknown ids fill Redis, so only ids it holds (whose ending frees memory) are ended.
    let memory_full = server_memory_full();
    for address in addresses {
        if sessions.add(address, None)? == Found::Absent && memory_full {
            return Err(CommandError::OutOfMemoryForAbsentId);
        }
    }
    let ended = sessions.end_all(DeleteReason::Logout)?;
    Ok(RedisValue::Integer(ended as i64))
}
