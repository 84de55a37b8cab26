//! `QSESS.BYUSER uid [WITHMETA]`: the user's live sessions, soonest to expire first: handles, or one
//! map per session (handle, ip, ua, loc, cc, created, seen, expires). Read-only: works on replicas.
//! When the user has no index at all while a loader is attached (Redis may have lost it), the loader is
//! asked to reload the user's sessions from the mirror first.

use crate::access::{Caller, KeyAccess};
use crate::blocking::AnswerAfterWait;
use crate::effects::Effects;
use crate::error::{quote_input, CommandError};
use crate::read_through::{self, MissOutcome};
use crate::redis_key::{KeyKind, RedisKey};
use crate::reply::{RecordFields, Reply};
use crate::session_lookup::live_record;
use crate::session_options::validate_user_id;
use crate::settings::keyspace;
use qsess_record::Handle;
use redis_module::{Context, RedisValue};

pub(crate) fn byuser(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let (user_id, with_meta) = parse(arguments)?;
    Caller::of(ctx).require_user(user_id, KeyAccess::Read)?;
    let effects = Effects::new(ctx)?;
    let bucket = keyspace().buckets.of_user(user_id);
    let index_name = keyspace().names.user_index(bucket, user_id);
    if RedisKey::open_readable(ctx, &index_name)?.is_none()
        && read_through::on_user_miss::<UserSessionsAfterReload>(&effects, bucket, user_id)? == MissOutcome::Blocked
    {
        return Ok(RedisValue::NoReply);
    }
    reply_sessions(ctx, user_id, with_meta, effects.now_ms)?;
    Ok(RedisValue::NoReply)
}

/// How a `QSESS.BYUSER` that waits for the loader to reload the user's sessions is answered.
struct UserSessionsAfterReload;

impl AnswerAfterWait for UserSessionsAfterReload {
    fn when_ready(ctx: &Context, arguments: &[&[u8]]) -> Result<(), CommandError> {
        reply_after_user_wait(ctx, arguments)
    }

    /// BYUSER answers an array whatever happens: the sessions Redis holds now (none, usually), and an
    /// empty array if even those cannot be read.
    fn at_timeout(ctx: &Context, arguments: &[&[u8]]) -> Result<(), CommandError> {
        reply_after_user_wait(ctx, arguments).or_else(|_| Reply::new(ctx).array(0))
    }
}

/// Answers a `QSESS.BYUSER` that waited for the loader to reload the user's sessions.
fn reply_after_user_wait(ctx: &Context, arguments: &[&[u8]]) -> Result<(), CommandError> {
    let (user_id, with_meta) = parse(arguments)?;
    reply_sessions(ctx, user_id, with_meta, crate::redis_key::now_ms()?)
}

fn parse<'a>(arguments: &[&'a [u8]]) -> Result<(&'a [u8], bool), CommandError> {
    let (user_id, with_meta) = match arguments {
        [_, user_id] => (*user_id, false),
        [_, user_id, option] if option.eq_ignore_ascii_case(b"WITHMETA") => (*user_id, true),
        [_, _, _] => return Err(CommandError::UnknownOption { command: "QSESS.BYUSER", accepted: "WITHMETA" }),
        _ => return Err(CommandError::WrongArity("qsess.byuser")),
    };
    validate_user_id(user_id)?;
    Ok((user_id, with_meta))
}

fn reply_sessions(ctx: &Context, user_id: &[u8], with_meta: bool, now_ms: u64) -> Result<(), CommandError> {
    let keyspace = keyspace();
    let bucket = keyspace.buckets.of_user(user_id);
    let reply = Reply::new(ctx);
    let Some(index) = RedisKey::open_readable(ctx, &keyspace.names.user_index(bucket, user_id))? else {
        return reply.array(0);
    };
    if index.kind()? != KeyKind::SortedSet {
        return Err(CommandError::WrongType(quote_input(index.name().as_slice(), 300)));
    }
    // Members scored at or before now belong to expired sessions that no write has pruned yet, and
    // members whose record is gone were evicted: neither is listed.
    let mut sessions = Vec::new();
    for (member, _) in index.sorted_set_range((now_ms + 1) as f64, f64::INFINITY)? {
        let Ok(handle) = Handle::parse(member.as_slice()) else { continue };
        let Some(key) = RedisKey::open_readable(ctx, &keyspace.names.session(bucket, &handle))? else { continue };
        let owned = live_record(&key, now_ms)?.is_some_and(|record| record.user == Some(user_id));
        if owned {
            sessions.push((handle, key));
        }
    }
    reply.array(sessions.len())?;
    for (handle, key) in &sessions {
        if with_meta {
            let record = live_record(key, now_ms)?.ok_or(CommandError::Internal)?;
            reply.record(handle, &record, RecordFields::Meta)?;
        } else {
            reply.bytes(handle.as_bytes())?;
        }
    }
    Ok(())
}
