//! Shutdown: one trigger, many listeners, so every stage of the agent stops on the same
//! signal (SIGTERM, a reload, or a test dropping the agent).

use tokio::sync::watch;

/// Fires the shutdown; dropping it fires it too.
#[derive(Debug)]
pub struct ShutdownTrigger {
    /// Carries `true` once shutdown has begun.
    sender: watch::Sender<bool>,
}

/// Learns about the shutdown; cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    /// Receives `true` once shutdown has begun.
    receiver: watch::Receiver<bool>,
}

/// A connected trigger and signal.
pub fn shutdown_pair() -> (ShutdownTrigger, ShutdownSignal) {
    let (sender, receiver) = watch::channel(false);
    (ShutdownTrigger { sender }, ShutdownSignal { receiver })
}

impl ShutdownTrigger {
    /// Begin the shutdown.
    pub fn fire(&self) {
        self.sender.send_replace(true);
    }
}

impl Drop for ShutdownTrigger {
    fn drop(&mut self) {
        self.fire();
    }
}

impl ShutdownSignal {
    /// True once shutdown has begun.
    pub fn is_set(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Wait until shutdown begins (returns at once if it already has).
    pub async fn wait(&mut self) {
        // An error means the trigger is gone, which also means shutdown.
        let _ = self.receiver.wait_for(|fired| *fired).await;
    }
}
