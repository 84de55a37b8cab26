//! `QSESS.REVOKE uid handle [handle ...]`: end chosen sessions of a user by handle ("log out that
//! device"). Handles that are not the user's are ignored. Replies how many were ended.

use crate::access::{Caller, KeyAccess};
use crate::effects::Effects;
use crate::error::CommandError;
use crate::session_ending::{Found, SessionsToEnd};
use crate::session_id::SessionAddress;
use crate::session_lookup;
use crate::session_options::validate_user_id;
use crate::settings::keyspace;
use qsess_record::{DeleteReason, Handle};
use redis_module::{Context, RedisString, RedisValue};

pub(crate) fn revoke(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let [_, user_id, handles @ ..] = arguments else {
        return Err(CommandError::WrongArity("qsess.revoke"));
    };
    if handles.is_empty() {
        return Err(CommandError::WrongArity("qsess.revoke"));
    }
    if handles.len() > crate::limits::MAX_IDS_PER_CALL {
        return Err(CommandError::TooManyIds { command: "QSESS.REVOKE", max: crate::limits::MAX_IDS_PER_CALL });
    }
    validate_user_id(user_id)?;
    let handles = handles.iter().map(|handle| Handle::parse(handle)).collect::<Result<Vec<_>, _>>()?;
    let effects = Effects::new(ctx)?;
    let bucket = keyspace().buckets.of_user(user_id);
    let caller = Caller::of(ctx);
    caller.require_user(user_id, KeyAccess::Write)?;
    caller.require_change_stream(bucket)?;
    let index = session_lookup::open_index_writable(ctx, bucket, user_id)?;
    let mut owned = Vec::new();
    let mut stale = Vec::new();
    for handle in handles {
        let member = RedisString::create_from_slice(ctx.get_raw(), handle.as_bytes());
        match index.sorted_set_score(&member)? {
            // An expired member only needs dropping: nothing can bring an expired session back.
            Some(expires_ms) if expires_ms <= effects.now_ms as f64 => stale.push(handle),
            Some(_) if !owned.contains(&handle) => owned.push(handle),
            _ => {}
        }
    }
    let mut sessions = SessionsToEnd::new(&effects).with_index(bucket, user_id, index);
    for handle in owned {
        if sessions.add(SessionAddress { bucket, handle }, Some(user_id))? == Found::NotOwned {
            stale.push(handle);
        }
    }
    for handle in &stale {
        sessions.remove_from_index(bucket, user_id, handle)?;
    }
    let ended = sessions.end_all(DeleteReason::Revoke)?;
    Ok(RedisValue::Integer(ended as i64))
}
