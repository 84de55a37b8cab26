//! `INFO qsess`: counters of what the module did, and the change streams' backlog.

use crate::redis_key::RedisKey;
use crate::settings::Keyspace;
use redis_module::{raw, Context, InfoContext, RedisResult};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// A detached context on database 0, for reading stream lengths from the INFO callback, whose own
/// context has no client and cannot open keys.
static INFO_CONTEXT: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(std::ptr::null_mut());

pub(crate) fn keep_context_for_info(ctx: &Context) -> Result<(), String> {
    // SAFETY: reading a function pointer Redis filled before OnLoad.
    let Some(get_detached) = (unsafe { raw::RedisModule_GetDetachedThreadSafeContext }) else {
        return Err("this server lacks RedisModule_GetDetachedThreadSafeContext".to_owned());
    };
    // SAFETY: called at load with the module's context; the detached context lives until shutdown.
    let detached = unsafe { get_detached(ctx.get_raw()) };
    INFO_CONTEXT.store(detached, Ordering::Release);
    Ok(())
}

/// Entries in the change streams of database 0: changes the daemon has not yet mirrored and trimmed.
/// INFO runs on the main thread, so the detached context is used without locking.
fn stream_backlog(keyspace: &Keyspace) -> u64 {
    let detached = INFO_CONTEXT.load(Ordering::Acquire);
    if detached.is_null() {
        return 0;
    }
    let context = Context::new(detached);
    (0..keyspace.buckets.count())
        .filter_map(|bucket| RedisKey::open_readable(&context, &keyspace.names.change_stream(bucket)).ok())
        .flatten()
        .filter_map(|stream| stream.length().ok())
        .map(|length| length as u64)
        .sum()
}

/// A monotonically increasing count. Commands run on Redis's main thread; atomics keep it sound anyway.
pub(crate) struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    pub(crate) fn increment(&self) {
        self.add(1);
    }

    pub(crate) fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every counter `INFO qsess` reports.
pub(crate) struct Counters {
    pub(crate) commands: Counter,
    pub(crate) created: Counter,
    pub(crate) updated: Counter,
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) touches: Counter,
    pub(crate) deleted: Counter,
    pub(crate) revocations: Counter,
    pub(crate) rotations: Counter,
    pub(crate) rejected_revoked: Counter,
    pub(crate) stream_entries: Counter,
    pub(crate) reload_requests: Counter,
    pub(crate) waits: Counter,
    pub(crate) miss_timeouts: Counter,
    pub(crate) negative_cache_hits: Counter,
    pub(crate) restores: Counter,
    pub(crate) restores_refused: Counter,
    pub(crate) errors: Counter,
    pub(crate) panics: Counter,
}

pub(crate) static COUNTERS: Counters = Counters {
    commands: Counter::new(),
    created: Counter::new(),
    updated: Counter::new(),
    hits: Counter::new(),
    misses: Counter::new(),
    touches: Counter::new(),
    deleted: Counter::new(),
    revocations: Counter::new(),
    rotations: Counter::new(),
    rejected_revoked: Counter::new(),
    stream_entries: Counter::new(),
    reload_requests: Counter::new(),
    waits: Counter::new(),
    miss_timeouts: Counter::new(),
    negative_cache_hits: Counter::new(),
    restores: Counter::new(),
    restores_refused: Counter::new(),
    errors: Counter::new(),
    panics: Counter::new(),
};

/// Writes the `qsess_stats` and `qsess_stream` sections.
pub(crate) fn add_info_sections(ctx: &InfoContext, keyspace: &Keyspace) -> RedisResult<()> {
    let counters = &COUNTERS;
    let buckets = keyspace.buckets.count();
    let stream_backlog = stream_backlog(keyspace);
    ctx.builder()
        .add_section("stats")
        .field("commands", counters.commands.get().to_string())?
        .field("sessions_created", counters.created.get().to_string())?
        .field("sessions_updated", counters.updated.get().to_string())?
        .field("hits", counters.hits.get().to_string())?
        .field("misses", counters.misses.get().to_string())?
        .field("touches", counters.touches.get().to_string())?
        .field("sessions_deleted", counters.deleted.get().to_string())?
        .field("revocations", counters.revocations.get().to_string())?
        .field("rotations", counters.rotations.get().to_string())?
        .field("rejected_revoked_ids", counters.rejected_revoked.get().to_string())?
        .field("restores", counters.restores.get().to_string())?
        .field("restores_refused", counters.restores_refused.get().to_string())?
        .field("reload_requests", counters.reload_requests.get().to_string())?
        .field("miss_waits", counters.waits.get().to_string())?
        .field("miss_timeouts", counters.miss_timeouts.get().to_string())?
        .field("negative_cache_hits", counters.negative_cache_hits.get().to_string())?
        .field("errors", counters.errors.get().to_string())?
        .field("panics", counters.panics.get().to_string())?
        .build_section()?
        .add_section("stream")
        .field("buckets", buckets.to_string())?
        .field("stream_entries_written", counters.stream_entries.get().to_string())?
        .field("stream_backlog", stream_backlog.to_string())?
        .field("loader_attached", u8::from(crate::loader::is_attached_now()).to_string())?
        .build_section()?
        .build_info()?;
    Ok(())
}
