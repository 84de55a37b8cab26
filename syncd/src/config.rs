//! The daemon's validated configuration. Every default says why it was chosen; `validate` rejects
//! values that cannot work before any connection is made.

use crate::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

/// How changes are grouped into Postgres transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most changes per transaction.
    pub max_changes: usize,
    /// Longest a batch keeps filling once its first change arrived.
    pub max_wait: Duration,
}

impl BatchConfig {
    /// 2,000: UNNEST upserts reach the Postgres ceiling at 1,000 rows, and larger batches amortise the
    /// commit further during catch-up.
    pub const DEFAULT_MAX_CHANGES: usize = 2_000;
    /// 20 ms: keeps mirror lag far below the 100 ms p99 target while letting batches grow under load.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_millis(20);
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_changes: Self::DEFAULT_MAX_CHANGES, max_wait: Self::DEFAULT_MAX_WAIT }
    }
}

/// How expired rows leave the mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeConfig {
    pub interval: Duration,
    /// Rows are purged only this long after their `expires_at`.
    pub grace: Duration,
    /// Rows deleted per statement, so the purge never holds long locks.
    pub batch_rows: i64,
    /// How long a refused change (`qsess.rejected_changes`) is kept after it was refused. Its payload,
    /// which may hold session data, goes sooner: `grace` after the session would have expired.
    pub rejected_retention: Duration,
}

impl PurgeConfig {
    /// One minute: expired rows are invisible through `qsess.live_sessions` anyway; the purge only
    /// reclaims space.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
    /// One hour: a session's mirrored expiry lags Redis by the mirror's lag; the grace must exceed any
    /// lag worth surviving (a Postgres outage) so a session alive in Redis is never purged.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
    pub const DEFAULT_BATCH_ROWS: i64 = 5_000;
    /// Seven days: a refused change is a bug or a version mismatch someone should look at; a week
    /// covers a weekend and a holiday before the evidence (without the session's data, erased by then
    /// unless the session still lives) is gone.
    pub const DEFAULT_REJECTED_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
}

impl Default for PurgeConfig {
    fn default() -> Self {
        PurgeConfig {
            interval: Self::DEFAULT_INTERVAL,
            grace: Self::DEFAULT_GRACE,
            batch_rows: Self::DEFAULT_BATCH_ROWS,
            rejected_retention: Self::DEFAULT_REJECTED_RETENTION,
        }
    }
}

/// Backoff between retries of a failed Redis or Postgres operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    pub initial: Duration,
    pub max: Duration,
}

impl RetryConfig {
    /// 50 ms then doubling: a blip costs little, and a restart is found within a second.
    pub const DEFAULT_INITIAL: Duration = Duration::from_millis(50);
    /// 5 s: an outage is noticed quickly once it ends, without hammering a struggling server.
    pub const DEFAULT_MAX: Duration = Duration::from_secs(5);
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { initial: Self::DEFAULT_INITIAL, max: Self::DEFAULT_MAX }
    }
}

/// Everything `run` needs. Its `Debug` shows the URLs with their passwords masked.
#[derive(Clone)]
pub struct RunConfig {
    pub redis_url: String,
    pub database_url: String,
    pub metrics_addr: Option<SocketAddr>,
    /// Consumer group on every change stream; one group per mirror.
    pub group: String,
    /// This daemon's name in the group; a restart under the same name resumes its pending changes.
    pub consumer: String,
    pub batch: BatchConfig,
    pub purge: PurgeConfig,
    pub retry: RetryConfig,
    /// Apply migrations before starting.
    pub migrate: bool,
}

impl std::fmt::Debug for RunConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RunConfig")
            .field("redis_url", &redact_url(&self.redis_url))
            .field("database_url", &redact_url(&self.database_url))
            .field("metrics_addr", &self.metrics_addr)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .field("batch", &self.batch)
            .field("purge", &self.purge)
            .field("retry", &self.retry)
            .field("migrate", &self.migrate)
            .finish()
    }
}

/// What replaces a password in a URL that is shown.
const MASK: &str = "***";

