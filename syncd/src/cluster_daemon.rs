//! One daemon per Redis Cluster node: idle while the node is a replica, mirror and load while it is a
//! primary.
//!
//! On a cluster, `qsess-syncd run --redis-url redis://<node>` runs beside every node, replicas
//! included. Every half second it asks its node's `ROLE`. While the node is a primary it runs a
//! *primary session*: the stream watch (`cluster_watch.rs`), the mirror loop over the node's per-slot
//! change streams (`cluster_streams.rs`), the loader of the node's misses (`cluster_loader.rs`) and the
//! backlog gauges. When a failover promotes the node, the session starts within one check; when the
//! node is demoted, the session stops: the batches read are committed, and entries it could not
//! acknowledge stay pending for the new primary's daemon, which re-reads them.

use crate::cluster_loader;
use crate::cluster_node::{self, NodeRole};
use crate::cluster_streams::ClusterStreams;
use crate::cluster_watch::{self, StreamWatch};
use crate::config::RunConfig;
use crate::error::Error;
use crate::mirror_loop;
use crate::retry::Backoff;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::stream_backlog;
use crate::stream_source::{self, Layout};
use redis::aio::MultiplexedConnection;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How often the daemon asks its node's role: a promoted replica's daemon starts within this, a small
/// part of a failover's seconds.
const ROLE_CHECK_EVERY: Duration = Duration::from_millis(500);
/// How often the backlog gauges are measured.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// Runs the daemon of one cluster node until shutdown. A primary session that fails with an error
/// waiting cannot heal ends the daemon, as on a standalone server.
pub async fn run(config: &RunConfig, mut shutdown: Shutdown) -> Result<(), Error> {
    let client = stream_source::open_client(config.redis_url.as_str())?;
    let (roles, mut role) = watch::channel::<Option<NodeRole>>(None);
    let mut role_task = Some(tokio::spawn(follow_role(client.clone(), config.retry.clone(), roles, shutdown.clone())));
    let mut session: Option<PrimarySession> = None;
    let outcome = loop {
        tokio::select! {
            _ = shutdown.requested() => break Ok(()),
            changed = role.changed() => {
                if changed.is_err() {
                    // The role task ended: at shutdown, or on an error waiting cannot heal (no `+role`).
                    break match role_task.take() {
                        Some(task) => task.await.unwrap_or(Ok(())),
                        None => Ok(()),
                    };
                }
                let now = *role.borrow_and_update();
                match (now, session.is_some()) {
                    (Some(NodeRole::Primary), false) => match PrimarySession::start(config, &client).await {
                        Ok(started) => session = Some(started),
                        // Retried at the next role check.
                        Err(error) if error.is_retryable() => {
                            tracing::warn!(error = %crate::error::chain(&error), "cannot start mirroring the cluster node; retrying");
                        }
                        Err(error) => break Err(error),
                    },
                    (Some(NodeRole::Replica), true) => {
                        if let Some(demoted) = session.take() {
                            tracing::info!("this cluster node was demoted: committing the batches read, then idling");
                            demoted.stop().await;
                        }
                    }
                    // A primary keeps mirroring, a replica keeps idling, and a node that cannot be
                    // asked (down, restarting) keeps doing what it last asked for.
                    _ => {}
                }
            }
            end = session_end(&mut session) => {
                let Some(ended) = session.take() else { continue };
                match end {
                    SessionEnd::Mirror(result) => {
                        ended.stop_tasks().await;
                        match result {
                            Err(error) => break Err(error),
                            Ok(()) => tracing::warn!("the mirror loop ended by itself; starting it again"),
                        }
                    }
                    SessionEnd::Failed(error) => {
                        ended.stop().await;
                        break Err(error);
                    }
                }
            }
        }
    };
    if let Some(running) = session.take() {
        running.stop().await;
    }
    if let Some(task) = role_task {
        task.abort();
        let _ = task.await;
    }
    if outcome.is_ok() {
        tracing::info!("stopped; every batch read was committed, and acknowledged unless its slot moved");
    }
    outcome
}

/// Asks the node's role every [`ROLE_CHECK_EVERY`] and publishes every answer (so that the supervisor
/// also retries a session that could not start), `None` while the node cannot be asked; logs changes.
async fn follow_role(
    client: redis::Client,
    retry: crate::config::RetryConfig,
    roles: watch::Sender<Option<NodeRole>>,
    mut shutdown: Shutdown,
) -> Result<(), Error> {
    let mut connection: Option<MultiplexedConnection> = None;
    let mut known: Option<NodeRole> = None;
    let mut unreachable = false;
    let mut backoff = Backoff::new(retry);
    let mut ticker = tokio::time::interval(ROLE_CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.requested() => return Ok(()),
        }
        let asked = async {
            let open = match &mut connection {
                Some(open) => open,
                None => connection.insert(stream_source::connect(&client).await?),
            };
            cluster_node::read_role(open).await
        };
        match asked.await {
            Ok(role) => {
                unreachable = false;
                backoff.reset();
                if known != Some(role) {
                    match role {
                        NodeRole::Primary => tracing::info!(
                            "this cluster node is a primary: mirroring its change streams and answering its misses"
                        ),
                        NodeRole::Replica => {
                            tracing::info!("this cluster node is a replica: idling until a failover promotes it")
                        }
                    }
                    known = Some(role);
                }
                roles.send_replace(Some(role));
            }
            Err(error) if !error.is_retryable() => return Err(error),
            Err(error) => {
                if !unreachable {
                    tracing::warn!(error = %crate::error::chain(&error), "cannot ask the cluster node its role; retrying");
                    unreachable = true;
                }
                connection = None;
                roles.send_replace(None);
                if !backoff.wait(&mut shutdown).await {
                    return Ok(());
                }
            }
        }
    }
}

