//! Writes, each applied through the key API and replicated explicitly, so that one command reaches
//! replicas and the AOF as one MULTI/EXEC of deterministic commands: absolute expiry times, explicit
//! stream ids, and the exact members removed.

use crate::error::CommandError;
use crate::expiry;
use crate::info::COUNTERS;
use crate::redis_key::{KeyKind, RedisKey};
use crate::settings::{keyspace, Settings};
use crate::stream_activity;
use qsess_record::{ChangeRecord, DeleteReason, Handle, SessionRecord};
use redis_module::{Context, RedisString};
use std::cell::RefCell;

/// The context, clock and settings of one command's writes.
pub(crate) struct Effects<'ctx> {
    pub(crate) ctx: &'ctx Context,
    pub(crate) now_ms: u64,
    pub(crate) settings: Settings,
    coalesced: RefCell<Option<CoalescedRemovals>>,
}

/// Key deletions and index removals held back while many sessions end in one command, then
/// replicated as one `DEL` and one `ZREM` per index. `RM_Replicate` looks the command up by name and
/// copies every argument on each call: one call per session and write was a sixth of the time of
/// `QSESS.REVOKEUSER` for a user with 100 sessions. Safe because nothing else the command replicates
/// touches the deleted keys, and the replica applies the whole command as one MULTI/EXEC.
#[derive(Default)]
struct CoalescedRemovals {
    deleted_keys: Vec<Vec<u8>>,
    removed_members: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
}

impl<'ctx> Effects<'ctx> {
    pub(crate) fn new(ctx: &'ctx Context) -> Result<Effects<'ctx>, CommandError> {
        Ok(Effects {
            ctx,
            now_ms: crate::redis_key::now_ms()?,
            settings: Settings::current(),
            coalesced: RefCell::new(None),
        })
    }

    /// Runs `write` with key deletions and index removals replicated together at its end (also when
    /// it fails part way, so the replica gets exactly what was applied here).
    pub(crate) fn with_coalesced_removals<T>(
        &self,
        write: impl FnOnce() -> Result<T, CommandError>,
    ) -> Result<T, CommandError> {
        self.coalesced.replace(Some(CoalescedRemovals::default()));
        let result = write();
        if let Some(removals) = self.coalesced.take() {
            if !removals.deleted_keys.is_empty() {
                let names: Vec<&[u8]> = removals.deleted_keys.iter().map(Vec::as_slice).collect();
                self.ctx.replicate("DEL", names.as_slice());
            }
            for (index_name, members) in &removals.removed_members {
                let mut arguments: Vec<&[u8]> = Vec::with_capacity(members.len() + 1);
                arguments.push(index_name);
                arguments.extend(members.iter().map(Vec::as_slice));
                self.ctx.replicate("ZREM", arguments.as_slice());
            }
        }
        result
    }

    /// Stores an encoded record with its absolute expiry: `SET key value PXAT expires`.
    pub(crate) fn write_record(&self, key: &RedisKey<'_>, encoded: &[u8], expires_ms: u64) -> Result<(), CommandError> {
        let value = RedisString::create_from_slice(self.ctx.get_raw(), encoded);
        key.set_string(&value)?;
        key.set_expire_at(expires_ms)?;
        let expires = expires_ms.to_string();
        self.ctx.replicate("SET", &[key.name().as_slice(), encoded, b"PXAT", expires.as_bytes()]);
        Ok(())
    }

    pub(crate) fn delete_key(&self, key: &RedisKey<'_>) -> Result<(), CommandError> {
        key.delete()?;
        match self.coalesced.borrow_mut().as_mut() {
            Some(removals) => removals.deleted_keys.push(key.name().as_slice().to_vec()),
            None => self.ctx.replicate("DEL", &[key.name().as_slice()]),
        }
        Ok(())
    }

    /// Adds or re-scores a session in its owner's index, dropping members whose sessions are over and
    /// keeping the index alive exactly as long as its longest-lived session.
    pub(crate) fn index_add(&self, index: &RedisKey<'_>, handle: &Handle, expires_ms: u64) -> Result<(), CommandError> {
        self.index_prune_expired(index)?;
        let member = RedisString::create_from_slice(self.ctx.get_raw(), handle.as_bytes());
        index.sorted_set_add(expires_ms as f64, &member)?;
        let score = expires_ms.to_string();
        self.ctx.replicate("ZADD", &[index.name().as_slice(), score.as_bytes(), handle.as_bytes()]);
        if index.expire_at()?.is_none_or(|index_expires_ms| index_expires_ms < expires_ms) {
            index.set_expire_at(expires_ms)?;
            self.ctx.replicate("PEXPIREAT", &[index.name().as_slice(), score.as_bytes()]);
        }
        Ok(())
    }

    pub(crate) fn index_remove(&self, index: &RedisKey<'_>, handle: &Handle) -> Result<bool, CommandError> {
        let member = RedisString::create_from_slice(self.ctx.get_raw(), handle.as_bytes());
        let removed = index.sorted_set_remove(&member)?;
        if !removed {
            return Ok(false);
        }
        match self.coalesced.borrow_mut().as_mut() {
            Some(removals) => {
                let index_name = index.name().as_slice();
                let position = removals.removed_members.iter().position(|(name, _)| name == index_name);
                let position = position.unwrap_or_else(|| {
                    removals.removed_members.push((index_name.to_vec(), Vec::new()));
                    removals.removed_members.len() - 1
                });
                if let Some((_, members)) = removals.removed_members.get_mut(position) {
                    members.push(handle.as_bytes().to_vec());
                }
            }
            None => self.ctx.replicate("ZREM", &[index.name().as_slice(), handle.as_bytes()]),
        }
        Ok(true)
    }

    /// Removes index members whose expiry has passed; their session keys are already gone.
    pub(crate) fn index_prune_expired(&self, index: &RedisKey<'_>) -> Result<(), CommandError> {
        if index.kind()? != KeyKind::SortedSet {
            return Ok(());
        }
        let expired = index.sorted_set_range(f64::NEG_INFINITY, self.now_ms as f64)?;
        if expired.is_empty() {
            return Ok(());
        }
        for (member, _) in &expired {
            index.sorted_set_remove(member)?;
        }
        let now = self.now_ms.to_string();
        self.ctx.replicate("ZREMRANGEBYSCORE", &[index.name().as_slice(), b"-inf", now.as_bytes()]);
        Ok(())
    }

    /// Appends a change record to the bucket's stream and replicates it with the id Redis chose.
    pub(crate) fn append_change(&self, stream: &RedisKey<'_>, change: &ChangeRecord<'_>) -> Result<(), CommandError> {
        let fields = change.fields();
        let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|(name, value)| (name.as_bytes(), value.as_ref())).collect();
        self.append_fields(stream, &pairs)?;
        COUNTERS.stream_entries.increment();
        Ok(())
    }

