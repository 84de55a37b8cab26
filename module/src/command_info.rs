//! Arity, summaries, routing key specs and ACL categories of every command, set through
//! `RedisModule_SetCommandInfo` (7.0+).
//!
//! The crate's `#[command]` macro cannot be used: it breaks loading on Redis 7.0. qsess's arguments
//! are raw session ids and user ids, from which the real keys (`qs:{B}:s:<handle>`, ...) are derived,
//! so a command declares one argument, the one its data's hash slot comes from, as a `NOT_KEY` key
//! spec: cluster clients (and Redis's own `MOVED` redirection) route by it, while ACL key patterns,
//! and so `ACL LOG`, skip it; the module checks the caller's ACL against the derived keys itself
//! (access.rs). Client tracking remembers the declared argument of `readonly` commands, which is why
//! `QSESS.PEEK` (a session id) and `QSESS.BYUSER` (a uid, whose cached answer nothing would ever
//! invalidate) are not flagged `readonly`: they write nothing all the same and run on replicas, which
//! refuse only `write` commands. ARCHITECTURE.md, Redis Cluster.

use redis_module::{raw, Context};
use std::ffi::CString;
use std::mem::size_of;

/// One command's registration data: name, flags and the information Redis shows in `COMMAND INFO/DOCS`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CommandSpec {
    pub(crate) name: &'static str,
    pub(crate) flags: &'static str,
    /// The legacy key range given at registration is empty (0, 0, 0); the routing argument below
    /// replaces it through a key spec.
    pub(crate) first_key: i32,
    pub(crate) last_key: i32,
    pub(crate) key_step: i32,
    /// The argument position cluster clients route by (a `NOT_KEY` key spec), if any.
    pub(crate) routing_argument: Option<i32>,
    /// ACL categories on servers that support them for modules (Redis 7.2+, Valkey); on 7.0 module
    /// commands belong to no category and are granted by name.
    pub(crate) acl_categories: &'static str,
    pub(crate) arity: i32,
    pub(crate) summary: &'static str,
    pub(crate) complexity: &'static str,
}

impl CommandSpec {
    /// A command clients route by the argument at `position` (a `NOT_KEY` key spec).
    const fn routed_by(position: i32, name: &'static str, flags: &'static str) -> CommandSpec {
        CommandSpec { routing_argument: Some(position), ..CommandSpec::unrouted(name, flags) }
    }

    /// A command with no routing argument: it runs on the node it is sent to.
    const fn unrouted(name: &'static str, flags: &'static str) -> CommandSpec {
        CommandSpec {
            name,
            flags,
            first_key: 0,
            last_key: 0,
            key_step: 0,
            routing_argument: None,
            acl_categories: "",
            arity: 0,
            summary: "",
            complexity: "",
        }
    }

    const fn acl(self, acl_categories: &'static str, arity: i32) -> CommandSpec {
        CommandSpec { acl_categories, arity, ..self }
    }

    const fn documented(self, summary: &'static str, complexity: &'static str) -> CommandSpec {
        CommandSpec { summary, complexity, ..self }
    }
}

pub(crate) const SET: CommandSpec =
    CommandSpec::routed_by(1, "qsess.set", "write deny-oom no-monitor no-slowlog").acl("write slow", -2).documented(
        "Creates or updates a session and its owner's index; replies the new version",
        "O(log N) where N is the owner's session count; O(N) with LIMIT",
    );

pub(crate) const NEW: CommandSpec =
    CommandSpec::routed_by(2, "qsess.new", "write deny-oom no-monitor no-slowlog").acl("write slow", -1).documented(
        "Mints a session id, creates the session and replies the id",
        "O(log N) where N is the owner's session count; O(N) with LIMIT",
    );

pub(crate) const GET: CommandSpec = CommandSpec::routed_by(1, "qsess.get", "write fast blocking no-monitor no-slowlog")
    .acl("write fast", -2)
    .documented(
        "Replies a session's record and counts the read as activity (unless NOTOUCH)",
        "O(log N) where N is the owner's session count",
    );

pub(crate) const PEEK: CommandSpec = CommandSpec::routed_by(1, "qsess.peek", "fast no-monitor no-slowlog")
    .acl("read fast", 2)
    .documented("Replies a session's record without counting as activity; works on replicas", "O(1)");

pub(crate) const TOUCH: CommandSpec =
    CommandSpec::routed_by(1, "qsess.touch", "write fast no-monitor no-slowlog").acl("write fast", 2).documented(
        "Counts as activity on a session without reading it; replies 1 if it is live",
        "O(log N) where N is the owner's session count",
    );

