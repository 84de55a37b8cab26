//! `QSESS.NEW [DATA bytes] [USER uid | ANON] [IP addr] [UA agent] [IDLE ms] [ABSOLUTE ms] [LIMIT n]`
//!
//! Mints a session id from the OS CSPRNG, creates the session, and replies the id.
//!
//! On a cluster the id is minted in the user's hash slot, which clients route to by the uid: so
//! `USER uid` must come first (the routing argument is the second word). An anonymous session goes
//! to a random slot this node serves, wherever the call was routed.

use crate::cluster_slots;
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
        Some(Owner::User(_)) if buckets.is_cluster() && !starts_with_user(arguments) => {
            return Err(CommandError::NewUserNotFirst)
        }
        Some(Owner::User(user_id)) => buckets.of_user(user_id),
        _ if buckets.is_cluster() => random_served_slot(ctx)?,
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

fn starts_with_user(arguments: &[&[u8]]) -> bool {
    arguments.get(1).is_some_and(|option| option.eq_ignore_ascii_case(b"USER"))
}

/// A slot this node serves stably, at random, so anonymous sessions spread over the node's slots.
fn random_served_slot(ctx: &Context) -> Result<u32, CommandError> {
    let pick = random_below(u32::MAX)? as usize;
    let slot = cluster_slots::with_served_slots(ctx, |served| served.nth_wrapping(pick))?;
    slot.map(u32::from).ok_or(CommandError::NoSlotServed)
}
