//! End-to-end test harness for qsess: builds the module and runs throwaway `redis-server` processes.
//!
//! For the sync daemon it also runs throwaway PostgreSQL clusters ([`PgCluster`], [`shared_cluster`]),
//! the `qsess-syncd` binary built by cargo ([`Daemon`], [`run_syncd`]) and the daemon in-process
//! ([`InProcessSyncd`]).
//!
//! Every [`RedisServer`] is a private `redis-server` child process on its own loopback port and
//! temporary directory, stopped (SIGTERM, then SIGKILL) when dropped. Servers load the qsess module
//! from [`module_path`] unless built [`without_module`](RedisServerBuilder::without_module).
//!
//! ```no_run
//! use qsess_tests::RedisServer;
//!
//! let server = RedisServer::builder()
//!     .module_arg("qsess.idle-timeout-ms", "1000")
//!     .start();
//! let mut con = server.connection();
//! let pong: String = redis::cmd("PING").query(&mut con).unwrap();
//! assert_eq!(pong, "PONG");
//! ```

pub mod cargo_build;
mod child_process;
pub mod eventually;
pub mod geoip_fixtures;
pub mod module_build;
pub mod parent_death;
pub mod ports;
pub mod postgres;
pub mod postgres_database;
pub mod postgres_user;
pub mod redis_cluster;
pub mod redis_server;
pub mod syncd_in_process;
pub mod syncd_process;

pub use cargo_build::syncd_binary_path;
pub use eventually::eventually;
pub use module_build::module_path;
pub use ports::free_port;
pub use postgres::{remove_stale_cluster_dirs, shared_cluster, PgCluster};
pub use postgres_database::PgDatabase;
pub use redis_cluster::{RedisCluster, RedisClusterBuilder};
pub use redis_server::{RedisServer, RedisServerBuilder, ServerName};
pub use syncd_in_process::InProcessSyncd;
pub use syncd_process::{run_syncd, run_syncd_with_env, Daemon, DaemonBuilder, SyncdOutput};
