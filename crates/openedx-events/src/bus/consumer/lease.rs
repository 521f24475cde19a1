//! Keeping leases while the loop is busy: a task of the subscription's own
//! asks the backend's [`LeaseKeeper`] to extend its leases when the same
//! message has been in hand for a whole period. It works for synchronous
//! receivers too, which block the loop's task (on a multi-threaded runtime).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::super::transport::LeaseKeeper;

/// Which message the loop is handling (its sequence number; 0: none).
#[derive(Clone, Default)]
pub(super) struct InHand(Arc<AtomicU64>);

impl InHand {
    pub fn start(&self, seq: u64) {
        self.0.store(seq, Ordering::Relaxed);
    }

    pub fn done(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// The keeping task; stopped when dropped.
pub(super) struct LeaseTask(tokio::task::JoinHandle<()>);

impl LeaseTask {
    pub fn start(keeper: Arc<dyn LeaseKeeper>, in_hand: InHand) -> Self {
        LeaseTask(tokio::spawn(async move {
            let mut seen = 0;
            let every = keeper.interval().max(std::time::Duration::from_millis(10));
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                ticker.tick().await;
                let now = in_hand.0.load(Ordering::Relaxed);
                if now != 0 && now == seen {
                    if let Err(e) = keeper.keep_alive().await {
                        tracing::warn!(error = %e, "could not extend the leases of the messages in hand");
                    }
                }
                seen = now;
            }
        }))
    }
}

impl Drop for LeaseTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
