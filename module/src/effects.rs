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
        // An update that keeps the record's length (most do: same data, same agent) overwrites the
        // stored bytes in place: no new value object, no free of the old one, and the key's expiry
        // entry is updated rather than removed and added again, which is what setting a value costs.
        if key.overwrite_string_in_place(encoded)? {
            key.set_expire_at(expires_ms)?;
            replication::set_bytes_pxat(self.ctx, key.name(), encoded, expires_ms)?;
            return Ok(());
        }
        let value = RedisString::create_from_slice(self.ctx.get_raw(), encoded);
        self.write_string(key, &value, expires_ms)
    }

    /// [`Effects::write_record`] for a record already held as a Redis string (the one its `set`
    /// change entry carries): the key, the entry and the replicated `SET` share it.
    pub(crate) fn write_record_string(
        &self,
        key: &RedisKey<'_>,
        value: &RedisString,
        expires_ms: u64,
    ) -> Result<(), CommandError> {
        if key.overwrite_string_in_place(value.as_slice())? {
            key.set_expire_at(expires_ms)?;
            return replication::set_pxat(self.ctx, key.name(), value, expires_ms);
        }
        self.write_string(key, value, expires_ms)
    }

    /// Stores a value already held as a Redis string, with its absolute expiry: `SET key value PXAT
    /// expires`. The key and the replicated command share the one string.
    pub(crate) fn write_string(
        &self,
        key: &RedisKey<'_>,
        value: &RedisString,
        expires_ms: u64,
    ) -> Result<(), CommandError> {
        key.set_string(value)?;
        key.set_expire_at(expires_ms)?;
        replication::set_pxat(self.ctx, key.name(), value, expires_ms)
    }

    pub(crate) fn delete_key(&self, key: &RedisKey<'_>) -> Result<(), CommandError> {
        key.delete()?;
        match self.coalesced.borrow_mut().as_mut() {
            Some(removals) => removals.deleted_keys.push(key.name().as_slice().to_vec()),
            None => replication::key(self.ctx, c"DEL", key.name())?,
        }
        Ok(())
    }

    /// Adds or re-scores a session in its owner's index, dropping members whose sessions are over and
    /// keeping the index alive exactly as long as its longest-lived session.
    pub(crate) fn index_add(&self, index: &RedisKey<'_>, handle: &Handle, expires_ms: u64) -> Result<(), CommandError> {
        self.index_prune_expired(index)?;
        let member = RedisString::create_from_slice(self.ctx.get_raw(), handle.as_bytes());
        index.sorted_set_add(expires_ms as f64, &member)?;
        replication::zadd(self.ctx, index.name(), expires_ms, &member)?;
        if index.expire_at()?.is_none_or(|index_expires_ms| index_expires_ms < expires_ms) {
            index.set_expire_at(expires_ms)?;
            replication::key_and_number(self.ctx, c"PEXPIREAT", index.name(), expires_ms)?;
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
            None => replication::zrem(self.ctx, index.name(), &member)?,
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
        replication::zremrangebyscore_to(self.ctx, index.name(), self.now_ms)
    }

    /// Appends a change record to the bucket's stream and replicates it with the id Redis chose.
    pub(crate) fn append_change(&self, stream: &RedisKey<'_>, change: &ChangeRecord<'_>) -> Result<(), CommandError> {
        let fields = change.fields();
        let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|(name, value)| (name.as_bytes(), value.as_ref())).collect();
        self.append_fields(stream, &pairs)?;
        COUNTERS.stream_entries.increment();
        Ok(())
    }

    /// [`Effects::append_change`] for a `set` whose record is already held as a Redis string: the
    /// entry's `r` field shares it rather than copying the record once more.
    pub(crate) fn append_change_sharing_record(
        &self,
        stream: &RedisKey<'_>,
        change: &ChangeRecord<'_>,
        record: &RedisString,
    ) -> Result<(), CommandError> {
        let fields = change.fields();
        let mut strings = Vec::with_capacity(fields.len() * 2 + 2);
        for (name, value) in &fields {
            strings.push(RedisString::create_from_slice(self.ctx.get_raw(), name.as_bytes()));
            strings.push(match *name {
                "r" => record.safe_clone(self.ctx),
                _ => RedisString::create_from_slice(self.ctx.get_raw(), value),
            });
        }
        self.append_strings(stream, strings)?;
        COUNTERS.stream_entries.increment();
        Ok(())
    }

    /// Appends an entry to a stream and replicates it with the id Redis chose.
    pub(crate) fn append_fields(&self, stream: &RedisKey<'_>, fields: &[(&[u8], &[u8])]) -> Result<(), CommandError> {
        let mut strings = Vec::with_capacity(fields.len() * 2 + 2);
        for (name, value) in fields {
            strings.push(RedisString::create_from_slice(self.ctx.get_raw(), name));
            strings.push(RedisString::create_from_slice(self.ctx.get_raw(), value));
        }
        self.append_strings(stream, strings)
    }

    /// Appends an entry of field and value strings to a stream and replicates it with the id Redis
    /// chose (`XADD key <id> field value ...`, sharing the strings).
    fn append_strings(&self, stream: &RedisKey<'_>, strings: Vec<RedisString>) -> Result<(), CommandError> {
        let (ms, seq) = stream.stream_add(&strings)?;
        let id = RedisString::create_from_slice(self.ctx.get_raw(), stream_id_text(ms, seq).as_slice());
        let mut arguments: Vec<*mut redis_module::raw::RedisModuleString> = Vec::with_capacity(strings.len() + 2);
        arguments.push(stream.name().inner);
        arguments.push(id.inner);
        arguments.extend(strings.iter().map(|string| string.inner));
        replication::vector(self.ctx, c"XADD", &arguments)?;
        if let Some(bucket) = bucket_of_key(stream.name().as_slice()) {
            stream_activity::note_stream_written(bucket);
        }
        Ok(())
    }

    /// Trims a stream to its newest `length` entries, exactly, so the replica trims the same ones.
    pub(crate) fn trim_stream(&self, stream: &RedisKey<'_>, length: usize) -> Result<(), CommandError> {
        stream.stream_trim_to_length(length)?;
        replication::xtrim_maxlen(self.ctx, stream.name(), length as u64)
    }

    /// Writes a small marker key that expires at `expires_ms`: `SET key 1 PXAT expires`.
    pub(crate) fn write_marker(&self, name: &[u8], expires_ms: u64) -> Result<(), CommandError> {
        let key = RedisKey::open_writable(self.ctx, name)?;
        self.write_value(&key, qsess_record::MARKER_VALUE, expires_ms)
    }

    /// Stores a plain string value that expires at `expires_ms`: `SET key value PXAT expires`.
    pub(crate) fn write_value(&self, key: &RedisKey<'_>, value: &[u8], expires_ms: u64) -> Result<(), CommandError> {
        let string = RedisString::create_from_slice(self.ctx.get_raw(), value);
        self.write_string(key, &string, expires_ms)
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
        self.write_string(&key, &value, expires_ms)
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

/// `<ms>-<seq>`, a stream id as `XADD` takes it.
fn stream_id_text(ms: u64, seq: u64) -> Vec<u8> {
    let mut text = Vec::with_capacity(24);
    let mut number = itoa_u64(ms);
    text.append(&mut number);
    text.push(b'-');
    text.append(&mut itoa_u64(seq));
    text
}

fn itoa_u64(mut value: u64) -> Vec<u8> {
    let mut digits = Vec::with_capacity(20);
    loop {
        digits.push(b'0' + (value % 10) as u8);
        value /= 10;
        if value == 0 {
            break;
        }
    }
    digits.reverse();
    digits
}

/// `RedisModule_Replicate` called with the strings qsess already holds (`s`, `v`: Redis takes a
/// reference, no copy) and numbers as numbers (`l`: Redis writes them in decimal), rather than through
/// the crate's `Context::replicate`, which allocates a C string for the command name and copies every
/// argument into a new string on each call: a tenth of a `QSESS.SET` replicated five commands that way.
mod replication {
    use crate::error::CommandError;
    use crate::redis_key::api;
    use redis_module::{raw, Context, RedisString};
    use std::ffi::CStr;
    use std::os::raw::{c_int, c_longlong};

    /// The write being replicated is already applied, so a refusal cannot fail the command (that
    /// would leave it half written); Redis refuses only a command name it does not know, and these
    /// are fixed. The crate's `Context::replicate` ignores the status the same way.
    fn check(_status: c_int) -> Result<(), CommandError> {
        Ok(())
    }

    fn number(value: u64) -> c_longlong {
        value.min(i64::MAX as u64) as c_longlong
    }

    /// `SET key value PXAT ms`.
    pub(super) fn set_pxat(ctx: &Context, key: &RedisString, value: &RedisString, ms: u64) -> Result<(), CommandError> {
        let replicate = api!(RedisModule_Replicate);
        // SAFETY: command context; the format names two strings, a C string and a long long, as passed.
        check(unsafe {
            replicate(
                ctx.get_raw(),
                c"SET".as_ptr(),
                c"sscl".as_ptr(),
                key.inner,
                value.inner,
                c"PXAT".as_ptr(),
                number(ms),
            )
        })
    }

    /// `SET key <bytes> PXAT ms`, for a value the key holds in place (Redis copies `bytes`).
    pub(super) fn set_bytes_pxat(ctx: &Context, key: &RedisString, bytes: &[u8], ms: u64) -> Result<(), CommandError> {
        let replicate = api!(RedisModule_Replicate);
        // SAFETY: as above; `b` takes a pointer and a size_t length.
        check(unsafe {
            replicate(
                ctx.get_raw(),
                c"SET".as_ptr(),
                c"sbcl".as_ptr(),
                key.inner,
                bytes.as_ptr().cast::<std::os::raw::c_char>(),
                bytes.len(),
                c"PXAT".as_ptr(),
                number(ms),
            )
        })
    }

    /// `<command> key`, e.g. `DEL key`.
    pub(super) fn key(ctx: &Context, command: &CStr, key: &RedisString) -> Result<(), CommandError> {
        let replicate = api!(RedisModule_Replicate);
        // SAFETY: command context; one string.
        check(unsafe { replicate(ctx.get_raw(), command.as_ptr(), c"s".as_ptr(), key.inner) })
    }

    /// `<command> key ms`, e.g. `PEXPIREAT key ms`.
    pub(super) fn key_and_number(
        ctx: &Context,
        command: &CStr,
        key: &RedisString,
        value: u64,
    ) -> Result<(), CommandError> {
        let replicate = api!(RedisModule_Replicate);
        // SAFETY: command context; a string and a long long.
        check(unsafe { replicate(ctx.get_raw(), command.as_ptr(), c"sl".as_ptr(), key.inner, number(value)) })
    }

    /// `ZADD key score member`, the score an integer (an expiry in ms).
    pub(super) fn zadd(ctx: &Context, key: &RedisString, score: u64, member: &RedisString) -> Result<(), CommandError> {
        let replicate = api!(RedisModule_Replicate);
        // SAFETY: command context; a string, a long long and a string.
        check(unsafe {
            replicate(ctx.get_raw(), c"ZADD".as_ptr(), c"sls".as_ptr(), key.inner, number(score), member.inner)
        })
    }

    /// `ZREM key member`.
    pub(super) fn zrem(ctx: &Context, key: &RedisString, member: &RedisString) -> Result<(), CommandError> {
        let replicate = api!(RedisModule_Replicate);
        // SAFETY: command context; two strings.
        check(unsafe { replicate(ctx.get_raw(), c"ZREM".as_ptr(), c"ss".as_ptr(), key.inner, member.inner) })
    }

    /// `ZREMRANGEBYSCORE key -inf ms`.
    pub(super) fn zremrangebyscore_to(ctx: &Context, key: &RedisString, ms: u64) -> Result<(), CommandError> {
        let replicate = api!(RedisModule_Replicate);
        // SAFETY: command context; a string, a C string and a long long.
        check(unsafe {
            replicate(
                ctx.get_raw(),
                c"ZREMRANGEBYSCORE".as_ptr(),
                c"scl".as_ptr(),
                key.inner,
                c"-inf".as_ptr(),
                number(ms),
            )
        })
    }

    /// `XTRIM key MAXLEN n`.
    pub(super) fn xtrim_maxlen(ctx: &Context, key: &RedisString, length: u64) -> Result<(), CommandError> {
        let replicate = api!(RedisModule_Replicate);
        // SAFETY: command context; a string, a C string and a long long.
        check(unsafe {
            replicate(ctx.get_raw(), c"XTRIM".as_ptr(), c"scl".as_ptr(), key.inner, c"MAXLEN".as_ptr(), number(length))
        })
    }

    /// `<command> arg ...` over strings qsess holds.
    pub(super) fn vector(
        ctx: &Context,
        command: &CStr,
        arguments: &[*mut raw::RedisModuleString],
    ) -> Result<(), CommandError> {
        let replicate = api!(RedisModule_Replicate);
        // SAFETY: command context; `v` takes an array of live strings and its size_t length; Redis
        // takes its own references.
        check(unsafe { replicate(ctx.get_raw(), command.as_ptr(), c"v".as_ptr(), arguments.as_ptr(), arguments.len()) })
    }
}