/// How a primary session ended by itself.
enum SessionEnd {
    /// The mirror loop returned.
    Mirror(Result<(), Error>),
    /// A spawned task (the stream watch) failed.
    Failed(Error),
}

/// Completes when the running session ends by itself; never while no session runs.
async fn session_end(session: &mut Option<PrimarySession>) -> SessionEnd {
    let Some(running) = session else { return std::future::pending().await };
    tokio::select! {
        result = running.mirror.as_mut() => SessionEnd::Mirror(result),
        Some(error) = running.failures.recv() => SessionEnd::Failed(error),
    }
}

/// The mirror loop of a session, polled by the supervisor's own task as `lib.rs` polls the standalone
/// one: its retries borrow their state in async closures, whose futures the compiler cannot yet prove
/// `Send`, so it is not spawned.
type MirrorLoop = Pin<Box<dyn Future<Output = Result<(), Error>>>>;

/// What a primary's daemon runs, stopped together.
struct PrimarySession {
    trigger: ShutdownTrigger,
    mirror: MirrorLoop,
    failures: mpsc::Receiver<Error>,
    tasks: Vec<JoinHandle<()>>,
}

impl PrimarySession {
    async fn start(config: &RunConfig, client: &redis::Client) -> Result<PrimarySession, Error> {
        let mut connection = stream_source::connect(client).await?;
        let layout = Layout::read(&mut connection).await?;
        if !layout.cluster {
            return Err(Error::Config("the server left cluster mode while running; restart qsess-syncd".to_owned()));
        }
        let names = layout.change_streams();
        let (trigger, shutdown) = Shutdown::new();
        let (report, failures) = mpsc::channel::<Error>(1);
        let watch = StreamWatch::new();
        let tasks = vec![
            tokio::spawn(reported(report, watch.clone().run(client.clone(), config.retry.clone(), shutdown.clone()))),
            tokio::spawn(cluster_loader::run(
                config.redis_url.clone(),
                config.database_url.clone(),
                config.retry.clone(),
                layout.clone(),
                watch.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(measure_backlog(client.clone(), layout.clone(), config.group.clone(), shutdown.clone())),
        ];
        let streams = {
            let (client, config) = (client.clone(), config.clone());
            move |watch: Option<Arc<StreamWatch>>| {
                ClusterStreams::new(
                    client.clone(),
                    layout.clone(),
                    names.clone(),
                    &config.group,
                    &config.consumer,
                    watch,
                )
            }
        };
        let reader = streams(Some(watch));
        let mirror_config = config.clone();
        let mirror: MirrorLoop =
            Box::pin(async move { mirror_loop::run_with(&mirror_config, shutdown, reader, || streams(None)).await });
        Ok(PrimarySession { trigger, mirror, failures, tasks })
    }

    /// Stops every task; the mirror loop commits what it read first.
    async fn stop(mut self) {
        self.trigger.request();
        if let Err(error) = self.mirror.as_mut().await {
            tracing::warn!(error = %crate::error::chain(&error), "the mirror loop stopped with an error");
        }
        self.stop_tasks().await;
    }

    /// Stops the spawned tasks, once the mirror loop has returned.
    async fn stop_tasks(self) {
        self.trigger.request();
        for task in self.tasks {
            let _ = task.await;
        }
        metrics::gauge!("qsess_syncd_stream_backlog_entries").set(0.0);
        metrics::gauge!("qsess_syncd_oldest_unmirrored_age_seconds").set(0.0);
    }
}

/// Runs a task of the session, reporting its error to the supervisor.
async fn reported(report: mpsc::Sender<Error>, task: impl std::future::Future<Output = Result<(), Error>>) {
    if let Err(error) = task.await {
        let _ = report.send(error).await;
    }
}

/// The node's backlog gauges, over the change streams `QSESS.STREAMS ALL` lists (which, unlike the
/// plain form, takes no news away from the watch).
async fn measure_backlog(client: redis::Client, layout: Layout, group: String, shutdown: Shutdown) {
    let measure: stream_backlog::MeasureBacklog = Box::new(move |open| {
        let (layout, group) = (layout.clone(), group.clone());
        Box::pin(async move {
            let listed: redis::Value = redis::cmd("QSESS.STREAMS").arg("ALL").query_async(open).await?;
            let slots = cluster_watch::parse_streams_reply(&listed)?;
            stream_backlog::cluster_node_backlog(open, &layout, &slots, &group).await
        })
    });
    stream_backlog::publish_backlog_gauges(client, BACKLOG_EVERY, shutdown, measure).await;
}
