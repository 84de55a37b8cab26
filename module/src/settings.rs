//! The `qsess.*` settings: their defaults and bounds, module-argument parsing, and a per-command snapshot.
//!
//! Settings are registered as Redis module configs, so `CONFIG GET/SET qsess.*`, the config file and
//! `--qsess.<name>` on the command line all work; module arguments (`--loadmodule qsess.so idle-timeout-ms
//! 60000`) are parsed here so that a typo fails the load with a precise message instead of being ignored.

use crate::bucket::Buckets;
use crate::client_ip::IpMode;
use crate::geo;
use qsess_record::{validate_prefix, KeyNames};
use redis_module::configuration::{ConfigurationContext, ConfigurationValue};
use redis_module::{RedisError, RedisString};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// A numeric setting's name (without the `qsess.` prefix Redis adds), default and bounds.
pub(crate) struct NumericSetting {
    pub(crate) name: &'static str,
    pub(crate) default: i64,
    pub(crate) min: i64,
    pub(crate) max: i64,
    pub(crate) value: &'static AtomicI64,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const MAX_TIMEOUT_MS: i64 = crate::limits::MAX_TIMEOUT_MS as i64;

static BUCKETS_VALUE: AtomicI64 = AtomicI64::new(1);
static IDLE_TIMEOUT_VALUE: AtomicI64 = AtomicI64::new(30 * 60 * 1000);
static ABSOLUTE_TIMEOUT_VALUE: AtomicI64 = AtomicI64::new(DAY_MS);
static TOUCH_GRANULARITY_VALUE: AtomicI64 = AtomicI64::new(60 * 1000);
static TOMBSTONE_TTL_VALUE: AtomicI64 = AtomicI64::new(DAY_MS);
static MAX_DATA_BYTES_VALUE: AtomicI64 = AtomicI64::new(64 * 1024);

/// Fixed for the life of the data: changing it would move every key.
pub(crate) const BUCKETS: NumericSetting =
    NumericSetting { name: "buckets", default: 1, min: 1, max: 16384, value: &BUCKETS_VALUE };
/// 30 minutes: the upper end of OWASP's idle timeout for low-risk applications.
pub(crate) const IDLE_TIMEOUT: NumericSetting = NumericSetting {
    name: "idle-timeout-ms",
    default: 30 * 60 * 1000,
    min: 0,
    max: MAX_TIMEOUT_MS,
    value: &IDLE_TIMEOUT_VALUE,
};
/// One day: a working day with one login, after which the user signs in again whatever their activity.
pub(crate) const ABSOLUTE_TIMEOUT: NumericSetting = NumericSetting {
    name: "absolute-timeout-ms",
    default: DAY_MS,
    min: 0,
    max: MAX_TIMEOUT_MS,
    value: &ABSOLUTE_TIMEOUT_VALUE,
};
/// One minute: reads slide the idle expiry at most once a minute, so a busy session costs one
/// stream entry per minute instead of one per request, and idle timeouts stay accurate to a minute.
pub(crate) const TOUCH_GRANULARITY: NumericSetting = NumericSetting {
    name: "touch-granularity-ms",
    default: 60 * 1000,
    min: 0,
    max: DAY_MS,
    value: &TOUCH_GRANULARITY_VALUE,
};
/// One day, and never longer than the revoked session had left: long enough to outlast any mirror lag.
pub(crate) const TOMBSTONE_TTL: NumericSetting = NumericSetting {
    name: "tombstone-ttl-ms",
    default: DAY_MS,
    min: 1000,
    max: 30 * DAY_MS,
    value: &TOMBSTONE_TTL_VALUE,
};
/// 64 KiB: far above what frameworks store in a session, far below what would hurt Redis.
pub(crate) const MAX_DATA_BYTES: NumericSetting = NumericSetting {
    name: "max-data-bytes",
    default: 64 * 1024,
    min: 0,
    max: 64 * 1024 * 1024,
    value: &MAX_DATA_BYTES_VALUE,
};

static MISS_TIMEOUT_VALUE: AtomicI64 = AtomicI64::new(250);
static NEGATIVE_CACHE_VALUE: AtomicI64 = AtomicI64::new(5_000);

/// 250 ms: a reload takes about a millisecond when the daemon is healthy, so this bounds how long a
/// request waits when it is not, well below what a user notices as a hang.
pub(crate) const MISS_TIMEOUT: NumericSetting =
    NumericSetting { name: "miss-timeout-ms", default: 250, min: 1, max: 60_000, value: &MISS_TIMEOUT_VALUE };
/// 5 s: a flood of random cookies costs Postgres at most one lookup per id per 5 s, while a session
/// created in Redis is never affected (the cache only answers misses).
pub(crate) const NEGATIVE_CACHE: NumericSetting =
    NumericSetting { name: "negative-cache-ms", default: 5_000, min: 0, max: 3_600_000, value: &NEGATIVE_CACHE_VALUE };

static MIN_SESSION_ID_BYTES_VALUE: AtomicI64 = AtomicI64::new(1);
static MAX_SESSIONS_PER_USER_VALUE: AtomicI64 = AtomicI64::new(500);

/// Handles are unkeyed hashes shown to whoever lists a user's sessions, so a short, application-chosen
/// id could be found from its handle by trying every candidate. 1 by default, because ids already in
/// use (and every client written against qsess so far) may be short and a minimum would lock them
/// out on upgrade; README (Security) tells operators whose applications choose ids to set 16 (OWASP's
/// 64 bits, written as hex). Ids minted by QSESS.NEW are 32 characters.
pub(crate) const MIN_SESSION_ID_BYTES: NumericSetting = NumericSetting {
    name: "min-session-id-bytes",
    default: 1,
    min: 1,
    max: crate::limits::MAX_SESSION_ID_BYTES as i64,
    value: &MIN_SESSION_ID_BYTES_VALUE,
};
/// 500: far more devices than a person has, and few enough that every command over one user's
/// sessions (BYUSER, REVOKEUSER, SET with LIMIT) holds Redis for a few milliseconds at most.
pub(crate) const MAX_SESSIONS_PER_USER: NumericSetting = NumericSetting {
    name: "max-sessions-per-user",
    default: 500,
    min: 1,
    max: 1_000_000,
    value: &MAX_SESSIONS_PER_USER_VALUE,
};

const NUMERIC_SETTINGS: [&NumericSetting; 10] = [
    &BUCKETS,
    &IDLE_TIMEOUT,
    &ABSOLUTE_TIMEOUT,
    &TOUCH_GRANULARITY,
    &TOMBSTONE_TTL,
    &MAX_DATA_BYTES,
    &MISS_TIMEOUT,
    &NEGATIVE_CACHE,
    &MIN_SESSION_ID_BYTES,
    &MAX_SESSIONS_PER_USER,
];

/// A setting that takes one of a few words; stored as an index so commands read it with one load.
pub(crate) struct ChoiceSetting {
    pub(crate) name: &'static str,
    pub(crate) choices: &'static [&'static str],
    index: AtomicUsize,
}

