//! The sync daemon run in-process through the library (`qsess_syncd::run`), on a thread with its own
//! Tokio runtime, so that synchronous tests can keep using blocking Redis and Postgres clients.

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use qsess_syncd::{Error, RunConfig};
use tokio::sync::oneshot;

/// How long [`InProcessSyncd::stop`] and drop wait for `run` to return after shutdown is requested.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// `qsess_syncd::run(config, shutdown)` on a background thread; dropping it requests shutdown and
/// waits for `run` to return.
#[derive(Debug)]
pub struct InProcessSyncd {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), Error>>>,
}

impl InProcessSyncd {
    /// Starts `run(config, ...)` on a new thread with a two-worker multi-threaded runtime.
    ///
    /// # Panics
    ///
    /// If the thread cannot be started.
    pub fn start(config: RunConfig) -> InProcessSyncd {
        let (sender, receiver) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("qsess-syncd-in-process".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("cannot start a Tokio runtime for qsess-syncd: {e}"));
                runtime.block_on(qsess_syncd::run(config, async move {
                    let _ = receiver.await;
                }))
            })
            .unwrap_or_else(|e| panic!("cannot start the qsess-syncd thread: {e}"));
        InProcessSyncd { shutdown: Some(sender), thread: Some(thread) }
    }

    /// Whether `run` has not returned yet.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|thread| !thread.is_finished())
    }

    /// Requests shutdown and returns what `run` returned.
    ///
    /// # Panics
    ///
    /// If `run` panicked, or has not returned within 30 s.
    pub fn stop(mut self) -> Result<(), Error> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), Error> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let Some(thread) = self.thread.take() else { return Ok(()) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "qsess_syncd::run did not return within {STOP_TIMEOUT:?} of shutdown");
            thread::sleep(Duration::from_millis(10));
        }
        thread.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    }
}

impl Drop for InProcessSyncd {
    fn drop(&mut self) {
        if thread::panicking() {
            // Ask it to stop, but do not wait: a second panic here would abort.
            if let Some(shutdown) = self.shutdown.take() {
                let _ = shutdown.send(());
            }
            return;
        }
        if let Err(error) = self.stop_and_join() {
            panic!("qsess_syncd::run failed: {}", error_chain(&error));
        }
    }
}

/// An error and all its sources, `outer: inner: ...`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
