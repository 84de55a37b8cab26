//! `QSESS.GET sid [NOTOUCH]`: the session's record, or nil. Counts as activity unless `NOTOUCH`.
//!
//! Activity is debounced: a read writes only when `seen` is older than the touch granularity, so most
//! reads are pure reads and a busy session adds one `touch` change record per granularity.

use crate::access::{Caller, KeyAccess};
use crate::blocking::AnswerAfterWait;
use crate::effects::Effects;
use crate::error::CommandError;
use crate::info::COUNTERS;
use crate::read_through::{self, MissOutcome};
use crate::redis_key::RedisKey;
use crate::reply::{RecordFields, Reply};
use crate::session_activity::{with_activity, without_activity};
use crate::session_id;
use crate::session_lookup::{live_record, session_key_name};
use crate::settings::keyspace;
use redis_module::{Context, RedisValue};

pub(crate) fn get(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let (session_id, touch) = match arguments {
        [_, session_id] => (*session_id, true),
        [_, session_id, option] if option.eq_ignore_ascii_case(b"NOTOUCH") => (*session_id, false),
        [_, _, _] => return Err(CommandError::UnknownOption { command: "QSESS.GET", accepted: "NOTOUCH" }),
        _ => return Err(CommandError::WrongArity("qsess.get")),
    };
    let effects = Effects::new(ctx)?;
    let address = session_id::locate(session_id, keyspace().buckets)?;
    // NOTOUCH only reads; a GET may write activity (and its change entry).
    let caller = Caller::of(ctx);
    let name = session_key_name(ctx, &address);
    if touch {
        caller.require_named(&name, KeyAccess::Write)?;
        caller.require_change_stream(address.bucket)?;
    } else {
        caller.require_named(&name, KeyAccess::Read)?;
    }
    let reply = Reply::new(ctx);
    let found = if touch {
        with_activity(&effects, &address, &name, |record| reply.record(&address.handle, record, RecordFields::Full))?
    } else {
        without_activity(&effects, &name, |record| reply.record(&address.handle, record, RecordFields::Full))?
    };
    if !found && read_through::on_miss::<SessionAfterReload>(&effects, &address)? == MissOutcome::AnswerNil {
        reply.null()?;
    }
    Ok(RedisValue::NoReply)
}

/// How a `QSESS.GET` that waits for a reload is answered.
struct SessionAfterReload;

impl AnswerAfterWait for SessionAfterReload {
    fn when_ready(ctx: &Context, arguments: &[&[u8]]) -> Result<(), CommandError> {
        reply_after_wait(ctx, arguments)
    }

    /// The loader did not answer in time: the session is treated as missing.
    fn at_timeout(ctx: &Context, _arguments: &[&[u8]]) -> Result<(), CommandError> {
        Reply::new(ctx).null()
    }
}

/// Answers a `QSESS.GET` that waited for a reload, once its key was signalled: the restored record,
/// or nil when the loader found nothing (or the session is gone again).
fn reply_after_wait(ctx: &Context, arguments: &[&[u8]]) -> Result<(), CommandError> {
    let reply = Reply::new(ctx);
    let Some(session_id) = arguments.get(1) else {
        return reply.null();
    };
    let address = session_id::locate(session_id, keyspace().buckets)?;
    let now_ms = crate::redis_key::now_ms()?;
    let name = keyspace().names.session(address.bucket, &address.handle);
    let key = RedisKey::open_readable(ctx, &name)?;
    match key.as_ref().map(|key| live_record(key, now_ms)).transpose()?.flatten() {
        Some(record) => {
            COUNTERS.hits.increment();
            reply.record(&address.handle, &record, RecordFields::Full)
        }
        None => reply.null(),
    }
}