impl ChoiceSetting {
    pub(crate) fn default_choice(&self) -> &'static str {
        self.choices.first().copied().unwrap_or_default()
    }

    fn set_from(&self, value: &[u8]) -> Result<(), String> {
        let index = self.choices.iter().position(|choice| choice.as_bytes() == value).ok_or_else(|| {
            format!(
                "invalid qsess.{} '{}'; accepted: {}",
                self.name,
                String::from_utf8_lossy(value),
                self.choices.join(", ")
            )
        })?;
        self.index.store(index, Ordering::Relaxed);
        Ok(())
    }

    fn current(&self) -> &'static str {
        self.choices.get(self.index.load(Ordering::Relaxed)).copied().unwrap_or_else(|| self.default_choice())
    }
}

impl ConfigurationValue<RedisString> for ChoiceSetting {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        RedisString::create(None, self.current())
    }

    fn set(&self, _ctx: &ConfigurationContext, value: RedisString) -> Result<(), RedisError> {
        self.set_from(value.as_slice()).map_err(RedisError::String)
    }
}

/// Full by default: the mirror's DBAs expect the address; operators with stricter rules pick another.
pub(crate) static IP_MODE: ChoiceSetting =
    ChoiceSetting { name: "ip-mode", choices: &["full", "truncated", "none"], index: AtomicUsize::new(0) };
/// Full by default, as django-qsessions stores it.
pub(crate) static UA_MODE: ChoiceSetting =
    ChoiceSetting { name: "ua-mode", choices: &["full", "none"], index: AtomicUsize::new(0) };

/// `qsess.prefix`, validated so it cannot break the hash tag. Fixed at load.
pub(crate) struct PrefixSetting(Mutex<String>);

