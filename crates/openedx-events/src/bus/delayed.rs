//! Delayed redelivery, for backends whose broker cannot hold a nacked
//! message back for a while (Kafka, Redis Streams, Pulsar through
//! pulsar-rs): the message stays with this member, in a [`DelayedQueue`],
//! and `receive` hands it out again once it is due, with its delivery
//! `attempt` one higher. [`DeliveryCounts`] counts deliveries where the
//! broker does not tell.
//!
//! Two counts exist, on purpose, and they do not mix:
//! - [`Delivery::attempt`](super::transport::Delivery::attempt) is how many
//!   times the backend delivered the message (informational: audit log,
//!   dead-letter headers);
//! - the consume loop counts *failed handling attempts* itself, so a
//!   message handed back at a shutdown or a rebalance is not taken for a
//!   failure.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use openedx_events::bus::delayed::DelayedQueue;
//! use openedx_events::bus::transport::DeliveryTag;
//! let mut q = DelayedQueue::new();
//! let now = Instant::now();
//! q.schedule_at(now, DeliveryTag(7), 1, Duration::from_secs(2), "entry 7");
//! q.schedule_at(now, DeliveryTag(3), 2, Duration::from_secs(1), "entry 3");
//! assert!(q.pop_due(now, 10).is_empty());
//! let due = q.pop_due(now + Duration::from_secs(5), 10);
//! assert_eq!(due.iter().map(|d| (d.tag.0, d.attempt, d.item)).collect::<Vec<_>>(),
//!            vec![(3, 3, "entry 3"), (7, 2, "entry 7")]);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::transport::DeliveryTag;

/// The longest delay a queue honours; longer ones (and ones that would
/// overflow the clock) are cut to it.
pub const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

/// `now + delay`, with the delay capped at [`MAX_DELAY`] so the sum never
/// overflows.
///
/// ```
/// use std::time::{Duration, Instant};
/// use openedx_events::bus::delayed::{deadline_after, MAX_DELAY};
/// let now = Instant::now();
/// assert_eq!(deadline_after(now, Duration::MAX), now + MAX_DELAY);
/// ```
pub fn deadline_after(now: Instant, delay: Duration) -> Instant {
    let delay = delay.min(MAX_DELAY);
    now.checked_add(delay).unwrap_or(now)
}

/// A message that is due again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due<T> {
    /// Its tag.
    pub tag: DeliveryTag,
    /// The delivery attempt it is handed out with (one more than the last).
    pub attempt: u32,
    /// What the backend keeps for it.
    pub item: T,
}

/// Nacked messages waiting for their delay, in due order (ties by tag).
#[derive(Debug, Clone)]
pub struct DelayedQueue<T> {
    by_due: BTreeMap<(Instant, u64), (u32, T)>,
    due_of: HashMap<u64, Instant>,
}

impl<T> Default for DelayedQueue<T> {
    fn default() -> Self {
        DelayedQueue {
            by_due: BTreeMap::new(),
            due_of: HashMap::new(),
        }
    }
}

impl<T> DelayedQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hold `item` (delivered `attempt` times so far) until `delay` from now.
    /// A message already waiting keeps its earlier schedule: returns false.
    pub fn schedule(&mut self, tag: DeliveryTag, attempt: u32, delay: Duration, item: T) -> bool {
        self.schedule_at(Instant::now(), tag, attempt, delay, item)
    }

    /// [`DelayedQueue::schedule`] with an explicit clock.
    pub fn schedule_at(&mut self, now: Instant, tag: DeliveryTag, attempt: u32, delay: Duration, item: T) -> bool {
        if self.due_of.contains_key(&tag.0) {
            return false;
        }
        let due = deadline_after(now, delay);
        self.due_of.insert(tag.0, due);
        self.by_due.insert((due, tag.0), (attempt, item));
        true
    }

    /// Whether this message is waiting.
    pub fn contains(&self, tag: DeliveryTag) -> bool {
        self.due_of.contains_key(&tag.0)
    }

    /// Take a message out (it was acknowledged, or its partition revoked).
    pub fn cancel(&mut self, tag: DeliveryTag) -> Option<T> {
        let due = self.due_of.remove(&tag.0)?;
        self.by_due.remove(&(due, tag.0)).map(|(_, item)| item)
    }

    /// When the next message is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.by_due.keys().next().map(|(due, _)| *due)
    }

    /// Up to `max` messages due at `now`, oldest due first.
    pub fn pop_due(&mut self, now: Instant, max: usize) -> Vec<Due<T>> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(entry) = self.by_due.first_entry() else {
                break;
            };
            if entry.key().0 > now {
                break;
            }
            let ((_, tag), (attempt, item)) = entry.remove_entry();
            self.due_of.remove(&tag);
            out.push(Due {
                tag: DeliveryTag(tag),
                attempt: attempt.saturating_add(1),
                item,
            });
        }
        out
    }

    /// Everything waiting, at once (closing hands it all back).
    pub fn drain(&mut self) -> Vec<Due<T>> {
        self.due_of.clear();
        std::mem::take(&mut self.by_due)
            .into_iter()
            .map(|((_, tag), (attempt, item))| Due {
                tag: DeliveryTag(tag),
                attempt: attempt.saturating_add(1),
                item,
            })
            .collect()
    }

    /// Keep only the messages for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(DeliveryTag, &T) -> bool) {
        let due_of = &mut self.due_of;
        self.by_due.retain(|(_, tag), (_, item)| {
            let k = keep(DeliveryTag(*tag), item);
            if !k {
                due_of.remove(tag);
            }
            k
        });
    }

    /// How many wait.
    pub fn len(&self) -> usize {
        self.by_due.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.by_due.is_empty()
    }
}