pub(crate) const ROTATE: CommandSpec =
    CommandSpec::routed_by(1, "qsess.rotate", "write deny-oom fast no-monitor no-slowlog")
        .acl("write fast", 3)
        .documented(
            "Moves a session to a new id atomically; the old id is revoked",
            "O(log N) where N is the owner's session count",
        );

pub(crate) const DEL: CommandSpec = CommandSpec::routed_by(1, "qsess.del", "write fast no-monitor no-slowlog")
    .acl("write fast", -2)
    .documented("Ends sessions (log out); replies how many existed", "O(K log N) for K ids");

pub(crate) const BYUSER: CommandSpec =
    CommandSpec::routed_by(1, "qsess.byuser", "blocking").acl("read slow", -2).documented(
        "Lists a user's live sessions by handle, or with their metadata",
        "O(N) where N is the user's session count",
    );

pub(crate) const REVOKEUSER: CommandSpec =
    CommandSpec::routed_by(1, "qsess.revokeuser", "write no-monitor no-slowlog").acl("write slow", -2).documented(
        "Ends all of a user's sessions, optionally all but one; replies the count",
        "O(N) where N is the user's session count",
    );

pub(crate) const REVOKE: CommandSpec = CommandSpec::routed_by(1, "qsess.revoke", "write")
    .acl("write slow", -3)
    .documented("Ends chosen sessions of a user by handle; replies the count", "O(K log N) for K handles");

pub(crate) const RESTORE: CommandSpec =
    CommandSpec::routed_by(1, "qsess.restore", "write deny-oom admin fast no-monitor no-slowlog")
        .acl("admin dangerous fast", 4)
        .documented(
            "Internal, for qsess-syncd: restores a session from the mirror and wakes its waiters",
            "O(log N) where N is the owner's session count",
        );

pub(crate) const RESTOREUSER: CommandSpec = CommandSpec::routed_by(1, "qsess.restoreuser", "write admin fast")
    .acl("admin dangerous fast", 3)
    .documented("Internal, for qsess-syncd: a user's sessions were reloaded; wakes QSESS.BYUSER waiters", "O(1)");

pub(crate) const LOADER: CommandSpec = CommandSpec::unrouted("qsess.loader", "admin fast")
    .acl("admin dangerous fast", 2)
    .documented("Internal, for qsess-syncd: attaches as the loader for a lease in ms (0 detaches)", "O(1)");

pub(crate) const STREAMS: CommandSpec =
    CommandSpec::unrouted("qsess.streams", "admin fast").acl("admin dangerous fast", -1).documented(
        "Internal, for qsess-syncd: the buckets whose streams got entries since the last call (or all with ALL)",
        "O(1), O(S) with ALL for the S slots or buckets this node serves",
    );

/// Every command. Flags are truthful: reads that may slide the expiry are `write`; only commands that
/// grow memory are `deny-oom`, so logging out and revoking keep working under `maxmemory`; commands
/// that carry a raw session id are `no-monitor no-slowlog`, so the id never lands in MONITOR or SLOWLOG.
pub(crate) const COMMANDS: [&CommandSpec; 14] = [
    &SET,
    &NEW,
    &GET,
    &PEEK,
    &TOUCH,
    &ROTATE,
    &DEL,
    &BYUSER,
    &REVOKEUSER,
    &REVOKE,
    &RESTORE,
    &RESTOREUSER,
    &LOADER,
    &STREAMS,
];

/// Which ACL categories the server let the module use, for the load-time log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AclCategorySupport {
    /// Redis 7.0: module commands are in no category and are granted by name.
    None,
    /// Redis 7.2: the standard categories (`@read`, `@write`, `@fast`, `@slow`).
    Standard,
    /// Redis 7.4+ and Valkey 8: the standard ones and `@qsess`.
    StandardAndQsess,
}

impl AclCategorySupport {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            AclCategorySupport::None => "none for module commands (grant qsess commands by name)",
            AclCategorySupport::Standard => "@read/@write and @fast/@slow",
            AclCategorySupport::StandardAndQsess => "@read/@write, @fast/@slow and @qsess",
        }
    }
}

