//! `QSESS.REVOKEUSER uid [EXCEPT sid]`: end all of a user's sessions ("log out everywhere"), or all but
//! the current one ("log out other devices"). Replies how many were ended.

use crate::commands::ending::SessionsToEnd;
use crate::effects::Effects;
use crate::error::{quote_input, CommandError};
use crate::session_id::{self, SessionAddress};
use crate::session_lookup;
use crate::session_options::validate_user_id;
use crate::settings::keyspace;
use qsess_record::{DeleteReason, Handle};
use redis_module::{Context, RedisValue};

pub(crate) fn revokeuser(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let (user_id, except) = match arguments {
        [_, user_id] => (*user_id, None),
        [_, user_id, option, session_id] if option.eq_ignore_ascii_case(b"EXCEPT") => (*user_id, Some(*session_id)),
        [_, _, option, ..] if !option.eq_ignore_ascii_case(b"EXCEPT") => {
            return Err(CommandError::UnknownOption {
                command: "QSESS.REVOKEUSER",
                option: quote_input(option, 64),
                accepted: "EXCEPT",
            })
        }
        _ => return Err(CommandError::WrongArity("qsess.revokeuser")),
    };
    validate_user_id(user_id)?;
    let keyspace = keyspace();
    let except = except.map(|session_id| session_id::locate(session_id, keyspace.buckets)).transpose()?;
    let effects = Effects::new(ctx)?;
    let bucket = keyspace.buckets.of_user(user_id);
    let index = session_lookup::open_index_writable(ctx, bucket, user_id)?;
    let members = index.sorted_set_range(f64::NEG_INFINITY, f64::INFINITY)?;
    let mut sessions = SessionsToEnd::new(&effects).with_index(bucket, user_id, index);
    let mut stale = Vec::new();
    for (member, _) in members {
        let Ok(handle) = Handle::parse(member.as_slice()) else { continue };
        if except.is_some_and(|except| except.handle == handle) {
            continue;
        }
        if !sessions.add_if_live(SessionAddress { bucket, handle }, Some(user_id))? {
            stale.push(handle);
        }
    }
    for handle in &stale {
        sessions.remove_from_index(bucket, user_id, handle)?;
    }
    let ended = sessions.end_all(DeleteReason::Revoke)?;
    Ok(RedisValue::Integer(ended as i64))
}
