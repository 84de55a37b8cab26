//! The daemon's typed errors, each able to say whether retrying can help.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
    #[error("postgres error")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("migration failed")]
    Migration(#[from] refinery::Error),
    #[error("unexpected reply from redis: {0}")]
    UnexpectedReply(String),
    #[error("cannot serve metrics on {address}")]
    MetricsServer {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("gave up after {attempts} attempts over {elapsed:?}")]
    GaveUp { attempts: u32, elapsed: Duration },
    /// A state the code rules out; reported rather than panicking, so the daemon stops cleanly.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// An error and its causes, "outer: inner: innermost", for log lines that must say what failed.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl Error {
    /// Whether the same operation may succeed later: lost connections, timeouts, a restarting server,
    /// serialization failures and deadlocks. Bad data and bad configuration never heal by waiting.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Redis(error) => {
                error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal()
                    || error.is_timeout()
                    // TRYAGAIN and CLUSTERDOWN: a cluster node mid-migration or mid-failover.
                    || matches!(
                        error.code(),
                        Some("LOADING" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" | "BUSY" | "UNBLOCKED")
                    )
            }
            Error::Postgres(error) => postgres_error_is_retryable(error),
            Error::Migration(error) => migration_error_is_retryable(error),
            Error::Config(_)
            | Error::UnexpectedReply(_)
            | Error::MetricsServer { .. }
            | Error::GaveUp { .. }
            | Error::Internal(_) => false,
        }
    }
}

/// A migration that failed on the way to Postgres (a lost connection, or a deadlock with a reader of
/// the tables it alters: each migration is one transaction, rolled back) may succeed when run again; a
/// migration refinery itself refuses (a changed or missing file) never does.
pub fn migration_error_is_retryable(error: &refinery::Error) -> bool {
    match error.kind() {
        refinery::error::Kind::Connection(_, cause) => {
            cause.downcast_ref::<tokio_postgres::Error>().is_some_and(postgres_error_is_retryable)
                || cause.downcast_ref::<std::io::Error>().is_some()
        }
        _ => false,
    }
}

/// Connection-level failures and transient server states are retryable; SQLSTATE classes 22 (data
/// exception) and 23 (integrity violation) are about the rows and are not.
pub fn postgres_error_is_retryable(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            code == "40001" // serialization_failure
                || code == "40P01" // deadlock_detected
                || code.starts_with("08") // connection exception
                || code.starts_with("53") // insufficient resources
                || code.starts_with("57") // operator intervention: admin shutdown, cannot connect now
                || code == "58030" // io_error
        }
    }
}
