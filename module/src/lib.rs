//! qsess: server-side web sessions as a Redis module.
//!
//! Each `QSESS.*` command updates a session record, its owner's index and the change stream in one
//! atomic step, and replicates as one MULTI/EXEC. This file holds only the registration table and
//! load-time setup; ARCHITECTURE.md has the code map.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod access;
mod allocator;
#[cfg(test)]
mod argument_properties;
mod blocking;
mod bucket;
mod client_ip;
mod cluster_slots;
mod command_info;
mod commands;
mod effects;
mod error;
mod expiry;
mod geo;
mod info;
mod limits;
mod loader;
mod miss_tracker;
mod panic_guard;
mod read_through;
mod redis_key;
mod reply;
mod server_profile;
mod session_activity;
mod session_ending;
mod session_id;
mod session_lookup;
mod session_options;
mod session_update;
mod session_write;
mod settings;
mod stream_activity;
mod waiter_signals;

use command_info::{
    BYUSER, DEL, GET, LOADER, NEW, PEEK, RESTORE, RESTOREUSER, REVOKE, REVOKEUSER, ROTATE, SET, STREAMS, TOUCH,
};
use redis_module::configuration::ConfigurationFlags;
use redis_module::{redis_module, Context, ContextFlags, InfoContext, RedisResult, RedisString, Status};
use settings::{
    ABSOLUTE_TIMEOUT, BUCKETS, DEFAULT_PREFIX, IDLE_TIMEOUT, IP_MODE, MAX_DATA_BYTES, MAX_SESSIONS_PER_USER,
    MIN_SESSION_ID_BYTES, MISS_TIMEOUT, NEGATIVE_CACHE, PREFIX, TOMBSTONE_TTL, TOUCH_GRANULARITY, UA_MODE,
};

#[cfg(not(test))]
type ModuleAllocator = allocator::AlignedAllocator<allocator::ServerMemory>;
#[cfg(not(test))]
const MODULE_ALLOCATOR: ModuleAllocator = allocator::AlignedAllocator(allocator::ServerMemory);
// Unit tests run without Redis, whose allocator would abort them.
#[cfg(test)]
type ModuleAllocator = std::alloc::System;
#[cfg(test)]
const MODULE_ALLOCATOR: ModuleAllocator = std::alloc::System;

fn init(ctx: &Context, arguments: &[RedisString]) -> Status {
    panic_guard::install_hook();
    let words: Vec<&[u8]> = arguments.iter().map(RedisString::as_slice).collect();
    if let Err(message) = settings::apply_module_arguments(&words) {
        ctx.log_warning(&format!("qsess: {message}"));
        return Status::Err;
    }
    let acl_categories = match command_info::set_command_info(ctx) {
        Ok(support) => support,
        Err(message) => {
            ctx.log_warning(&format!("qsess: {message}"));
            return Status::Err;
        }
    };
    if let Err(message) = info::keep_context_for_info(ctx) {
        ctx.log_warning(&format!("qsess: {message}"));
        return Status::Err;
    }
    let keyspace = match settings::fix_keyspace(ctx.get_flags().contains(ContextFlags::CLUSTER)) {
        Ok(keyspace) => keyspace,
        Err(message) => {
            ctx.log_warning(&format!("qsess: {message}"));
            return Status::Err;
        }
    };
    let server = server_profile::ServerProfile::detect(ctx);
    ctx.log_notice(&format!(
        "qsess: loaded on {} {} (allocator {}) with {}; keys look like {}; ACL categories: {}",
        server.name,
        server.version,
        server.allocator,
        if keyspace.buckets.is_cluster() {
            "Redis Cluster's 16384 hash slots as buckets".to_owned()
        } else {
            format!("{} bucket(s)", keyspace.buckets.count())
        },
        String::from_utf8_lossy(&keyspace.names.change_stream(0)),
        acl_categories.describe()
    ));
    Status::Ok
}

/// Unloading would leave the panic hook and statics pointing into an unmapped library (a proven
/// crash), and would strand sessions whose expiry and indexes only this module maintains.
fn deinit(ctx: &Context) -> Status {
    ctx.log_warning("qsess: MODULE UNLOAD refused; restart Redis without --loadmodule to remove qsess");
    Status::Err
}

#[redis_module_macros::info_command_handler]
fn info(ctx: &InfoContext, _for_crash_report: bool) -> RedisResult<()> {
    info::add_info_sections(ctx, settings::keyspace())
}