pub(crate) const DEFAULT_PREFIX: &str = "qs";
pub(crate) static PREFIX: PrefixSetting = PrefixSetting(Mutex::new(String::new()));

impl PrefixSetting {
    fn set_from(&self, value: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(value).map_err(|_| "qsess.prefix must be ASCII".to_owned())?;
        validate_prefix(text)?;
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = text.to_owned();
        Ok(())
    }

    fn current(&self) -> String {
        let prefix = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        if prefix.is_empty() {
            DEFAULT_PREFIX.to_owned()
        } else {
            prefix
        }
    }
}

impl ConfigurationValue<RedisString> for PrefixSetting {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        RedisString::create(None, self.current().as_str())
    }

    fn set(&self, _ctx: &ConfigurationContext, value: RedisString) -> Result<(), RedisError> {
        self.set_from(value.as_slice()).map_err(RedisError::String)
    }
}

/// `qsess.geoip-db`: the MaxMind City or Country database (.mmdb) locations come from, or "" (the
/// default: the database is the operator's to download, under MaxMind's license) for none. Setting it
/// opens and checks the file and swaps it in; a file that fails leaves the previous database in use.
pub(crate) struct GeoipDbSetting;

pub(crate) const GEOIP_DB_NAME: &str = "geoip-db";
pub(crate) static GEOIP_DB: GeoipDbSetting = GeoipDbSetting;

impl GeoipDbSetting {
    /// Opens the database named by `value`, for [`apply`](Self::apply) once every argument is valid.
    fn open(value: &[u8]) -> Result<Option<geo::Database>, String> {
        geo::open_setting(value).map_err(|error| format!("invalid qsess.{GEOIP_DB_NAME}: {error}"))
    }

    fn apply(database: Option<geo::Database>) {
        match &database {
            Some(database) => redis_module::logging::log_notice(format!(
                "qsess: locations from {} ({}, built {} s after the epoch)",
                database.path(),
                database.database_type(),
                database.build_epoch()
            )),
            None if !geo::current_path().is_empty() => {
                redis_module::logging::log_notice("qsess: no GeoIP database; new sessions get no location")
            }
            None => {}
        }
        geo::install(database);
    }
}

impl ConfigurationValue<RedisString> for GeoipDbSetting {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        RedisString::create(None, geo::current_path().as_str())
    }

    fn set(&self, _ctx: &ConfigurationContext, value: RedisString) -> Result<(), RedisError> {
        // Redis calls this outside any command, so the panic guard of commands does not cover it.
        let opened = std::panic::catch_unwind(|| GeoipDbSetting::open(value.as_slice()))
            .unwrap_or_else(|_| Err(format!("invalid qsess.{GEOIP_DB_NAME}: internal error while opening it")));
        GeoipDbSetting::apply(opened.map_err(RedisError::String)?);
        Ok(())
    }
}

/// Whether to keep the user agent (`qsess.ua-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UaMode {
    Full,
    None,
}

/// The settings one command runs with, read once at its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) idle_timeout_ms: u64,
    pub(crate) absolute_timeout_ms: u64,
    pub(crate) touch_granularity_ms: u64,
    pub(crate) tombstone_ttl_ms: u64,
    pub(crate) max_data_bytes: u64,
    pub(crate) miss_timeout_ms: u64,
    pub(crate) negative_cache_ms: u64,
    pub(crate) max_sessions_per_user: u64,
    pub(crate) ip_mode: IpMode,
    pub(crate) ua_mode: UaMode,
}

impl Settings {
    /// Every setting at its documented default, for unit tests of the logic that reads them.
    #[cfg(test)]
    pub(crate) fn defaults() -> Settings {
        let default = |setting: &NumericSetting| setting.default as u64;
        Settings {
            idle_timeout_ms: default(&IDLE_TIMEOUT),
            absolute_timeout_ms: default(&ABSOLUTE_TIMEOUT),
            touch_granularity_ms: default(&TOUCH_GRANULARITY),
            tombstone_ttl_ms: default(&TOMBSTONE_TTL),
            max_data_bytes: default(&MAX_DATA_BYTES),
            miss_timeout_ms: default(&MISS_TIMEOUT),
            negative_cache_ms: default(&NEGATIVE_CACHE),
            max_sessions_per_user: default(&MAX_SESSIONS_PER_USER),
            ip_mode: IpMode::Full,
            ua_mode: UaMode::Full,
        }
    }