    /// Appends an entry to a stream and replicates it with the id Redis chose.
    pub(crate) fn append_fields(&self, stream: &RedisKey<'_>, fields: &[(&[u8], &[u8])]) -> Result<(), CommandError> {
        let mut strings = Vec::with_capacity(fields.len() * 2);
        for (name, value) in fields {
            strings.push(RedisString::create_from_slice(self.ctx.get_raw(), name));
            strings.push(RedisString::create_from_slice(self.ctx.get_raw(), value));
        }
        let id = stream.stream_add(&strings)?;
        let mut arguments: Vec<&RedisString> = Vec::with_capacity(strings.len() + 2);
        let id = RedisString::create_from_slice(self.ctx.get_raw(), id.as_bytes());
        arguments.push(stream.name());
        arguments.push(&id);
        arguments.extend(strings.iter());
        self.ctx.replicate("XADD", arguments.as_slice());
        if let Some(bucket) = bucket_of_key(stream.name().as_slice()) {
            stream_activity::note_stream_written(bucket);
        }
        Ok(())
    }

    /// Trims a stream to its newest `length` entries, exactly, so the replica trims the same ones.
    pub(crate) fn trim_stream(&self, stream: &RedisKey<'_>, length: usize) -> Result<(), CommandError> {
        stream.stream_trim_to_length(length)?;
        let length = length.to_string();
        self.ctx.replicate("XTRIM", &[stream.name().as_slice(), b"MAXLEN", length.as_bytes()]);
        Ok(())
    }

    /// Writes a small marker key that expires at `expires_ms`: `SET key 1 PXAT expires`.
    pub(crate) fn write_marker(&self, name: &[u8], expires_ms: u64) -> Result<(), CommandError> {
        let key = RedisKey::open_writable(self.ctx, name)?;
        self.write_value(&key, qsess_record::MARKER_VALUE, expires_ms)
    }

    /// Stores a plain string value that expires at `expires_ms`: `SET key value PXAT expires`.
    pub(crate) fn write_value(&self, key: &RedisKey<'_>, value: &[u8], expires_ms: u64) -> Result<(), CommandError> {
        let string = RedisString::create_from_slice(self.ctx.get_raw(), value);
        key.set_string(&string)?;
        key.set_expire_at(expires_ms)?;
        let expires = expires_ms.to_string();
        self.ctx.replicate("SET", &[key.name().as_slice(), value, b"PXAT", expires.as_bytes()]);
        Ok(())
    }