/// Sets arity, docs and key specs of every registered command, and their ACL categories where the
/// server supports them. Errors name the command.
pub(crate) fn set_command_info(ctx: &Context) -> Result<AclCategorySupport, String> {
    // SAFETY: reading function pointers Redis filled before OnLoad.
    let (Some(get_command), Some(set_info)) =
        (unsafe { raw::RedisModule_GetCommand }, unsafe { raw::RedisModule_SetCommandInfo })
    else {
        return Err("this server lacks RedisModule_SetCommandInfo; qsess needs Redis 7.0 or newer".to_owned());
    };
    let has_qsess_category = add_qsess_category(ctx);
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: size_of::<raw::RedisModuleCommandArg>(),
    };
    let mut categories_applied = true;
    for spec in COMMANDS {
        let name = CString::new(spec.name).map_err(|error| error.to_string())?;
        let summary = CString::new(spec.summary).map_err(|error| error.to_string())?;
        let complexity = CString::new(spec.complexity).map_err(|error| error.to_string())?;
        let since = CString::new("1.0.0").map_err(|error| error.to_string())?;
        let mut key_specs = routing_key_specs(spec);
        let info = raw::RedisModuleCommandInfo {
            version: &version,
            summary: summary.as_ptr(),
            complexity: complexity.as_ptr(),
            since: since.as_ptr(),
            history: std::ptr::null_mut(),
            tips: std::ptr::null(),
            arity: spec.arity,
            key_specs: key_specs.as_mut().map_or(std::ptr::null_mut(), |specs| specs.as_mut_ptr()),
            args: std::ptr::null_mut(),
        };
        // SAFETY: load-time context; `info` and everything it points to outlive the call, and Redis
        // copies what it keeps.
        let command = unsafe { get_command(ctx.get_raw(), name.as_ptr()) };
        if command.is_null() {
            return Err(format!("command {} is not registered", spec.name));
        }
        // SAFETY: as above; `command` was just returned by Redis for this module.
        if unsafe { set_info(command, &info) } != raw::REDISMODULE_OK as i32 {
            return Err(format!("Redis refused the command info of {}", spec.name));
        }
        categories_applied &= set_acl_categories(ctx, command, spec, has_qsess_category);
    }
    Ok(match (categories_applied, has_qsess_category) {
        (false, _) => AclCategorySupport::None,
        (true, false) => AclCategorySupport::Standard,
        (true, true) => AclCategorySupport::StandardAndQsess,
    })
}

/// The routing argument as a `NOT_KEY` key spec, followed by the zeroed spec that ends the list.
fn routing_key_specs(spec: &CommandSpec) -> Option<[raw::RedisModuleCommandKeySpec; 2]> {
    let position = spec.routing_argument?;
    let writes = spec.flags.split(' ').any(|flag| flag == "write");
    let access = if writes { raw::REDISMODULE_CMD_KEY_RW } else { raw::REDISMODULE_CMD_KEY_RO };
    // SAFETY: the spec is plain C data for which all zeroes is valid ("no spec": the list's end).
    let end: raw::RedisModuleCommandKeySpec = unsafe { std::mem::zeroed() };
    let routing = raw::RedisModuleCommandKeySpec {
        notes: std::ptr::null(),
        flags: u64::from(access | raw::REDISMODULE_CMD_KEY_NOT_KEY),
        begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
        bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
            index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: position },
        },
        find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE,
        fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
            range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 { lastkey: 0, keystep: 1, limit: 0 },
        },
    };
    Some([routing, end])
}

/// Adds the `qsess` ACL category where the server supports module categories (Redis 7.4+, Valkey 8).
fn add_qsess_category(ctx: &Context) -> bool {
    // SAFETY: reading a function pointer Redis filled before OnLoad; absent on older servers.
    let Some(add_category) = (unsafe { raw::RedisModule_AddACLCategory }) else { return false };
    let Ok(name) = CString::new("qsess") else { return false };
    // SAFETY: load-time context and a NUL-terminated name.
    unsafe { add_category(ctx.get_raw(), name.as_ptr()) == raw::REDISMODULE_OK as i32 }
}

/// Puts a command in its ACL categories where the server supports it (Redis 7.2+). A refusal is
/// logged, not fatal: the command still works and can be granted by name. Returns whether the
/// categories were set.
fn set_acl_categories(
    ctx: &Context,
    command: *mut raw::RedisModuleCommand,
    spec: &CommandSpec,
    with_qsess: bool,
) -> bool {
    // SAFETY: reading a function pointer Redis filled before OnLoad; absent on Redis 7.0.
    let Some(set_categories) = (unsafe { raw::RedisModule_SetCommandACLCategories }) else { return false };
    // `+@qsess` is the application's grant, so the daemon's internal (admin) commands stay out of it.
    let internal = spec.flags.split(' ').any(|flag| flag == "admin");
    let categories =
        if with_qsess && !internal { format!("{} qsess", spec.acl_categories) } else { spec.acl_categories.to_owned() };
    let Ok(categories_text) = CString::new(categories.as_str()) else { return false };
    // SAFETY: `command` belongs to this module and the string outlives the call.
    if unsafe { set_categories(command, categories_text.as_ptr()) } != raw::REDISMODULE_OK as i32 {
        ctx.log_warning(&format!("qsess: the server refused ACL categories '{categories}' for {}", spec.name));
        return false;
    }
    true
}