redis_module! {
    name: "qsess",
    version: 1,
    allocator: (ModuleAllocator, MODULE_ALLOCATOR),
    data_types: [],
    init: init,
    deinit: deinit,
    commands: [
        [SET.name, commands::qsess_set, SET.flags, SET.first_key, SET.last_key, SET.key_step, ""],
        [NEW.name, commands::qsess_new, NEW.flags, NEW.first_key, NEW.last_key, NEW.key_step, ""],
        [GET.name, commands::qsess_get, GET.flags, GET.first_key, GET.last_key, GET.key_step, ""],
        [PEEK.name, commands::qsess_peek, PEEK.flags, PEEK.first_key, PEEK.last_key, PEEK.key_step, ""],
        [TOUCH.name, commands::qsess_touch, TOUCH.flags, TOUCH.first_key, TOUCH.last_key, TOUCH.key_step, ""],
        [ROTATE.name, commands::qsess_rotate, ROTATE.flags, ROTATE.first_key, ROTATE.last_key, ROTATE.key_step, ""],
        [DEL.name, commands::qsess_del, DEL.flags, DEL.first_key, DEL.last_key, DEL.key_step, ""],
        [BYUSER.name, commands::qsess_byuser, BYUSER.flags, BYUSER.first_key, BYUSER.last_key, BYUSER.key_step, ""],
        [REVOKEUSER.name, commands::qsess_revokeuser, REVOKEUSER.flags, REVOKEUSER.first_key, REVOKEUSER.last_key, REVOKEUSER.key_step, ""],
        [REVOKE.name, commands::qsess_revoke, REVOKE.flags, REVOKE.first_key, REVOKE.last_key, REVOKE.key_step, ""],
        [RESTORE.name, commands::qsess_restore, RESTORE.flags, RESTORE.first_key, RESTORE.last_key, RESTORE.key_step, ""],
        [RESTOREUSER.name, commands::qsess_restoreuser, RESTOREUSER.flags, RESTOREUSER.first_key, RESTOREUSER.last_key, RESTOREUSER.key_step, ""],
        [LOADER.name, commands::qsess_loader, LOADER.flags, LOADER.first_key, LOADER.last_key, LOADER.key_step, ""],
        [STREAMS.name, commands::qsess_streams, STREAMS.flags, STREAMS.first_key, STREAMS.last_key, STREAMS.key_step, ""],
    ],
    configurations: [
        i64: [
            [BUCKETS.name, BUCKETS.value, BUCKETS.default, BUCKETS.min, BUCKETS.max, ConfigurationFlags::IMMUTABLE, None],
            [IDLE_TIMEOUT.name, IDLE_TIMEOUT.value, IDLE_TIMEOUT.default, IDLE_TIMEOUT.min, IDLE_TIMEOUT.max, ConfigurationFlags::DEFAULT, None],
            [ABSOLUTE_TIMEOUT.name, ABSOLUTE_TIMEOUT.value, ABSOLUTE_TIMEOUT.default, ABSOLUTE_TIMEOUT.min, ABSOLUTE_TIMEOUT.max, ConfigurationFlags::DEFAULT, None],
            [TOUCH_GRANULARITY.name, TOUCH_GRANULARITY.value, TOUCH_GRANULARITY.default, TOUCH_GRANULARITY.min, TOUCH_GRANULARITY.max, ConfigurationFlags::DEFAULT, None],
            [TOMBSTONE_TTL.name, TOMBSTONE_TTL.value, TOMBSTONE_TTL.default, TOMBSTONE_TTL.min, TOMBSTONE_TTL.max, ConfigurationFlags::DEFAULT, None],
            [MAX_DATA_BYTES.name, MAX_DATA_BYTES.value, MAX_DATA_BYTES.default, MAX_DATA_BYTES.min, MAX_DATA_BYTES.max, ConfigurationFlags::MEMORY, None],
            [MISS_TIMEOUT.name, MISS_TIMEOUT.value, MISS_TIMEOUT.default, MISS_TIMEOUT.min, MISS_TIMEOUT.max, ConfigurationFlags::DEFAULT, None],
            [NEGATIVE_CACHE.name, NEGATIVE_CACHE.value, NEGATIVE_CACHE.default, NEGATIVE_CACHE.min, NEGATIVE_CACHE.max, ConfigurationFlags::DEFAULT, None],
            [MIN_SESSION_ID_BYTES.name, MIN_SESSION_ID_BYTES.value, MIN_SESSION_ID_BYTES.default, MIN_SESSION_ID_BYTES.min, MIN_SESSION_ID_BYTES.max, ConfigurationFlags::DEFAULT, None],
            [MAX_SESSIONS_PER_USER.name, MAX_SESSIONS_PER_USER.value, MAX_SESSIONS_PER_USER.default, MAX_SESSIONS_PER_USER.min, MAX_SESSIONS_PER_USER.max, ConfigurationFlags::DEFAULT, None],
        ],
        string: [
            ["prefix", &PREFIX, DEFAULT_PREFIX, ConfigurationFlags::IMMUTABLE, None],
            [IP_MODE.name, &IP_MODE, IP_MODE.default_choice(), ConfigurationFlags::DEFAULT, None],
            [UA_MODE.name, &UA_MODE, UA_MODE.default_choice(), ConfigurationFlags::DEFAULT, None],
            [settings::GEOIP_DB_NAME, &settings::GEOIP_DB, "", ConfigurationFlags::DEFAULT, None],
        ],
        bool: [],
        enum: [],
        module_args_as_configuration: false,
    ]
}