    pub(crate) fn current() -> Settings {
        let read = |setting: &NumericSetting| setting.value.load(Ordering::Relaxed).max(0) as u64;
        Settings {
            idle_timeout_ms: read(&IDLE_TIMEOUT),
            absolute_timeout_ms: read(&ABSOLUTE_TIMEOUT),
            touch_granularity_ms: read(&TOUCH_GRANULARITY),
            tombstone_ttl_ms: read(&TOMBSTONE_TTL),
            max_data_bytes: read(&MAX_DATA_BYTES),
            miss_timeout_ms: read(&MISS_TIMEOUT),
            negative_cache_ms: read(&NEGATIVE_CACHE),
            max_sessions_per_user: read(&MAX_SESSIONS_PER_USER),
            ip_mode: match IP_MODE.current() {
                "truncated" => IpMode::Truncated,
                "none" => IpMode::None,
                _ => IpMode::Full,
            },
            ua_mode: match UA_MODE.current() {
                "none" => UaMode::None,
                _ => UaMode::Full,
            },
        }
    }
}

/// The shortest session id a command accepts now (`qsess.min-session-id-bytes`).
pub(crate) fn min_session_id_bytes() -> usize {
    MIN_SESSION_ID_BYTES.value.load(Ordering::Relaxed).max(1) as usize
}

/// The key layout, fixed when the module loads.
#[derive(Debug)]
pub(crate) struct Keyspace {
    pub(crate) names: KeyNames,
    pub(crate) buckets: Buckets,
}

static KEYSPACE: OnceLock<Keyspace> = OnceLock::new();

/// Fixes the key layout at load: the cluster layout when the server runs Redis Cluster, else the
/// standalone one with `qsess.buckets`. Called once from `init`, before any command can run.
pub(crate) fn fix_keyspace(cluster: bool) -> Result<&'static Keyspace, String> {
    let configured_buckets = BUCKETS.value.load(Ordering::Relaxed).clamp(1, BUCKETS.max) as u32;
    if cluster && configured_buckets != 1 {
        return Err(format!(
            "qsess.buckets is {configured_buckets}, but on Redis Cluster the buckets are the hash slots; leave qsess.buckets at 1"
        ));
    }
    let keyspace = if cluster {
        Keyspace { names: KeyNames::for_cluster(&PREFIX.current()), buckets: Buckets::ClusterSlots }
    } else {
        Keyspace { names: KeyNames::new(&PREFIX.current()), buckets: Buckets::new(configured_buckets) }
    };
    Ok(KEYSPACE.get_or_init(|| keyspace))
}

/// The key layout fixed at load (`fix_keyspace`); the standalone layout if asked earlier (unit tests).
pub(crate) fn keyspace() -> &'static Keyspace {
    KEYSPACE.get_or_init(|| Keyspace {
        names: KeyNames::new(&PREFIX.current()),
        buckets: Buckets::new(BUCKETS.value.load(Ordering::Relaxed).clamp(1, BUCKETS.max) as u32),
    })
}

/// Applies module arguments, given as `name value` pairs; names may carry the `qsess.` prefix.
/// Nothing is applied unless every pair is valid.
pub(crate) fn apply_module_arguments(arguments: &[&[u8]]) -> Result<(), String> {
    if !arguments.len().is_multiple_of(2) {
        return Err(format!(
            "module arguments come as name/value pairs; got {} words (accepted names: {})",
            arguments.len(),
            accepted_names()
        ));
    }
    let mut numeric_updates = Vec::new();
    let mut prefix_update = None;
    let mut choice_updates: Vec<(&ChoiceSetting, &[u8])> = Vec::new();
    let mut geoip_update = None;
    for pair in arguments.chunks_exact(2) {
        let &[raw_name, value] = pair else { continue };
        let name = raw_name.strip_prefix(b"qsess.").unwrap_or(raw_name);
        if let Some(setting) = NUMERIC_SETTINGS.iter().find(|setting| setting.name.as_bytes() == name) {
            numeric_updates.push((*setting, parse_numeric(setting, value)?));
        } else if name == b"prefix" {
            let text = std::str::from_utf8(value).map_err(|_| "qsess.prefix must be ASCII".to_owned())?;
            validate_prefix(text)?;
            prefix_update = Some(value);
        } else if name == IP_MODE.name.as_bytes() {
            check_choice(&IP_MODE, value)?;
            choice_updates.push((&IP_MODE, value));
        } else if name == UA_MODE.name.as_bytes() {
            check_choice(&UA_MODE, value)?;
            choice_updates.push((&UA_MODE, value));
        } else if name == GEOIP_DB_NAME.as_bytes() {
            geoip_update = Some(GeoipDbSetting::open(value)?);
        } else {
            return Err(format!(
                "unknown module argument '{}'; accepted: {}",
                String::from_utf8_lossy(raw_name),
                accepted_names()
            ));
        }
    }
    for (setting, value) in numeric_updates {
        setting.value.store(value, Ordering::Relaxed);
    }
    for (setting, value) in choice_updates {
        setting.set_from(value)?;
    }
    if let Some(prefix) = prefix_update {
        PREFIX.set_from(prefix)?;
    }
    if let Some(database) = geoip_update {
        GeoipDbSetting::apply(database);
    }
    Ok(())
}

