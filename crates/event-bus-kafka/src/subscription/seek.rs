//! Replay: the offsets a [`SeekTarget`] means for the partitions of this
//! member (the low or high watermarks, the offset after a position, or the
//! offsets `offsets_for_times` finds for a time), moving the partitions
//! there, and committing those offsets so the whole group goes on from them.

use openedx_events::bus::transport::SeekTarget;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::positions::parse_position;
use crate::subscription::group::Shared;
use crate::subscription::rebalance::GroupContext;
use crate::tracker::PartitionTracker;
use crate::transport::BROKER_CALL_TIMEOUT;

impl Shared {
    /// The offsets the replay target means for `partitions` (blocking).
    pub(crate) fn target_offsets(
        &self,
        consumer: &impl Consumer<GroupContext>,
        target: &SeekTarget,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i64)>, String> {
        let watermark = |p: i32, high: bool| -> Result<i64, String> {
            consumer
                .fetch_watermarks(&self.topic, p, BROKER_CALL_TIMEOUT)
                .map(|(lo, hi)| if high { hi } else { lo })
                .map_err(|e| format!("cannot read the offsets of {} partition {p}: {e}", self.topic))
        };
        let mut out = Vec::new();
        match target {
            SeekTarget::Earliest => {
                for p in partitions {
                    out.push((*p, watermark(*p, false)?));
                }
            }
            SeekTarget::Latest => {
                for p in partitions {
                    out.push((*p, watermark(*p, true)?));
                }
            }
            SeekTarget::After(text) => {
                let Some((p, o)) = parse_position(text) else {
                    return Err(format!(
                        "bad Kafka position {text:?}: expected \"partition P offset O\""
                    ));
                };
                if partitions.contains(&p) {
                    out.push((p, o + 1));
                }
            }
            SeekTarget::Time(t) => {
                let ms = t.timestamp_millis();
                let mut tpl = TopicPartitionList::new();
                for p in partitions {
                    tpl.add_partition_offset(&self.topic, *p, Offset::Offset(ms))
                        .map_err(|e| e.to_string())?;
                }
                let found = consumer
                    .offsets_for_times(tpl, BROKER_CALL_TIMEOUT)
                    .map_err(|e| format!("Error getting offsets for timestamps: {e}"))?;
                for e in found.elements_for_topic(&self.topic) {
                    if let Err(err) = e.error() {
                        return Err(format!(
                            "Error getting offsets for timestamps: partition {}: {err}",
                            e.partition()
                        ));
                    }
                    let offset = match e.offset() {
                        Offset::Offset(o) => o,
                        // No message at or after the time: the end.
                        _ => watermark(e.partition(), true)?,
                    };
                    out.push((e.partition(), offset));
                }
            }
        }
        Ok(out)
    }

    /// Commit offsets a seek moved to, and start tracking from there.
    pub(crate) fn commit_moved(
        &self,
        consumer: &impl Consumer<GroupContext>,
        offsets: &[(i32, i64)],
        target: &SeekTarget,
    ) {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            if tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o)).is_err() {
                return;
            }
        }
        let committed = match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(topic = %self.topic, group = %self.group, error = %e,
                    "could not commit the offsets found for the replay; they apply to this member only");
                false
            }
        };
        tracing::info!(topic = %self.topic, group = %self.group, ?target, ?offsets, committed,
            "Found offsets for the replay target; partitions moved");
        let mut st = self.lock();
        for (p, o) in offsets {
            st.replay.applied.insert(*p);
            if let Some(t) = st.partitions.get_mut(p) {
                t.reset(committed.then_some(*o));
            }
            match target {
                SeekTarget::Time(t) => st.skip_before.insert(*p, t.timestamp_millis()),
                _ => st.skip_before.remove(p),
            };
        }
    }

    /// Move the assigned `partitions` to `target` now (blocking): seek them,
    /// forget their in-flight messages, commit the new offsets and start
    /// tracking from there. Returns the offsets moved to.
    pub(crate) fn seek_assigned(
        &self,
        consumer: &impl Consumer<GroupContext>,
        target: &SeekTarget,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i64)>, String> {
        let offsets = self.target_offsets(consumer, target, partitions)?;
        if offsets.is_empty() {
            return Ok(offsets);
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &offsets {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))
                .map_err(|e| e.to_string())?;
        }
        let moved = consumer
            .seek_partitions(tpl, BROKER_CALL_TIMEOUT)
            .map_err(|e| e.to_string())?;
        for e in moved.elements() {
            if let Err(err) = e.error() {
                return Err(format!("cannot seek partition {}: {err}", e.partition()));
            }
        }
        let moved_partitions: Vec<i32> = offsets.iter().map(|(p, _)| *p).collect();
        {
            let mut st = self.lock();
            st.forget_partitions(&moved_partitions);
            for p in &moved_partitions {
                st.partitions.insert(*p, PartitionTracker::default());
            }
        }
        self.commit_moved(consumer, &offsets, target);
        Ok(offsets)
    }
}
