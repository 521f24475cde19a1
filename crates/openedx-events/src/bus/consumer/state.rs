//! What one consumer run keeps between messages: its counts, the failures
//! in a row, the attempts of messages being retried and the ids of recently
//! handled events.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use super::super::health::{self, HealthGuard};
use super::instruments::Instruments;

/// Counts of one consumer run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Messages received (redeliveries included).
    pub received: u64,
    /// Messages every receiver handled.
    pub processed: u64,
    /// Receiver failures that were retried.
    pub retried: u64,
    /// Messages sent to the dead-letter topic (or, with dead letters off or
    /// a dead letter the broker refuses for good, logged in full and
    /// dropped).
    pub dead_lettered: u64,
    /// Work-cycle hook failures.
    pub hook_failures: u64,
    /// Failed receives (a backend that panicked while receiving included).
    pub poll_failures: u64,
    /// Duplicate events skipped (deduplication window).
    pub duplicates_skipped: u64,
    /// Time spent consuming.
    pub elapsed: Duration,
}

/// At most this many messages have their attempts remembered at once (a
/// message handed back for a later retry); beyond it the oldest are
/// forgotten, so a message may get a few more attempts than configured but
/// memory stays bounded.
const MAX_TRACKED_ATTEMPTS: usize = 100_000;

pub(super) struct LoopState {
    pub consecutive_errors: u32,
    pub last_error: String,
    pub stats: ConsumerStats,
    /// Failed handling attempts per message (topic@position) handed back to
    /// be retried later. Counted here, not taken from the broker's delivery
    /// count: a message handed back at a shutdown or a rebalance was
    /// delivered again without failing.
    attempts: HashMap<String, u32>,
    /// Ids of recently processed events, oldest first (deduplication).
    recent: VecDeque<uuid::Uuid>,
    recent_set: HashSet<uuid::Uuid>,
    /// The run's metrics.
    pub metrics: Instruments,
    /// What the health probes see of this run.
    pub health: HealthGuard,
}

impl LoopState {
    pub fn new(topic: &str, group: &str, poll_timeout: Duration) -> Self {
        LoopState {
            metrics: Instruments::new(topic, group),
            health: health::register(topic, group, poll_timeout),
            consecutive_errors: 0,
            last_error: String::new(),
            stats: ConsumerStats::default(),
            attempts: HashMap::new(),
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
        }
    }

    /// One more failure in a row.
    pub fn error(&mut self, e: impl Into<String>) {
        self.consecutive_errors += 1;
        self.metrics.consecutive_errors.set(f64::from(self.consecutive_errors));
        self.last_error = e.into();
    }

    /// Messages received and not yet settled.
    pub fn set_in_flight(&mut self, n: u64) {
        self.metrics.in_flight.set(n as f64);
        self.health.in_flight(n);
    }

    /// A success: the failures in a row are over.
    pub fn clear_errors(&mut self) {
        if self.consecutive_errors != 0 {
            self.consecutive_errors = 0;
            self.metrics.consecutive_errors.set(0.0);
        }
    }

    /// Failed attempts already made on this message.
    pub fn attempts_made(&self, key: impl FnOnce() -> String) -> u32 {
        if self.attempts.is_empty() {
            return 0;
        }
        self.attempts.get(&key()).copied().unwrap_or(0)
    }

    /// Remember the failed attempts of a message handed back.
    pub fn set_attempts(&mut self, key: String, made: u32) {
        if self.attempts.len() >= MAX_TRACKED_ATTEMPTS {
            self.attempts.clear();
        }
        self.attempts.insert(key, made);
    }

    /// The message is settled: forget its attempts.
    pub fn forget_attempts(&mut self, key: impl FnOnce() -> String) {
        if !self.attempts.is_empty() {
            self.attempts.remove(&key());
        }
    }

    /// Whether an event with this id was processed recently.
    pub fn seen(&self, id: &uuid::Uuid) -> bool {
        self.recent_set.contains(id)
    }

    /// Remember a processed event id, keeping the last `window`.
    pub fn remember(&mut self, id: uuid::Uuid, window: usize) {
        if window == 0 || !self.recent_set.insert(id) {
            return;
        }
        self.recent.push_back(id);
        while self.recent.len() > window {
            if let Some(old) = self.recent.pop_front() {
                self.recent_set.remove(&old);
            }
        }
    }
}

/// The text of a caught panic.
pub(super) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}
