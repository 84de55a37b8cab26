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
}

impl PurgeConfig {
    /// One minute: expired rows are invisible through `qsess.live_sessions` anyway; the purge only
    /// reclaims space.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
    /// One hour: a session's mirrored expiry lags Redis by the mirror's lag; the grace must exceed any
    /// lag worth surviving (a Postgres outage) so a session alive in Redis is never purged.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
    pub const DEFAULT_BATCH_ROWS: i64 = 5_000;
}

impl Default for PurgeConfig {
    fn default() -> Self {
        PurgeConfig {
            interval: Self::DEFAULT_INTERVAL,
            grace: Self::DEFAULT_GRACE,
            batch_rows: Self::DEFAULT_BATCH_ROWS,
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

/// Everything `run` needs.
#[derive(Debug, Clone)]
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
