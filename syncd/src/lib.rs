//! qsess-syncd: mirrors qsess sessions from Redis into PostgreSQL.
//!
//! The module appends one change record per state change to each bucket's stream; [`run`] tails those
//! streams with a consumer group, commits each batch to Postgres in one version-guarded transaction,
//! and only then acknowledges and trims. See ARCHITECTURE.md for the guarantees.
//!
//! Layout: `cli` and `config` turn flags into a validated [`RunConfig`]; `stream_source` is the Redis
//! side, `mirror_sink` the Postgres side, `change_batch` folds a batch into one change per session,
//! `mirror_loop` drives them with `retry`; `reload` answers misses (`reload_refusals` counts what it
//! skips); `stream_backlog` measures the backlog gauges; `purge`, `verify`, `migrations` and
//! `telemetry` are the operator's tools; `shutdown` carries SIGTERM to every task.
//!
//! On Redis Cluster one daemon runs beside every node: `cluster_daemon` idles while its node is a
//! replica and, while it is a primary, runs `cluster_watch` (which slots' streams have news),
//! `cluster_streams` (the per-slot change streams, with `cluster_stream_set`'s bookkeeping) under the
//! same `mirror_loop`, and `cluster_loader`; `cluster_node` reads roles, replies and the slot map.

pub mod change_batch;
pub mod cli;
pub mod cluster_daemon;
pub mod cluster_loader;
pub mod cluster_node;
pub mod cluster_stream_set;
pub mod cluster_streams;
pub mod cluster_watch;
pub mod config;
pub mod error;
pub mod migrations;
pub mod mirror_loop;
pub mod mirror_sink;
pub mod purge;
pub mod reload;
pub mod reload_refusals;
pub mod retry;
pub mod session_row;
pub mod shutdown;
pub mod stream_backlog;
pub mod stream_entry;
pub mod stream_source;
pub mod telemetry;
pub mod verify;

pub use config::RunConfig;
pub use error::Error;
pub use migrations::migrate;
pub use shutdown::{Shutdown, ShutdownTrigger};
pub use verify::{verify, VerifyReport};

use std::future::Future;
use std::time::Duration;

/// Runs the daemon until `shutdown` completes: migrations (unless disabled), the mirror loop, the purge
/// timer, the backlog gauges and, if configured, the metrics server. On shutdown the batch in flight is
/// committed and acknowledged before this returns. On a Redis Cluster node the mirror loop, the loader
/// and the gauges run only while the node is a primary (`cluster_daemon`).
pub async fn run(config: RunConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
    config.validate()?;
    let (trigger, receiver) = Shutdown::new();
    let signal_task = tokio::spawn({
        let trigger = trigger.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown requested; finishing the batch in flight");
            trigger.request();
        }
    });
    telemetry::prometheus();
    if config.migrate && !migrate_when_reachable(&config, receiver.clone()).await? {
        return Ok(());
    }
    let metrics_server = match config.metrics_addr {
        Some(address) => Some(telemetry::serve(address, receiver.clone()).await?),
        None => None,
    };
    let purge_task = tokio::spawn(purge_periodically(config.clone(), receiver.clone()));
    let outcome = match cluster_mode(&config, receiver.clone()).await {
        Ok(Some(false)) => run_standalone(&config, &trigger, receiver).await,
        Ok(Some(true)) => {
            tracing::info!(
                redis = %config::redact_url(&config.redis_url),
                group = %config.group,
                consumer = %config.consumer,
                "serving one Redis Cluster node"
            );
            cluster_daemon::run(&config, receiver).await
        }
        // Shutdown came before Redis answered.
        Ok(None) => Ok(()),
        Err(error) => Err(error),
    };
    trigger.request();
    signal_task.abort();
    let _ = purge_task.await;
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    outcome
}

/// A standalone server: the mirror loop over every bucket's stream, the loader and the backlog gauges.
async fn run_standalone(config: &RunConfig, trigger: &ShutdownTrigger, receiver: Shutdown) -> Result<(), Error> {
    let backlog_task = tokio::spawn(measure_backlog(config.clone(), receiver.clone()));
    let loader_task = tokio::spawn(reload::run(
        config.redis_url.clone(),
        config.database_url.clone(),
        config.retry.clone(),
        receiver.clone(),
    ));
    tracing::info!(
        redis = %config::redact_url(&config.redis_url),
        group = %config.group,
        consumer = %config.consumer,
        "mirroring change streams"
    );
    let outcome = mirror_loop::run(config, receiver).await;
    trigger.request();
    let _ = backlog_task.await;
    let _ = loader_task.await;
    outcome
}

/// Whether the server is a Redis Cluster node, asked once, waiting out a Redis that is not reachable
/// yet: nothing can be read before it answers. `None` if shutdown came first. A server changes modes
/// only by restarting with another configuration, which the daemon notices as a changed layout.
async fn cluster_mode(config: &RunConfig, mut shutdown: Shutdown) -> Result<Option<bool>, Error> {
    let client = stream_source::open_client(config.redis_url.as_str())?;
    retry::retry_until_shutdown(
        &config.retry,
        &mut shutdown,
        &mut (),
        async |_: &mut ()| {
            let mut connection = stream_source::connect(&client).await?;
            cluster_node::is_cluster_node(&mut connection).await
        },
        |_, error, attempt| {
            metrics::counter!("qsess_syncd_retries_total", "target" => "redis").increment(1);
            tracing::warn!(error = %crate::error::chain(error), attempt, "reading the change streams failed (redis is not reachable yet); retrying");
        },
    )
    .await
}

/// Applies migrations, waiting out a Postgres that is not reachable yet. `false` if shutdown came first.
async fn migrate_when_reachable(config: &RunConfig, mut shutdown: Shutdown) -> Result<bool, Error> {
    let migrated = retry::retry_until_shutdown(
        &config.retry,
        &mut shutdown,
        &mut (),
        async |_: &mut ()| migrations::migrate(&config.database_url).await,
        |_, error, attempt| {
            tracing::warn!(error = %crate::error::chain(error), attempt, "postgres is not reachable yet; retrying");
        },
    )
    .await?;
    Ok(migrated.is_some())
}

async fn purge_periodically(config: RunConfig, mut shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(config.purge.interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.requested() => return,
        }
        let purged = async {
            let client = mirror_sink::connect(&config.database_url).await?;
            purge::purge(&client, &config.purge).await
        };
        if let Err(error) = purged.await {
            tracing::warn!(error = %crate::error::chain(&error), "purging expired sessions and refused changes failed; will try again");
        }
    }
}

/// The backlog gauges over every bucket's change stream.
async fn measure_backlog(config: RunConfig, shutdown: Shutdown) {
    let Ok(client) = stream_source::open_client(config.redis_url.as_str()) else { return };
    let group = config.group.clone();
    let measure: stream_backlog::MeasureBacklog = Box::new(move |open| {
        let group = group.clone();
        Box::pin(async move {
            let layout = stream_source::Layout::read(open).await?;
            let keys: Vec<String> = (0..layout.buckets).map(|bucket| layout.change_stream(bucket)).collect();
            stream_backlog::backlog(open, &keys, &group).await
        })
    });
    stream_backlog::publish_backlog_gauges(client, Duration::from_secs(1), shutdown, measure).await;
}