/// Deliveries per message, for brokers that do not count them, bounded:
/// past `capacity` messages the oldest counts are forgotten (a forgotten
/// message starts again at 1: the count is informational).
///
/// ```
/// use openedx_events::bus::delayed::DeliveryCounts;
/// let mut c = DeliveryCounts::new(2);
/// assert_eq!(c.delivered("a"), 1);
/// assert_eq!(c.delivered("a"), 2);
/// c.delivered("b");
/// c.delivered("c"); // "a" is forgotten
/// assert_eq!(c.delivered("a"), 1);
/// c.forget(&"a");
/// ```
#[derive(Debug, Clone)]
pub struct DeliveryCounts<K: Hash + Eq + Clone> {
    counts: HashMap<K, (u32, u64)>,
    order: BTreeMap<u64, K>,
    next: u64,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> DeliveryCounts<K> {
    /// Counts for up to `capacity` messages (at least 1).
    pub fn new(capacity: usize) -> Self {
        DeliveryCounts {
            counts: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            capacity: capacity.max(1),
        }
    }

    /// One more delivery of `key`; returns its count (1 for the first).
    pub fn delivered(&mut self, key: K) -> u32 {
        if let Some((n, _)) = self.counts.get_mut(&key) {
            *n = n.saturating_add(1);
            return *n;
        }
        while self.counts.len() >= self.capacity {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            self.counts.remove(&old);
        }
        self.next += 1;
        self.order.insert(self.next, key.clone());
        self.counts.insert(key, (1, self.next));
        1
    }

    /// Forget a message (acknowledged).
    pub fn forget(&mut self, key: &K) {
        if let Some((_, seq)) = self.counts.remove(key) {
            self.order.remove(&seq);
        }
    }

    /// How many messages are counted.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_scheduled_once_and_can_be_cancelled() {
        let now = Instant::now();
        let mut q = DelayedQueue::new();
        assert!(q.schedule_at(now, DeliveryTag(1), 1, Duration::from_secs(1), 'a'));
        assert!(!q.schedule_at(now, DeliveryTag(1), 1, Duration::ZERO, 'b'));
        assert!(q.contains(DeliveryTag(1)));
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(1)));
        assert_eq!(q.cancel(DeliveryTag(1)), Some('a'));
        assert!(q.is_empty() && q.next_due().is_none());
        assert_eq!(q.cancel(DeliveryTag(1)), None);
    }

    #[test]
    fn huge_delays_do_not_overflow() {
        let now = Instant::now();
        let mut q = DelayedQueue::new();
        q.schedule_at(now, DeliveryTag(1), u32::MAX, Duration::MAX, ());
        assert_eq!(q.next_due(), Some(now + MAX_DELAY));
        let all = q.drain();
        assert_eq!(all[0].attempt, u32::MAX, "saturates");
        assert!(q.is_empty());
    }

    #[test]
    fn pop_due_respects_max_and_order() {
        let now = Instant::now();
        let mut q = DelayedQueue::new();
        for t in [5u64, 2, 9] {
            q.schedule_at(now, DeliveryTag(t), 1, Duration::ZERO, t);
        }
        let first = q.pop_due(now, 2);
        assert_eq!(first.iter().map(|d| d.item).collect::<Vec<_>>(), vec![2, 5]);
        q.retain(|tag, _| tag.0 != 9);
        assert!(q.pop_due(now, 2).is_empty());
        assert!(!q.contains(DeliveryTag(9)));
    }

    #[test]
    fn counts_stay_bounded() {
        let mut c = DeliveryCounts::new(100);
        for i in 0..10_000 {
            c.delivered(i);
        }
        assert_eq!(c.len(), 100);
        assert_eq!(c.delivered(9_999), 2);
        c.forget(&9_999);
        assert_eq!(c.len(), 99);
    }
}