    /// Leaves a tombstone so that neither a late write nor a reload can bring the session back.
    pub(crate) fn write_tombstone(
        &self,
        bucket: u32,
        handle: &Handle,
        version: u64,
        session_expires_ms: Option<u64>,
    ) -> Result<(), CommandError> {
        let key = RedisKey::open_writable(self.ctx, &keyspace().names.tombstone(bucket, handle))?;
        let ttl_ms = expiry::tombstone_ttl_ms(session_expires_ms, &self.settings, self.now_ms);
        let expires_ms = self.now_ms + ttl_ms;
        let value = RedisString::create_from_slice(self.ctx.get_raw(), version.to_string().as_bytes());
        key.set_string(&value)?;
        key.set_expire_at(expires_ms)?;
        let expires = expires_ms.to_string();
        self.ctx.replicate("SET", &[key.name().as_slice(), value.as_slice(), b"PXAT", expires.as_bytes()]);
        Ok(())
    }

    /// Ends a session: its record, its index entry, a tombstone and a `del` change record.
    /// `index` must be the owner's index key when the session has an owner.
    pub(crate) fn end_session(
        &self,
        ending: &EndingSession<'_, '_>,
        index: Option<&RedisKey<'_>>,
        stream: &RedisKey<'_>,
        reason: DeleteReason,
    ) -> Result<(), CommandError> {
        let (version, expires_ms, user) = match ending.record()? {
            Some(record) => (record.version + 1, record.expires_ms(), record.user.map(<[u8]>::to_vec)),
            // An unreadable record's version is unknown: end it above any version the mirror holds.
            None => (UNKNOWN_VERSION_END, None, None),
        };
        // The change entry first, as in every write: it is the one write that can fail (see set.rs).
        let change = ChangeRecord::Delete { handle: ending.handle, user: user.as_deref(), version, reason };
        self.append_change(stream, &change)?;
        self.delete_key(ending.key)?;
        if let Some(index) = index {
            self.index_remove(index, &ending.handle)?;
        }
        self.write_tombstone(ending.bucket, &ending.handle, version, expires_ms)?;
        // A client waiting for this session to be reloaded gets its answer (nil) now.
        crate::waiter_signals::signal_key_ready(self.ctx, &keyspace().names.tombstone(ending.bucket, &ending.handle))?;
        if reason != DeleteReason::Rotate {
            COUNTERS.deleted.increment();
        }
        if reason == DeleteReason::Revoke || reason == DeleteReason::Limit {
            COUNTERS.revocations.increment();
        }
        Ok(())
    }
}

impl Effects<'_> {
    /// Ends a session Redis does not hold, which the mirror may still have (Redis lost it): a tombstone
    /// so no reload brings it back, its index entry if any, and a `del` change above any version the
    /// mirror holds, so the mirror ends it too.
    pub(crate) fn end_absent_session(
        &self,
        address: &crate::session_id::SessionAddress,
        owner: Option<&[u8]>,
        index: Option<&RedisKey<'_>>,
        stream: &RedisKey<'_>,
        reason: DeleteReason,
    ) -> Result<(), CommandError> {
        let change = ChangeRecord::Delete { handle: address.handle, user: owner, version: UNKNOWN_VERSION_END, reason };
        self.append_change(stream, &change)?;
        if let Some(index) = index {
            self.index_remove(index, &address.handle)?;
        }
        self.write_tombstone(address.bucket, &address.handle, UNKNOWN_VERSION_END, None)?;
        crate::waiter_signals::signal_key_ready(self.ctx, &keyspace().names.tombstone(address.bucket, &address.handle))
    }
}

/// A live session about to be ended, with its record key open.
pub(crate) struct EndingSession<'k, 'ctx> {
    pub(crate) bucket: u32,
    pub(crate) handle: Handle,
    pub(crate) key: &'k RedisKey<'ctx>,
}

impl EndingSession<'_, '_> {
    /// The record being ended, or `None` if it is unreadable.
    fn record(&self) -> Result<Option<SessionRecord<'_>>, CommandError> {
        let bytes = self.key.string_value()?.ok_or(CommandError::Internal)?;
        Ok(SessionRecord::decode(bytes).ok())
    }
}

/// The version a `del` carries when the record is unreadable or absent: the largest a Postgres bigint
/// holds, so the mirror ends whatever version it has.
const UNKNOWN_VERSION_END: u64 = i64::MAX as u64;

/// The bucket of one of qsess's keys, from its hash tag (`<prefix>:{<tag>}:...`).
fn bucket_of_key(name: &[u8]) -> Option<u32> {
    let open = name.iter().position(|&byte| byte == b'{')?;
    let tag_and_rest = name.get(open + 1..)?;
    let close = tag_and_rest.iter().position(|&byte| byte == b'}')?;
    keyspace().buckets.of_tag(tag_and_rest.get(..close)?).ok()
}
