//! A thin safe wrapper over `RedisModuleKey`: exactly the low-level key operations qsess needs.
//!
//! The key API is what makes the module fast (no argument objects or command lookups per step, unlike
//! `RedisModule_Call`), and it never propagates anything by itself: callers replicate every write
//! explicitly through `effects.rs`.

use crate::error::CommandError;
use redis_module::{raw, Context, RedisString};
use std::os::raw::c_int;
use std::ptr::NonNull;

/// Fetches a Redis API function pointer, or fails the command if this server lacks it.
macro_rules! api {
    ($name:ident) => {
        // SAFETY: Redis fills the API table before `RedisModule_OnLoad` and never writes it again, so
        // copying a function pointer out of it is a plain read of initialised memory.
        unsafe { redis_module::raw::$name }.ok_or($crate::error::CommandError::MissingApi(stringify!($name)))?
    };
}
pub(crate) use api;

/// The longest string Redis stores embedded in its object (`OBJ_ENCODING_EMBSTR_SIZE_LIMIT`).
const EMBEDDED_STRING_LIMIT: usize = 44;

/// The kind of value a key holds, as far as qsess cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Empty,
    String,
    SortedSet,
    Stream,
    Other,
}

/// An open key. Closed on drop. Borrowing the context keeps it from outliving the command.
pub(crate) struct RedisKey<'ctx> {
    ctx: &'ctx Context,
    key: NonNull<raw::RedisModuleKey>,
    name: RedisString,
}

