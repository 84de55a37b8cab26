//! `QSESS.NEW [DATA bytes] [USER uid | ANON] [IP addr] [UA agent] [IDLE ms] [ABSOLUTE ms] [LIMIT n]`
//!
//! Mints a session id from the OS CSPRNG, creates the session, and replies the id.

use crate::effects::Effects;
use crate::error::CommandError;
use crate::session_id;
use crate::session_options::{self, Condition, OptionsFor, Owner};
use crate::session_write::write_session;
use crate::settings::keyspace;
use redis_module::{Context, RedisValue};

pub(crate) fn new(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let [_, options @ ..] = arguments else {
        return Err(CommandError::WrongArity("qsess.new"));
    };
    let effects = Effects::new(ctx)?;
    let mut options = session_options::parse(options, OptionsFor::New, effects.settings.max_data_bytes)?;
    options.condition = Some(Condition::OnlyCreate);
    let buckets = keyspace().buckets;
    let bucket = match options.owner {
        Some(Owner::User(user_id)) => buckets.of_user(user_id),
        // An anonymous session may live anywhere; spread them evenly.
        _ => random_below(buckets.count())?,
    };
    let session_id = session_id::mint(buckets, bucket)?;
    let address = session_id::locate(&session_id, buckets)?;
    // A collision with a live or revoked id of 192 random bits would be a broken random source.
    write_session(&effects, &address, &options)?.ok_or(CommandError::Internal)?;
    Ok(RedisValue::StringBuffer(session_id))
}

fn random_below(bound: u32) -> Result<u32, CommandError> {
    if bound <= 1 {
        return Ok(0);
    }
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).map_err(|_| CommandError::Internal)?;
    Ok(u32::from_le_bytes(bytes) % bound)
}
