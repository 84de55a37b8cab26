//! The caller's ACL key permissions, applied to the keys qsess really touches rather than to its arguments,
//! and on Redis Cluster the check that this node serves those keys' slot.
//!
//! A command declares the id it routes by (so cluster clients can route by it), but the keys it reads
//! and writes are derived from it: `qs:{B}:s:<handle>`, `qs:{B}:u:<uid>`, `qs:{B}:chg`. The declared
//! argument is `NOT_KEY`, which ACL key patterns skip (no raw id in `ACL LOG`), so the module checks
//! the derived names itself, before its first write, with `RedisModule_ACLCheckKeyPermissions` (Redis
//! 7.0+). A refusal is logged to `ACL LOG` under the derived key name, which holds a handle, never the
//! raw id. Every derived key passes through here, which makes it the one place where a cluster node
//! refuses a key of a slot it does not stably serve (cluster_slots.rs).

use crate::cluster_slots;
use crate::error::CommandError;
use crate::session_id::SessionAddress;
use crate::settings::keyspace;
use redis_module::{raw, Context, RedisString};
use std::ptr::NonNull;

/// How a command uses a key, in ACL terms (`%R~` and `%W~` patterns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyAccess {
    /// Reads the key.
    Read,
    /// Writes (creates, updates or deletes) the key.
    Write,
}

impl KeyAccess {
    fn flags(self) -> i32 {
        let flags = match self {
            KeyAccess::Read => raw::REDISMODULE_CMD_KEY_ACCESS,
            KeyAccess::Write => {
                raw::REDISMODULE_CMD_KEY_INSERT | raw::REDISMODULE_CMD_KEY_UPDATE | raw::REDISMODULE_CMD_KEY_DELETE
            }
        };
        flags as i32
    }
}

/// The ACL user running the current command.
pub(crate) struct Caller<'ctx> {
    ctx: &'ctx Context,
    user: CallingUser,
}

enum CallingUser {
    /// Nothing to check: the AOF, a primary's replication stream, or a server without the ACL API.
    Nobody,
    /// A client's user.
    User(NonNull<raw::RedisModuleUser>),
    /// The client's user was deleted while it was connected: it may touch nothing.
    Gone,
}

