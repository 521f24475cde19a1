//! The state of one member of a consumer group, shared between the
//! subscription and the rebalance callbacks of its consumer context: the
//! partitions it is assigned and their commit bookkeeping (see
//! [`crate::tracker`]), the messages taken from Kafka and not yet
//! acknowledged, nacked messages waiting for their delay, the replay target,
//! and the fatal error of the client.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use openedx_events::bus::delayed::DelayedQueue;
use openedx_events::bus::transport::{Delivery, DeliveryTag, IncomingEvent, RawMessage, SeekTarget};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::extras::OffsetTimeMode;
use crate::positions::position;
use crate::settings::KafkaSettings;
use crate::subscription::rebalance::GroupContext;
use crate::tracker::PartitionTracker;

/// One message taken from Kafka and not yet acknowledged.
pub(crate) struct Held {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) raw: RawMessage,
    /// `None` until the writer schema was looked up.
    pub(crate) event: Option<Result<IncomingEvent, String>>,
    pub(crate) attempts: u32,
}

impl Held {
    pub(crate) fn delivery(&self, tag: u64) -> Delivery {
        Delivery {
            raw: self.raw.clone(),
            tag: DeliveryTag(tag),
            position: position(self.partition, self.offset),
            attempt: self.attempts,
            event: self
                .event
                .clone()
                .unwrap_or_else(|| Err("the message was not decoded".to_string())),
        }
    }
}

/// Where this member moves its partitions to (`seek`, the `offset_time`
/// extra), and what it does afterwards.
#[derive(Default)]
pub(crate) struct Replay {
    pub(crate) target: Option<SeekTarget>,
    pub(crate) mode: OffsetTimeMode,
    /// Partitions already moved to the target by this member.
    pub(crate) applied: HashSet<i32>,
}

/// What this member holds: the commit bookkeeping of its partitions, the
/// messages taken and not yet acknowledged, and the replay in progress.
#[derive(Default)]
pub(crate) struct GroupState {
    pub(crate) partitions: HashMap<i32, PartitionTracker>,
    pub(crate) held: HashMap<u64, Held>,
    /// Taken from Kafka, not yet handed out, in arrival order.
    pub(crate) ready: VecDeque<u64>,
    /// Nacked, waiting for their delay (the message stays in `held`).
    pub(crate) retry: DelayedQueue<()>,
    pub(crate) next_tag: u64,
    pub(crate) replay: Replay,
    /// Partitions moved to a time: messages older than it (broker
    /// timestamp, ms) are skipped until the first one at or after it. Kafka
    /// answers `offsets_for_times` exactly and nothing is skipped; a broker
    /// that answers loosely (tansu) is corrected here.
    pub(crate) skip_before: HashMap<i32, i64>,
    /// Whether anything was ever assigned (for logs).
    pub(crate) assigned_once: bool,
}

impl GroupState {
    /// Forget everything about these partitions (revoked or moved).
    pub(crate) fn forget_partitions(&mut self, partitions: &[i32]) {
        let gone: HashSet<u64> = self
            .held
            .iter()
            .filter(|(_, h)| partitions.contains(&h.partition))
            .map(|(t, _)| *t)
            .collect();
        self.held.retain(|t, _| !gone.contains(t));
        self.ready.retain(|t| !gone.contains(t));
        self.retry.retain(|t, _| !gone.contains(&t.0));
        for p in partitions {
            self.partitions.remove(p);
        }
    }
}

/// State shared between the subscription and its consumer context (which
/// runs the rebalance callbacks while the subscription polls).
pub(crate) struct Shared {
    pub(crate) topic: String,
    pub(crate) group: String,
    pub(crate) state: Mutex<GroupState>,
    pub(crate) fatal: Mutex<Option<String>>,
    pub(crate) settings: Arc<KafkaSettings>,
}

impl Shared {
    /// The member's state (a poisoned lock is taken over).
    pub(crate) fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remember the first fatal error of the client.
    pub(crate) fn set_fatal(&self, reason: String) {
        let mut f = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(reason);
        }
    }

    /// The fatal error remembered, if any.
    pub(crate) fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The partitions of this member's topic in `tpl`.
    pub(crate) fn partitions_of(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }

    /// Commit synchronously what was acknowledged on `partitions`.
    pub(crate) fn commit_acked(&self, consumer: &impl Consumer<GroupContext>, partitions: &[i32], why: &str) {
        let positions: Vec<(i32, i64)> = {
            let st = self.lock();
            partitions
                .iter()
                .filter_map(|p| st.partitions.get(p).and_then(|t| t.commit_position()).map(|o| (*p, o)))
                .collect()
        };
        if positions.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &positions {
            if let Err(e) = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o)) {
                tracing::warn!(error = %e, "cannot build the commit list");
                return;
            }
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                tracing::info!(topic = %self.topic, group = %self.group, ?positions, "committed acknowledged offsets {why}");
                let mut st = self.lock();
                for (p, o) in positions {
                    if let Some(t) = st.partitions.get_mut(&p) {
                        t.committed(o);
                    }
                }
            }
            Err(e) => tracing::warn!(topic = %self.topic, group = %self.group, error = %e,
                "could not commit acknowledged offsets {why}; those messages will be delivered again"),
        }
    }

    /// Whether this member only moves the group and consumes nothing
    /// (`offset_time_mode = "reset_only"`).
    pub(crate) fn reset_only(&self) -> bool {
        self.lock().replay.mode == OffsetTimeMode::ResetOnly
    }
}