/// A URL fit for a log line or an error: the password of `user:password@` and any `password=`
/// (Postgres) or `pass=` (redis-rs, unix sockets) query parameter replaced by `***`. The user name, host, port and database stay, since they are
/// what an operator needs to see which server was meant.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:{MASK}@{host}"),
            None => format!("{user_info}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if ["password", "pass"].iter().any(|secret| name.eq_ignore_ascii_case(secret)) => {
                        format!("{name}={MASK}")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

impl RunConfig {
    pub const DEFAULT_GROUP: &'static str = "qsess-syncd";
    pub const DEFAULT_CONSUMER: &'static str = "syncd";

    pub fn new(redis_url: impl Into<String>, database_url: impl Into<String>) -> RunConfig {
        RunConfig {
            redis_url: redis_url.into(),
            database_url: database_url.into(),
            metrics_addr: None,
            group: Self::DEFAULT_GROUP.to_owned(),
            consumer: Self::DEFAULT_CONSUMER.to_owned(),
            batch: BatchConfig::default(),
            purge: PurgeConfig::default(),
            retry: RetryConfig::default(),
            migrate: true,
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        validate_redis_url(&self.redis_url)?;
        validate_database_url(&self.database_url)?;
        if self.group.is_empty() || self.consumer.is_empty() {
            return Err(Error::Config("consumer group and consumer names must not be empty".to_owned()));
        }
        if self.batch.max_changes == 0 || self.batch.max_changes > 100_000 {
            return Err(Error::Config(format!(
                "batch size must be from 1 to 100000 changes, got {}",
                self.batch.max_changes
            )));
        }
        if self.purge.interval.is_zero() {
            return Err(Error::Config("purge interval must be longer than 0".to_owned()));
        }
        if self.purge.rejected_retention.is_zero() {
            return Err(Error::Config("rejected-change retention must be longer than 0, e.g. 7d".to_owned()));
        }
        if self.retry.initial.is_zero() || self.retry.max < self.retry.initial {
            return Err(Error::Config("retry backoff must start above 0 and not exceed its maximum".to_owned()));
        }
        Ok(())
    }
}

pub fn validate_redis_url(url: &str) -> Result<(), Error> {
    redis::Client::open(url).map(|_| ()).map_err(|error| {
        Error::Config(format!(
            "invalid Redis URL ({error}); expected redis://[user:password@]host:port[/db] or unix:///path/to/socket"
        ))
    })
}

pub fn validate_database_url(url: &str) -> Result<(), Error> {
    url.parse::<tokio_postgres::Config>().map(|_| ()).map_err(|error| {
        // The URL may hold a password: never echo it.
        Error::Config(format!(
            "invalid database URL ({error}); expected postgres://user[:password]@host[:port]/database"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        RunConfig::new("redis://127.0.0.1:6380/", "postgres://postgres@127.0.0.1/qsess").validate().unwrap();
    }

    #[test]
    fn redacted_urls_keep_everything_but_the_password() {
        let cases = [
            ("redis://syncd:pw@127.0.0.1:6380/0", "redis://syncd:***@127.0.0.1:6380/0"),
            ("redis://:pw@127.0.0.1/", "redis://:***@127.0.0.1/"),
            ("rediss://user:p@ss:w@rd@host", "rediss://user:***@host"),
            ("redis://127.0.0.1:6379/", "redis://127.0.0.1:6379/"),
            ("postgres://qsess@db/app", "postgres://qsess@db/app"),
            (
                "postgres://db/app?user=q&password=pw&sslmode=require",
                "postgres://db/app?user=q&password=***&sslmode=require",
            ),
            ("unix:///run/redis.sock?user=u&pass=x", "unix:///run/redis.sock?user=u&pass=***"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        let config = RunConfig::new("redis://u:redis-secret@h/", "postgres://u:pg-secret@h/db");
        let debug = format!("{config:?}");
        assert!(!debug.contains("secret") && debug.contains("u:***@h"), "{debug}");
    }

    #[test]
    fn bad_values_are_refused_with_what_is_accepted() {
        let mut config = RunConfig::new("http://nope", "postgres://postgres@127.0.0.1/qsess");
        assert!(config.validate().unwrap_err().to_string().contains("expected redis://"));
        config.redis_url = "redis://127.0.0.1/".into();
        config.database_url = "postgres://u:secret@host:notaport/db".into();
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("expected postgres://"), "{message}");
        assert!(!message.contains("secret"), "{message}");
        config.database_url = "postgres://postgres@127.0.0.1/qsess".into();
        config.batch.max_changes = 0;
        assert!(config.validate().unwrap_err().to_string().contains("batch size must be from 1 to 100000"));
    }
}