impl<'ctx> Caller<'ctx> {
    /// Looks the current user up once per command.
    pub(crate) fn of(ctx: &'ctx Context) -> Caller<'ctx> {
        Caller { ctx, user: current_user(ctx) }
    }

    /// Refuses with `NOPERM`, and an `ACL LOG` entry naming `key`, unless the caller may use `key`
    /// as `access` says.
    pub(crate) fn require(&self, key: &[u8], access: KeyAccess) -> Result<(), CommandError> {
        if let CallingUser::Nobody = self.user {
            return Ok(());
        }
        self.require_named(&RedisString::create_from_slice(self.ctx.get_raw(), key), access)
    }

    /// [`Caller::require`] of a key name already held as a Redis string, which the command then
    /// opens the key with (one string per key, not one per check and one per open).
    pub(crate) fn require_named(&self, name: &RedisString, access: KeyAccess) -> Result<(), CommandError> {
        let key = name.as_slice();
        let user = match self.user {
            CallingUser::Nobody => return Ok(()),
            CallingUser::Gone => return Err(CommandError::NoKeyPermission(String::from_utf8_lossy(key).into_owned())),
            CallingUser::User(user) => user,
        };
        if keyspace().buckets.is_cluster() {
            cluster_slots::require_served_key(self.ctx, key)?;
        }
        // SAFETY: reading a function pointer Redis filled at load.
        let Some(check) = (unsafe { raw::RedisModule_ACLCheckKeyPermissions }) else { return Ok(()) };
        // SAFETY: `user` is live until drop, `name` outlives the call.
        if unsafe { check(user.as_ptr(), name.inner, access.flags()) } == raw::REDISMODULE_OK as i32 {
            return Ok(());
        }
        // SAFETY: as above; Redis copies what it logs.
        if let Some(add_log_entry) = unsafe { raw::RedisModule_ACLAddLogEntry } {
            // SAFETY: command context, live user and name.
            unsafe {
                add_log_entry(
                    self.ctx.get_raw(),
                    user.as_ptr(),
                    name.inner,
                    raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_KEY,
                )
            };
        }
        Err(CommandError::NoKeyPermission(String::from_utf8_lossy(key).into_owned()))
    }

    /// The session's record key.
    pub(crate) fn require_session(&self, address: &SessionAddress, access: KeyAccess) -> Result<(), CommandError> {
        self.require(&keyspace().names.session(address.bucket, &address.handle), access)
    }

    /// The user's index key, in the user's bucket.
    pub(crate) fn require_user(&self, user_id: &[u8], access: KeyAccess) -> Result<(), CommandError> {
        let names = &keyspace().names;
        self.require(&names.user_index(keyspace().buckets.of_user(user_id), user_id), access)
    }

    /// The bucket's change stream, which every state change appends to.
    pub(crate) fn require_change_stream(&self, bucket: u32) -> Result<(), CommandError> {
        self.require(&keyspace().names.change_stream(bucket), KeyAccess::Write)
    }

    /// The internal commands (`RESTORE`, `RESTOREUSER`, `LOADER`) are the loader's protocol, whose
    /// other half is the reload channel it subscribes to: only a caller that may use that channel
    /// may speak it. Redis 7.0 has no ACL category for module commands, so `+@all -@dangerous`
    /// would otherwise grant them; the channel is what the daemon's recipe grants (`&qs:reload-user`)
    /// and the application's does not.
    pub(crate) fn require_loader_role(&self) -> Result<(), CommandError> {
        let user = match self.user {
            CallingUser::Nobody => return Ok(()),
            CallingUser::Gone => return Err(CommandError::NotTheLoader),
            CallingUser::User(user) => user,
        };
        // SAFETY: reading a function pointer Redis filled at load.
        let Some(check) = (unsafe { raw::RedisModule_ACLCheckChannelPermissions }) else { return Ok(()) };
        let channel = RedisString::create_from_slice(self.ctx.get_raw(), &keyspace().names.user_reload_channel());
        // SAFETY: live user and channel name; subscribe permission, as the daemon uses it.
        let allowed = unsafe { check(user.as_ptr(), channel.inner, raw::REDISMODULE_CMD_CHANNEL_SUBSCRIBE as i32) };
        if allowed == raw::REDISMODULE_OK as i32 {
            Ok(())
        } else {
            Err(CommandError::NotTheLoader)
        }
    }
}

impl Drop for Caller<'_> {
    fn drop(&mut self) {
        if let CallingUser::User(user) = self.user {
            // SAFETY: reading a function pointer Redis filled at load; `user` came from
            // GetModuleUserFromUserName and is freed once.
            if let Some(free) = unsafe { raw::RedisModule_FreeModuleUser } {
                // SAFETY: as above.
                unsafe { free(user.as_ptr()) };
            }
        }
    }
}

fn current_user(ctx: &Context) -> CallingUser {
    // SAFETY: reading function pointers Redis filled at load; absent before Redis 7.0.
    let apis = unsafe {
        (raw::RedisModule_GetCurrentUserName, raw::RedisModule_GetModuleUserFromUserName, raw::RedisModule_FreeString)
    };
    let (Some(get_name), Some(from_name), Some(free_string)) = apis else { return CallingUser::Nobody };
    // SAFETY: a command context; null when no client runs the command (AOF load, replication).
    let Some(name) = NonNull::new(unsafe { get_name(ctx.get_raw()) }) else { return CallingUser::Nobody };
    // SAFETY: `name` is a live string; the user is null if it was deleted meanwhile.
    let user = NonNull::new(unsafe { from_name(name.as_ptr()) });
    // SAFETY: GetCurrentUserName returns a string the caller owns and must free, with no context.
    unsafe { free_string(std::ptr::null_mut(), name.as_ptr()) };
    user.map_or(CallingUser::Gone, CallingUser::User)
}
