//! A throwaway database on a test PostgreSQL cluster, dropped (with its connections) on drop.

use std::io::{self, Write};
use std::path::PathBuf;
use std::thread;

use crate::postgres::{connect, database_url, quote_identifier, read_file_from};

/// An empty database made by [`PgCluster::fresh_database`](crate::PgCluster::fresh_database),
/// with a name unique in this process.
///
/// Dropping it runs `DROP DATABASE ... WITH (FORCE)`, which disconnects any clients still using it
/// (best effort: nothing happens if the cluster is stopped or gone). If the thread is panicking
/// and the database is on the [`shared_cluster`](crate::shared_cluster), which is never dropped,
/// the part of the cluster log written since the database was created is printed to stderr first.
#[derive(Debug)]
pub struct PgDatabase {
    name: String,
    port: u16,
    /// For a database on the shared cluster: its log file and its length when the database was
    /// created.
    shared_log: Option<(PathBuf, u64)>,
}

impl PgDatabase {
    pub(crate) fn new(name: String, port: u16, shared_log: Option<(PathBuf, u64)>) -> PgDatabase {
        PgDatabase { name, port, shared_log }
    }

    /// The database name, `qsess_test_<n>_<pid>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port of the cluster it lives on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its connection URL as the superuser, `postgres://postgres@127.0.0.1:<port>/<name>`, as
    /// accepted by `tokio_postgres::connect` and `postgres::Client::connect`.
    pub fn url(&self) -> String {
        database_url(self.port, &self.name)
    }

    /// A new superuser connection to this database.
    ///
    /// Like every `postgres::Client`, it must not be created or used inside an async runtime; use
    /// [`url`](Self::url) with `tokio_postgres` there.
    ///
    /// # Panics
    ///
    /// If the cluster cannot be reached.
    pub fn client(&self) -> postgres::Client {
        connect(self.port, &self.name).unwrap_or_else(|e| {
            panic!("cannot connect to database {} on PostgreSQL on port {} ({}): {e}", self.name, self.port, self.url())
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let (true, Some((log_path, start))) = (thread::panicking(), &self.shared_log) {
            let port = self.port;
            // One write, so parallel tests' output does not interleave within the log.
            let report = format!(
                "\n===== shared PostgreSQL (port {port}) log since database {} was created =====\n{}\
                 ===== end of log for port {port} =====\n",
                self.name,
                read_file_from(log_path, *start)
            );
            let _ = io::stderr().write_all(report.as_bytes());
        }
        // On a thread of its own: the sync client cannot run inside an async runtime, and a panic
        // there must not become a panic in drop.
        let statement = format!("drop database if exists {} with (force)", quote_identifier(&self.name));
        let port = self.port;
        let _ = thread::spawn(move || {
            if let Ok(mut client) = connect(port, "postgres") {
                let _ = client.batch_execute(&statement);
            }
        })
        .join();
    }
}
