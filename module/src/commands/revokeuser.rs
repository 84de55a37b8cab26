//! `QSESS.REVOKEUSER uid [EXCEPT sid]`: end all of a user's sessions ("log out everywhere"), or all but
//! the current one ("log out other devices"). Replies how many were ended.

use crate::access::{Caller, KeyAccess};
use crate::effects::Effects;
use crate::error::CommandError;
use crate::redis_key::{KeyKind, RedisKey};
use crate::session_ending::{Found, SessionsToEnd};
use crate::session_id::{self, SessionAddress};
use crate::session_lookup;
use crate::session_options::validate_user_id;
use crate::settings::keyspace;
use qsess_record::{DeleteReason, Handle, UserRevocation, UserRevocationValue};
use redis_module::{Context, RedisValue};

pub(crate) fn revokeuser(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let (user_id, except) = match arguments {
        [_, user_id] => (*user_id, None),
        [_, user_id, option, session_id] if option.eq_ignore_ascii_case(b"EXCEPT") => (*user_id, Some(*session_id)),
        [_, _, option, ..] if !option.eq_ignore_ascii_case(b"EXCEPT") => {
            return Err(CommandError::UnknownOption { command: "QSESS.REVOKEUSER", accepted: "EXCEPT" })
        }
        _ => return Err(CommandError::WrongArity("qsess.revokeuser")),
    };
    validate_user_id(user_id)?;
    let keyspace = keyspace();
    let except = except.map(|session_id| session_id::locate(session_id, keyspace.buckets)).transpose()?;
    let effects = Effects::new(ctx)?;
    let bucket = keyspace.buckets.of_user(user_id);
    let caller = Caller::of(ctx);
    caller.require_user(user_id, KeyAccess::Write)?;
    caller.require_change_stream(bucket)?;
    let index = session_lookup::open_index_writable(ctx, bucket, user_id)?;
    // Checked before any session ends: a foreign value there must refuse the whole command.
    let revocation_key = RedisKey::open_writable(ctx, &keyspace.names.user_revocation(bucket, user_id))?;
    revocation_key.require_kind(KeyKind::String)?;
    let members = index.sorted_set_range(f64::NEG_INFINITY, f64::INFINITY)?;
    let mut sessions = SessionsToEnd::new(&effects).with_index(bucket, user_id, index);
    let mut stale = Vec::new();
    for (member, expires_ms) in members {
        let Ok(handle) = Handle::parse(member.as_slice()) else { continue };
        if except.is_some_and(|except| except.handle == handle) {
            continue;
        }
        // An expired member only needs dropping: nothing can bring an expired session back.
        if expires_ms <= effects.now_ms as f64 {
            stale.push(handle);
            continue;
        }
        if sessions.add(SessionAddress { bucket, handle }, Some(user_id))? == Found::NotOwned {
            stale.push(handle);
        }
    }
    for handle in &stale {
        sessions.remove_from_index(bucket, user_id, handle)?;
    }
    let ended = sessions.end_all(DeleteReason::Revoke)?;
    record_user_revocation(&effects, &revocation_key, bucket, user_id, except.map(|except| except.handle))?;
    Ok(RedisValue::Integer(ended as i64))
}

/// Remembers when the user revoked everything, so a reload from the mirror cannot bring back a session
/// Redis no longer listed (it lost its data, or evicted it), and tells the mirror to end those too.
/// Kept as long as tombstones: long enough to outlast the mirror's lag.
fn record_user_revocation(
    effects: &Effects<'_>,
    key: &RedisKey<'_>,
    bucket: u32,
    user_id: &[u8],
    except: Option<Handle>,
) -> Result<(), CommandError> {
    let revocation = UserRevocation { user: user_id, at_ms: effects.now_ms, except };
    let stream = session_lookup::open_stream_writable(effects.ctx, bucket)?;
    let value =
        UserRevocationValue { at_ms: revocation.at_ms, except: revocation.except.as_ref().map(Handle::as_bytes) }
            .encode();
    effects.write_value(key, &value, effects.now_ms + effects.settings.tombstone_ttl_ms)?;
    let fields = revocation.fields();
    let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|(name, value)| (name.as_bytes(), value.as_ref())).collect();
    effects.append_fields(&stream, &pairs)?;
    crate::info::COUNTERS.stream_entries.increment();
    Ok(())
}
