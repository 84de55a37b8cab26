//! `QSESS.SET sid [DATA bytes] [USER uid | ANON] [IP addr] [UA agent] [IDLE ms] [ABSOLUTE ms] [NX | XX] [LIMIT n]`
//!
//! Creates or updates a session; replies its new version, or nil when `NX`/`XX` did not hold.

use crate::effects::Effects;
use crate::error::CommandError;
use crate::session_id;
use crate::session_options::{self, OptionsFor};
use crate::session_write::write_session;
use crate::settings::keyspace;
use redis_module::{Context, RedisValue};

pub(crate) fn set(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let [_, session_id, options @ ..] = arguments else {
        return Err(CommandError::WrongArity("qsess.set"));
    };
    let effects = Effects::new(ctx)?;
    let options = session_options::parse(options, OptionsFor::Set, effects.settings.max_data_bytes)?;
    let address = session_id::locate(session_id, keyspace().buckets)?;
    Ok(match write_session(&effects, &address, &options)? {
        Some(version) => RedisValue::Integer(version as i64),
        None => RedisValue::Null,
    })
}
