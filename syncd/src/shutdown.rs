//! Shutdown plumbing: a trigger and cloneable receivers, plus the OS signals that pull the trigger.

use tokio::sync::watch;

/// Pulls the shutdown trigger for every [`Shutdown`] receiver.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn request(&self) {
        self.0.send_replace(true);
    }
}

/// Learns that shutdown was requested. Cloning is cheap; every clone sees the same request.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (ShutdownTrigger(sender), Shutdown(receiver))
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once shutdown is requested (at once if it already was).
    pub async fn requested(&mut self) {
        // An error means the trigger is gone, which can only happen when the daemon is ending anyway.
        let _ = self.0.wait_for(|requested| *requested).await;
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