impl<'ctx> RedisKey<'ctx> {
    /// Opens `name` for reading and writing. Redis returns a handle even for a missing key.
    pub(crate) fn open_writable(ctx: &'ctx Context, name: &[u8]) -> Result<RedisKey<'ctx>, CommandError> {
        Self::open(ctx, name, (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as c_int)?.ok_or(CommandError::Internal)
    }

    /// Opens `name` for reading; `None` when the key does not exist.
    pub(crate) fn open_readable(ctx: &'ctx Context, name: &[u8]) -> Result<Option<RedisKey<'ctx>>, CommandError> {
        Self::open(ctx, name, raw::REDISMODULE_READ as c_int)
    }

    /// [`RedisKey::open_writable`] of a name already held as a Redis string (shared, not copied).
    pub(crate) fn open_writable_named(ctx: &'ctx Context, name: &RedisString) -> Result<RedisKey<'ctx>, CommandError> {
        let mode = (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as c_int;
        Self::open_string(ctx, name.safe_clone(ctx), mode)?.ok_or(CommandError::Internal)
    }

    /// [`RedisKey::open_readable`] of a name already held as a Redis string (shared, not copied).
    pub(crate) fn open_readable_named(
        ctx: &'ctx Context,
        name: &RedisString,
    ) -> Result<Option<RedisKey<'ctx>>, CommandError> {
        Self::open_string(ctx, name.safe_clone(ctx), raw::REDISMODULE_READ as c_int)
    }

    fn open(ctx: &'ctx Context, name: &[u8], mode: c_int) -> Result<Option<RedisKey<'ctx>>, CommandError> {
        Self::open_string(ctx, RedisString::create_from_slice(ctx.get_raw(), name), mode)
    }

    fn open_string(ctx: &'ctx Context, name: RedisString, mode: c_int) -> Result<Option<RedisKey<'ctx>>, CommandError> {
        let open_key = api!(RedisModule_OpenKey);
        // SAFETY: the context is the live command context and `name` is a valid string it owns.
        let key = unsafe { open_key(ctx.get_raw(), name.inner, mode) };
        Ok(NonNull::new(key.cast()).map(|key| RedisKey { ctx, key, name }))
    }

    pub(crate) fn name(&self) -> &RedisString {
        &self.name
    }

    pub(crate) fn kind(&self) -> Result<KeyKind, CommandError> {
        let key_type = api!(RedisModule_KeyType);
        // SAFETY: `self.key` is an open key handle until drop.
        let kind = unsafe { key_type(self.key.as_ptr()) } as isize;
        Ok(match kind {
            raw::REDISMODULE_KEYTYPE_EMPTY => KeyKind::Empty,
            raw::REDISMODULE_KEYTYPE_STRING => KeyKind::String,
            raw::REDISMODULE_KEYTYPE_ZSET => KeyKind::SortedSet,
            raw::REDISMODULE_KEYTYPE_STREAM => KeyKind::Stream,
            _ => KeyKind::Other,
        })
    }

    /// Fails with `WRONGTYPE` unless the key is missing or holds `expected`.
    pub(crate) fn require_kind(&self, expected: KeyKind) -> Result<(), CommandError> {
        match self.kind()? {
            KeyKind::Empty => Ok(()),
            kind if kind == expected => Ok(()),
            _ => Err(CommandError::WrongType(crate::error::quote_input(self.name.as_slice(), 300))),
        }
    }

    /// The bytes of a string value, borrowed without copying; `None` if the key holds no string.
    pub(crate) fn string_value(&self) -> Result<Option<&[u8]>, CommandError> {
        if self.kind()? != KeyKind::String {
            return Ok(None);
        }
        let string_dma = api!(RedisModule_StringDMA);
        let mut length = 0usize;
        // SAFETY: the key holds a string; READ-mode DMA returns a pointer valid while the key stays
        // open and unmodified, which the borrow of `self` guarantees.
        let bytes = unsafe { string_dma(self.key.as_ptr(), &mut length, raw::REDISMODULE_READ as c_int) };
        if bytes.is_null() {
            return Err(CommandError::Internal);
        }
        // SAFETY: Redis returned `length` readable bytes at `bytes`.
        Ok(Some(unsafe { std::slice::from_raw_parts(bytes.cast::<u8>(), length) }))
    }

    /// Overwrites the string value with `bytes` in place when it has exactly their length, and says
    /// whether it did; otherwise leaves the key alone (the caller sets a new value). Same bytes, same
    /// allocation: only the content changes. The key keeps its expiry.
    pub(crate) fn overwrite_string_in_place(&self, bytes: &[u8]) -> Result<bool, CommandError> {
        // Short values are stored embedded in their object; writing one in place would make Redis
        // convert it first, so those are simply set.
        if bytes.len() <= EMBEDDED_STRING_LIMIT || self.kind()? != KeyKind::String || self.length()? != bytes.len() {
            return Ok(false);
        }
        let string_dma = api!(RedisModule_StringDMA);
        let mut length = 0usize;
        // SAFETY: open writable key holding a string; WRITE-mode DMA unshares the value and returns a
        // pointer to its `length` bytes, valid until the key is closed or modified otherwise.
        let target = unsafe { string_dma(self.key.as_ptr(), &mut length, raw::REDISMODULE_WRITE as c_int) };
        if target.is_null() || length != bytes.len() {
            return Err(CommandError::Internal);
        }
        // SAFETY: `target` points to `length` writable bytes owned by the value, disjoint from `bytes`
        // (a Rust buffer, or a string the key does not hold).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), target.cast::<u8>(), length) };
        Ok(true)
    }

    pub(crate) fn set_string(&self, value: &RedisString) -> Result<(), CommandError> {
        let string_set = api!(RedisModule_StringSet);
        // SAFETY: open writable key and a live string; Redis takes its own reference to the value.
        check(unsafe { string_set(self.key.as_ptr(), value.inner) })
    }

    pub(crate) fn set_expire_at(&self, unix_time_ms: u64) -> Result<(), CommandError> {
        let set_abs_expire = api!(RedisModule_SetAbsExpire);
        // SAFETY: open writable key that holds a value.
        check(unsafe { set_abs_expire(self.key.as_ptr(), unix_time_ms as i64) })
    }

    /// The key's absolute expiry in ms, `None` if it has none or does not exist.
    pub(crate) fn expire_at(&self) -> Result<Option<u64>, CommandError> {
        let get_abs_expire = api!(RedisModule_GetAbsExpire);
        // SAFETY: open key handle.
        let expire = unsafe { get_abs_expire(self.key.as_ptr()) };
        Ok((expire >= 0).then_some(expire as u64))
    }

    pub(crate) fn delete(&self) -> Result<(), CommandError> {
        let delete_key = api!(RedisModule_DeleteKey);
        // SAFETY: open writable key handle.
        check(unsafe { delete_key(self.key.as_ptr()) })
    }

    pub(crate) fn length(&self) -> Result<usize, CommandError> {
        let value_length = api!(RedisModule_ValueLength);
        // SAFETY: open key handle; Redis answers 0 for an empty key.
        Ok(unsafe { value_length(self.key.as_ptr()) })
    }

    pub(crate) fn sorted_set_add(&self, score: f64, member: &RedisString) -> Result<(), CommandError> {
        let zset_add = api!(RedisModule_ZsetAdd);
        let mut flags: c_int = 0;
        // SAFETY: open writable key that is empty or a sorted set (checked by callers).
        check(unsafe { zset_add(self.key.as_ptr(), score, member.inner, &mut flags) })
    }

    /// Removes a member; reports whether it was there. Redis deletes the key when it becomes empty.
    pub(crate) fn sorted_set_remove(&self, member: &RedisString) -> Result<bool, CommandError> {
        let zset_rem = api!(RedisModule_ZsetRem);
        let mut deleted: c_int = 0;
        // SAFETY: open writable key that is empty or a sorted set.
        check(unsafe { zset_rem(self.key.as_ptr(), member.inner, &mut deleted) })?;
        Ok(deleted != 0)
    }

    pub(crate) fn sorted_set_score(&self, member: &RedisString) -> Result<Option<f64>, CommandError> {
        let zset_score = api!(RedisModule_ZsetScore);
        let mut score = 0f64;
        // SAFETY: open key that is a sorted set; Redis answers ERR for a missing member.
        let status = unsafe { zset_score(self.key.as_ptr(), member.inner, &mut score) };
        Ok((status == raw::REDISMODULE_OK as c_int).then_some(score))
    }

    /// Members with `min <= score <= max`, lowest score first.
    pub(crate) fn sorted_set_range(&self, min: f64, max: f64) -> Result<Vec<(RedisString, f64)>, CommandError> {
        if self.kind()? != KeyKind::SortedSet {
            return Ok(Vec::new());
        }
        let first_in_range = api!(RedisModule_ZsetFirstInScoreRange);
        let current_element = api!(RedisModule_ZsetRangeCurrentElement);
        let next = api!(RedisModule_ZsetRangeNext);
        let end_reached = api!(RedisModule_ZsetRangeEndReached);
        let stop = api!(RedisModule_ZsetRangeStop);
        let key = self.key.as_ptr();
        let mut members = Vec::new();
        // SAFETY: the key is an open sorted set; the range iterator is confined to this block and
        // stopped before returning; each element string is owned by us and freed by `RedisString`.
        unsafe {
            if first_in_range(key, min, max, 0, 0) != raw::REDISMODULE_OK as c_int {
                return Ok(members);
            }
            while end_reached(key) == 0 {
                let mut score = 0f64;
                let element = current_element(key, &mut score);
                if element.is_null() {
                    break;
                }
                // The element is a new string owned by us: take it without another reference.
                members.push((RedisString::from_redis_module_string(self.ctx.get_raw(), element), score));
                if next(key) == 0 {
                    break;
                }
            }
            stop(key);
        }
        Ok(members)
    }

    /// Removes the oldest entries so that exactly `length` remain (no approximation).
    pub(crate) fn stream_trim_to_length(&self, length: usize) -> Result<(), CommandError> {
        let trim = api!(RedisModule_StreamTrimByLength);
        // SAFETY: open writable key holding a stream; flags 0 asks for exact trimming.
        let removed = unsafe { trim(self.key.as_ptr(), 0, length.min(i64::MAX as usize) as i64) };
        if removed < 0 {
            return Err(CommandError::Internal);
        }
        Ok(())
    }

    /// Appends an entry with an id Redis picks, and returns that id's two parts (`<ms>-<seq>`).
    pub(crate) fn stream_add(&self, fields_and_values: &[RedisString]) -> Result<(u64, u64), CommandError> {
        let stream_add = api!(RedisModule_StreamAdd);
        let mut arguments: Vec<*mut raw::RedisModuleString> =
            fields_and_values.iter().map(|string| string.inner).collect();
        let mut id = raw::RedisModuleStreamID { ms: 0, seq: 0 };
        // SAFETY: open writable key that is empty or a stream; `arguments` holds an even number of live
        // strings, which Redis copies into the stream.
        let status = unsafe {
            stream_add(
                self.key.as_ptr(),
                raw::REDISMODULE_STREAM_ADD_AUTOID as c_int,
                &mut id,
                arguments.as_mut_ptr(),
                (arguments.len() / 2) as i64,
            )
        };
        if status != raw::REDISMODULE_OK as c_int {
            // EFBIG: something else wrote the largest possible id, and no automatic id is left.
            return Err(match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EFBIG) => {
                    CommandError::StreamExhausted(crate::error::quote_input(self.name.as_slice(), 300))
                }
                _ => CommandError::Internal,
            });
        }
        Ok((id.ms, id.seq))
    }
}

impl Drop for RedisKey<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle is open and closed exactly once, here.
        if let Some(close_key) = unsafe { raw::RedisModule_CloseKey } {
            // SAFETY: the handle is open; this is its only close.
            unsafe { close_key(self.key.as_ptr()) };
        }
    }
}

fn check(status: c_int) -> Result<(), CommandError> {
    if status == raw::REDISMODULE_OK as c_int {
        Ok(())
    } else {
        Err(CommandError::Internal)
    }
}

/// Whether Redis uses more memory than `maxmemory` allows (never, without a `maxmemory`).
pub(crate) fn server_memory_full() -> bool {
    // SAFETY: reading a function pointer Redis filled at load.
    match unsafe { raw::RedisModule_GetUsedMemoryRatio } {
        // SAFETY: takes no arguments and only reads a counter.
        Some(ratio) => (unsafe { ratio() }) >= 1.0,
        None => false,
    }
}

/// The server's clock in ms, the one key expiry uses.
pub(crate) fn now_ms() -> Result<u64, CommandError> {
    let milliseconds = api!(RedisModule_Milliseconds);
    // SAFETY: takes no arguments and only reads the clock.
    Ok(unsafe { milliseconds() }.max(0) as u64)
}
