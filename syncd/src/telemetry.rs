//! Prometheus metrics at `/metrics` and liveness at `/healthz`.
//!
//! Metric names end in their unit, counters in `_total`. The recorder is process-wide, installed once,
//! so a process may run the daemon several times (as the tests do).

use crate::error::Error;
use crate::shutdown::Shutdown;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::OnceLock;

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus handle; `None` if another recorder was installed first.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("qsess_syncd_batch_seconds".to_owned()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("qsess_syncd_lag_seconds".to_owned()),
                    &[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0],
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("qsess_syncd_batch_entries".to_owned()),
                    &[1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0],
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!("qsess_syncd_changes_mirrored_total", "stream entries committed to postgres");
    metrics::describe_counter!("qsess_syncd_batches_total", "postgres transactions committed");
    metrics::describe_histogram!("qsess_syncd_batch_entries", "stream entries per batch");
    metrics::describe_histogram!("qsess_syncd_batch_seconds", "time to commit one batch, retries included");
    metrics::describe_histogram!("qsess_syncd_lag_seconds", "time from a change in redis to its commit in postgres");
    metrics::describe_gauge!("qsess_syncd_stream_backlog_entries", "entries not yet mirrored, all buckets");
    metrics::describe_gauge!("qsess_syncd_oldest_unmirrored_age_seconds", "age of the oldest unmirrored change");
    metrics::describe_counter!("qsess_syncd_retries_total", "failed operations retried, by target");
    metrics::describe_counter!("qsess_syncd_rejected_changes_total", "changes recorded in qsess.rejected_changes");
    metrics::describe_counter!("qsess_syncd_purged_rows_total", "expired rows purged");
    metrics::describe_counter!(
        "qsess_syncd_rejected_payloads_erased_total",
        "refused changes whose payload was erased, grace after their session expired"
    );
    metrics::describe_counter!(
        "qsess_syncd_purged_rejected_changes_total",
        "refused changes deleted after the rejected-change retention"
    );
    metrics::describe_counter!("qsess_syncd_reloads_total", "misses answered, by outcome");
    metrics::describe_counter!(
        "qsess_syncd_reload_refused_total",
        "reload requests and restores the loader skipped, by reason; none stops it"
    );
    metrics::describe_counter!("qsess_syncd_user_reloads_total", "reload-user requests answered");
    metrics::describe_histogram!("qsess_syncd_reload_seconds", "time to answer one batch of misses");
    metrics::describe_counter!("qsess_syncd_consumer_groups_created_total", "consumer groups (re)created");
}

/// Serves `/metrics` and `/healthz` until shutdown.
pub async fn serve(address: SocketAddr, mut shutdown: Shutdown) -> Result<tokio::task::JoinHandle<()>, Error> {
    let listener =
        tokio::net::TcpListener::bind(address).await.map_err(|source| Error::MetricsServer { address, source })?;
    let router = Router::new()
        .route("/metrics", get(|| async { prometheus().map(PrometheusHandle::render).unwrap_or_default() }))
        .route("/healthz", get(|| async { "ok\n" }));
    tracing::info!(%address, "serving /metrics and /healthz");
    Ok(tokio::spawn(async move {
        let server = axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.requested().await });
        if let Err(error) = server.await {
            tracing::warn!(error = %error, "metrics server stopped");
        }
    }))
}
