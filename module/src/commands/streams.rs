//! `QSESS.STREAMS [ALL]` (internal, for qsess-syncd): the tags of the buckets whose change stream
//! or miss stream got entries since the previous call, or with `ALL` of every bucket this node
//! serves whose change stream or miss stream exists.
//!
//! On a cluster each hash slot has its own streams and a read across slots is refused, so the daemon
//! asks which ones to read (stream_activity.rs) rather than polling thousands of them.

use crate::access::Caller;
use crate::cluster_slots::{self, SlotSet};
use crate::error::CommandError;
use crate::redis_key::RedisKey;
use crate::settings::keyspace;
use crate::stream_activity;
use redis_module::{Context, RedisValue};

pub(crate) fn streams(ctx: &Context, arguments: &[&[u8]]) -> Result<RedisValue, CommandError> {
    let every_stream = match arguments {
        [_] => false,
        [_, option] if option.eq_ignore_ascii_case(b"ALL") => true,
        [_, _] => return Err(CommandError::UnknownOption { command: "QSESS.STREAMS", accepted: "ALL" }),
        _ => return Err(CommandError::WrongArity("qsess.streams")),
    };
    Caller::of(ctx).require_loader_role()?;
    let keyspace = keyspace();
    let buckets: Vec<u32> = if every_stream {
        let candidates: Vec<u32> = if keyspace.buckets.is_cluster() {
            cluster_slots::with_served_slots(ctx, |served| served.iter().map(u32::from).collect())?
        } else {
            (0..keyspace.buckets.count()).collect()
        };
        let mut existing = Vec::new();
        for bucket in candidates {
            let names = [keyspace.names.change_stream(bucket), keyspace.names.miss_stream(bucket)];
            if names.iter().any(|name| RedisKey::open_readable(ctx, name).is_ok_and(|key| key.is_some())) {
                existing.push(bucket);
            }
        }
        existing
    } else {
        let written: SlotSet = stream_activity::take_written_buckets();
        written.iter().map(u32::from).collect()
    };
    let tags = buckets
        .into_iter()
        .map(|bucket| RedisValue::BulkString(keyspace.names.bucket_tag(bucket).into_owned()))
        .collect();
    Ok(RedisValue::Array(tags))
}
