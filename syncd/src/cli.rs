//! The command line: `qsess-syncd migrate | run | verify`, each flag also readable from a `QSESS_*`
//! environment variable. Parsing ends in a validated `RunConfig`, so `run` never sees raw strings.

use crate::config::{BatchConfig, PurgeConfig, RetryConfig, RunConfig};
use crate::error::Error;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;

/// Mirrors qsess sessions from Redis into PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "qsess-syncd", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the mirror's schema migrations to the database, then exit. Safe to run repeatedly.
    Migrate(DatabaseArgs),
    /// Mirror the change streams into Postgres until SIGTERM or SIGINT.
    Run(RunArgs),
    /// Compare Redis and the mirror (every live handle and its version) and print the differences.
    /// Exits 0 when they match, 1 when they differ.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL, e.g. postgres://qsess:secret@127.0.0.1:5432/app.
    #[arg(long, env = "QSESS_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

#[derive(Debug, Args)]
pub struct RedisArgs {
    /// Redis URL of the server with the qsess module, e.g. redis://127.0.0.1:6379/0 or
    /// redis://user:password@host:6379/0.
    // hide_env_values: the URL may hold a password, and --help would print the variable's value.
    #[arg(long, env = "QSESS_REDIS_URL", default_value = "redis://127.0.0.1:6379/", hide_env_values = true)]
    pub redis_url: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Serve Prometheus metrics at /metrics and liveness at /healthz on this address, e.g. 127.0.0.1:9187.
    #[arg(long, env = "QSESS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Most changes per Postgres transaction (1 to 100000).
    #[arg(long, env = "QSESS_BATCH_SIZE", default_value_t = BatchConfig::DEFAULT_MAX_CHANGES)]
    pub batch_size: usize,
    /// Longest a batch keeps filling after its first change, e.g. 20ms.
    #[arg(long, env = "QSESS_BATCH_WAIT", default_value = "20ms", value_parser = parse_duration)]
    pub batch_wait: Duration,
    /// How often expired rows are purged, e.g. 60s.
    #[arg(long, env = "QSESS_PURGE_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub purge_interval: Duration,
    /// How long after expiry a row is purged, e.g. 1h; must exceed any mirror lag worth surviving.
    #[arg(long, env = "QSESS_PURGE_GRACE", default_value = "1h", value_parser = parse_duration)]
    pub purge_grace: Duration,
    /// How long a refused change stays in qsess.rejected_changes, e.g. 7d; its payload (which may hold
    /// session data) is erased sooner, --purge-grace after the session would have expired.
    #[arg(long, env = "QSESS_REJECTED_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub rejected_retention: Duration,
    /// Consumer group on the change streams.
    #[arg(long, env = "QSESS_GROUP", default_value = RunConfig::DEFAULT_GROUP)]
    pub group: String,
    /// This daemon's consumer name; restarting under the same name resumes its unfinished changes.
    #[arg(long, env = "QSESS_CONSUMER", default_value = RunConfig::DEFAULT_CONSUMER)]
    pub consumer: String,
    /// Do not apply migrations at start (run `qsess-syncd migrate` yourself).
    #[arg(long, env = "QSESS_SKIP_MIGRATIONS")]
    pub skip_migrations: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

impl RunArgs {
    pub fn into_config(self) -> Result<RunConfig, Error> {
        let config = RunConfig {
            redis_url: self.redis.redis_url,
            database_url: self.database.database_url,
            metrics_addr: self.metrics_addr,
            group: self.group,
            consumer: self.consumer,
            batch: BatchConfig { max_changes: self.batch_size, max_wait: self.batch_wait },
            purge: PurgeConfig {
                interval: self.purge_interval,
                grace: self.purge_grace,
                rejected_retention: self.rejected_retention,
                ..PurgeConfig::default()
            },
            retry: RetryConfig::default(),
            migrate: !self.skip_migrations,
        };
        config.validate()?;
        Ok(config)
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|error| format!("{error}; expected a duration such as 250ms, 20s, 5m or 1h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_flags_become_a_config() {
        let cli = Cli::try_parse_from([
            "qsess-syncd",
            "run",
            "--redis-url",
            "redis://127.0.0.1:7000/",
            "--database-url",
            "postgres://postgres@127.0.0.1/db",
            "--batch-wait",
            "5ms",
            "--purge-grace",
            "2h",
        ])
        .unwrap();
        let Command::Run(arguments) = cli.command else { panic!("expected run") };
        let config = arguments.into_config().unwrap();
        assert_eq!(config.batch.max_wait, Duration::from_millis(5));
        assert_eq!(config.purge.grace, Duration::from_secs(7200));
        assert_eq!(config.purge.rejected_retention, PurgeConfig::DEFAULT_REJECTED_RETENTION);
        assert_eq!(config.consumer, "syncd");
        assert!(config.migrate);
    }

    #[test]
    fn help_never_shows_the_urls_from_the_environment() {
        use clap::CommandFactory;
        let secret = "hunter2-redis-pw";
        std::env::set_var("QSESS_REDIS_URL", format!("redis://syncd:{secret}@127.0.0.1:7000/"));
        std::env::set_var("QSESS_DATABASE_URL", format!("postgres://qsess:{secret}@127.0.0.1/db"));
        let mut command = Cli::command();
        let run = command.find_subcommand_mut("run").unwrap();
        let help = run.render_long_help().to_string();
        std::env::remove_var("QSESS_REDIS_URL");
        std::env::remove_var("QSESS_DATABASE_URL");
        assert!(help.contains("QSESS_REDIS_URL"), "{help}");
        assert!(!help.contains(secret), "{help}");
    }

    #[test]
    fn bad_durations_say_what_is_accepted() {
        let error = Cli::try_parse_from([
            "qsess-syncd",
            "run",
            "--database-url",
            "postgres://postgres@127.0.0.1/db",
            "--batch-wait",
            "soon",
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("expected a duration such as 250ms"), "{error}");
    }
}