fn parse_numeric(setting: &NumericSetting, value: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .filter(|number| (setting.min..=setting.max).contains(number))
        .ok_or_else(|| {
            format!(
                "invalid qsess.{} '{}'; accepted: an integer from {} to {}",
                setting.name,
                String::from_utf8_lossy(value),
                setting.min,
                setting.max
            )
        })
}

fn check_choice(setting: &ChoiceSetting, value: &[u8]) -> Result<(), String> {
    if setting.choices.iter().any(|choice| choice.as_bytes() == value) {
        return Ok(());
    }
    Err(format!(
        "invalid qsess.{} '{}'; accepted: {}",
        setting.name,
        String::from_utf8_lossy(value),
        setting.choices.join(", ")
    ))
}

fn accepted_names() -> String {
    let mut names: Vec<&str> = NUMERIC_SETTINGS.iter().map(|setting| setting.name).collect();
    names.extend(["prefix", IP_MODE.name, UA_MODE.name, GEOIP_DB_NAME]);
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_arguments_reject_unknown_names_and_bad_values_without_applying_any() {
        let before = IDLE_TIMEOUT.value.load(Ordering::Relaxed);
        let error = apply_module_arguments(&[b"idle-timeout-ms", b"5000", b"idle-timout-ms", b"1"]).unwrap_err();
        assert!(error.contains("unknown module argument 'idle-timout-ms'"), "{error}");
        assert!(error.contains("touch-granularity-ms"), "{error}");
        assert_eq!(IDLE_TIMEOUT.value.load(Ordering::Relaxed), before);

        let error = apply_module_arguments(&[b"qsess.buckets", b"0"]).unwrap_err();
        assert_eq!(error, "invalid qsess.buckets '0'; accepted: an integer from 1 to 16384");
        let error = apply_module_arguments(&[b"ip-mode", b"partial"]).unwrap_err();
        assert_eq!(error, "invalid qsess.ip-mode 'partial'; accepted: full, truncated, none");
        let error = apply_module_arguments(&[b"prefix"]).unwrap_err();
        assert!(error.starts_with("module arguments come as name/value pairs"), "{error}");
        let error = apply_module_arguments(&[b"prefix", b"a{b"]).unwrap_err();
        assert!(error.contains("braces"), "{error}");
    }

    #[test]
    fn a_geoip_database_that_does_not_open_fails_the_arguments_without_applying_any() {
        let before = IDLE_TIMEOUT.value.load(Ordering::Relaxed);
        let error =
            apply_module_arguments(&[b"idle-timeout-ms", b"5000", b"qsess.geoip-db", b"/nonexistent/City.mmdb"])
                .unwrap_err();
        assert!(error.starts_with("invalid qsess.geoip-db: cannot open '/nonexistent/City.mmdb': "), "{error}");
        assert_eq!(IDLE_TIMEOUT.value.load(Ordering::Relaxed), before);
        let error = apply_module_arguments(&[b"geoip-db", b"\xff"]).unwrap_err();
        assert_eq!(error, "invalid qsess.geoip-db: the path is not UTF-8 text");
    }

    #[test]
    fn choices_read_back_what_was_set() {
        let setting = ChoiceSetting { name: "test-mode", choices: &["a", "b"], index: AtomicUsize::new(0) };
        assert_eq!(setting.current(), "a");
        setting.set_from(b"b").unwrap();
        assert_eq!(setting.current(), "b");
        assert!(setting.set_from(b"c").is_err());
        assert_eq!(setting.current(), "b");
        assert_eq!(setting.default_choice(), "a");
    }
}
