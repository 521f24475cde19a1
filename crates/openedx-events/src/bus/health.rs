//! Health of the consumers running in this process, for a container
//! orchestrator's probes.
//!
//! Each consume loop registers a [`ConsumerHealth`] while it runs and marks
//! it as it goes: when it is subscribed, whether its last call to the broker
//! worked, and when it last made progress (a receive returned, a receiver
//! returned, a message was settled). [`report`] reads them all:
//!
//! - **live**: every loop made progress within `stall_after` (plus its poll
//!   timeout). An idle loop stays live, since each empty receive is
//!   progress; a receiver that never returns, or a broker call that hangs,
//!   makes it unhealthy.
//! - **ready**: at least one loop runs, and every loop is subscribed with
//!   its last broker call successful.
//!
//! Plain atomics, written by the loop without locks; the registry's lock is
//! taken only when a loop starts or ends and when a probe reads.
//!
//! ```
//! use std::time::Duration;
//! use openedx_events::bus::health;
//! let h = health::register("dev-topic", "group", Duration::from_secs(1));
//! assert!(!health::report(Duration::from_secs(60)).ready);
//! h.subscribed(true);
//! h.broker_ok(true);
//! let report = health::report(Duration::from_secs(60));
//! assert!(report.live);
//! drop(h);
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// One running consume loop, as its probes see it.
#[derive(Debug)]
pub struct ConsumerHealth {
    topic: String,
    group: String,
    poll_timeout: Duration,
    subscribed: AtomicBool,
    broker_ok: AtomicBool,
    /// Milliseconds since [`epoch`] at the last progress.
    last_progress_ms: AtomicU64,
    in_flight: AtomicU64,
}

impl ConsumerHealth {
    /// Whether the loop holds a subscription.
    pub fn subscribed(&self, yes: bool) {
        self.subscribed.store(yes, Ordering::Relaxed);
    }

    /// Whether the last call to the broker (subscribe, receive) worked.
    pub fn broker_ok(&self, yes: bool) {
        self.broker_ok.store(yes, Ordering::Relaxed);
    }

    /// The loop did something: it is not wedged.
    pub fn progress(&self) {
        self.last_progress_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Messages received and not yet settled.
    pub fn in_flight(&self, n: u64) {
        self.in_flight.store(n, Ordering::Relaxed);
    }

    fn status(&self, stall_after: Duration) -> ConsumerStatus {
        let since = now_ms().saturating_sub(self.last_progress_ms.load(Ordering::Relaxed));
        let since_progress = Duration::from_millis(since);
        let subscribed = self.subscribed.load(Ordering::Relaxed);
        let broker_ok = self.broker_ok.load(Ordering::Relaxed);
        ConsumerStatus {
            topic: self.topic.clone(),
            group: self.group.clone(),
            live: since_progress <= stall_after + self.poll_timeout,
            ready: subscribed && broker_ok,
            subscribed,
            broker_ok,
            seconds_since_progress: since_progress.as_secs_f64(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}

/// Keeps a loop registered; dropping it removes the loop from [`report`].
#[derive(Debug)]
pub struct HealthGuard(Arc<ConsumerHealth>);

impl std::ops::Deref for HealthGuard {
    type Target = ConsumerHealth;
    fn deref(&self) -> &ConsumerHealth {
        &self.0
    }
}

impl Drop for HealthGuard {
    fn drop(&mut self) {
        let mut all = registry().lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|w| w.upgrade().is_some_and(|h| !Arc::ptr_eq(&h, &self.0)));
    }
}

/// Register a loop on `topic` (full name) and `group`. It starts live (its
/// progress is now), not subscribed.
pub fn register(topic: &str, group: &str, poll_timeout: Duration) -> HealthGuard {
    let health = Arc::new(ConsumerHealth {
        topic: topic.to_string(),
        group: group.to_string(),
        poll_timeout,
        subscribed: AtomicBool::new(false),
        broker_ok: AtomicBool::new(false),
        last_progress_ms: AtomicU64::new(now_ms()),
        in_flight: AtomicU64::new(0),
    });
    let mut all = registry().lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|w| w.strong_count() > 0);
    all.push(Arc::downgrade(&health));
    HealthGuard(health)
}

/// One loop's state in a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConsumerStatus {
    /// Full topic.
    pub topic: String,
    /// Consumer group.
    pub group: String,
    /// Made progress recently enough.
    pub live: bool,
    /// Subscribed, and the broker answered the last call.
    pub ready: bool,
    /// Holds a subscription.
    pub subscribed: bool,
    /// The last broker call worked.
    pub broker_ok: bool,
    /// Since the last progress.
    pub seconds_since_progress: f64,
    /// Messages received and not yet settled.
    pub in_flight: u64,
}

/// The process's health: what `/health/live` and `/health/ready` answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HealthReport {
    /// No loop is wedged.
    pub live: bool,
    /// At least one loop runs, and all are subscribed with the broker
    /// reachable.
    pub ready: bool,
    /// Each loop.
    pub consumers: Vec<ConsumerStatus>,
}

/// The health of every loop running now; a loop is wedged when it has made
/// no progress for `stall_after` beyond its poll timeout.
pub fn report(stall_after: Duration) -> HealthReport {
    let live_ones: Vec<Arc<ConsumerHealth>> = {
        let all = registry().lock().unwrap_or_else(|e| e.into_inner());
        all.iter().filter_map(Weak::upgrade).collect()
    };
    let consumers: Vec<ConsumerStatus> = live_ones.iter().map(|h| h.status(stall_after)).collect();
    HealthReport {
        live: consumers.iter().all(|c| c.live),
        ready: !consumers.is_empty() && consumers.iter().all(|c| c.ready),
        consumers,
    }
}

fn registry() -> &'static Mutex<Vec<Weak<ConsumerHealth>>> {
    static ALL: OnceLock<Mutex<Vec<Weak<ConsumerHealth>>>> = OnceLock::new();
    ALL.get_or_init(|| Mutex::new(Vec::new()))
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_without_progress_is_not_live_and_recovers() {
        let h = register("t-stall", "g", Duration::ZERO);
        h.subscribed(true);
        h.broker_ok(true);
        std::thread::sleep(Duration::from_millis(30));
        let mine = |r: HealthReport| r.consumers.into_iter().find(|c| c.topic == "t-stall").unwrap();
        assert!(!mine(report(Duration::from_millis(10))).live);
        h.progress();
        let status = mine(report(Duration::from_millis(10)));
        assert!(status.live && status.ready);
        h.broker_ok(false);
        assert!(!mine(report(Duration::from_secs(10))).ready);
        drop(h);
        assert!(report(Duration::from_secs(1))
            .consumers
            .iter()
            .all(|c| c.topic != "t-stall"));
    }
}
