//! Rebalances: the consumer context of a group member, whose callbacks
//! librdkafka runs while the subscription polls. On assignment, newly
//! assigned partitions are moved to the replay target (if any) and that
//! position is committed; on revocation, what was acknowledged is committed
//! synchronously before the partitions go, then their in-flight messages are
//! forgotten (another member gets them again from the committed position; a
//! late ack of such a message is ignored). The context also forwards
//! librdkafka's logs to tracing and notes fatal errors.

use std::sync::Arc;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use crate::error;
use crate::settings::mask_text;
use crate::subscription::group::Shared;
use crate::tracker::PartitionTracker;

/// The consumer context: librdkafka logs to tracing, fatal errors noted, and
/// the rebalance callbacks.
pub(crate) struct GroupContext {
    pub(crate) shared: Arc<Shared>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        error::log(level, fac, &mask_text(log_message, &self.shared.settings));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = mask_text(reason, &self.shared.settings);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            tracing::error!(topic = %self.shared.topic, group = %self.shared.group, %error, reason,
                "fatal Kafka consumer error");
            self.shared.set_fatal(format!("{error}: {reason}"));
        } else {
            tracing::warn!(topic = %self.shared.topic, group = %self.shared.group, %error, reason, "Kafka consumer error");
        }
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(&self, base: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(base.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.shared.on_assign(base, tpl);
                let r = if cooperative {
                    base.incremental_assign(tpl)
                } else {
                    base.assign(tpl)
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "cannot take the assigned partitions");
                }
                if self.shared.reset_only() {
                    if let Err(e) = base.pause(tpl) {
                        tracing::warn!(error = %e, "cannot pause the partitions (reset_only mode)");
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.shared.on_revoke(base, tpl, base.assignment_lost());
                let r = if cooperative {
                    base.incremental_unassign(tpl)
                } else {
                    base.unassign()
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "cannot give up the revoked partitions");
                }
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                tracing::error!(error = %code, "rebalance error; giving up the assignment");
                let all: Vec<i32> = self.shared.lock().partitions.keys().copied().collect();
                self.shared.lock().forget_partitions(&all);
                if let Err(e) = base.unassign() {
                    tracing::error!(error = %e, "cannot give up the assignment");
                }
            }
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(error = %e, offsets = ?offsets.to_topic_map(), "commit failed");
        }
    }
}

impl Shared {
    /// On assignment: move newly assigned partitions to the replay target
    /// (setting their offsets in `tpl`) and commit those offsets.
    pub(crate) fn on_assign(&self, consumer: &BaseConsumer<GroupContext>, tpl: &mut TopicPartitionList) {
        let partitions = self.partitions_of(tpl);
        let (target, todo) = {
            let mut st = self.lock();
            st.assigned_once = true;
            for p in &partitions {
                st.partitions.insert(*p, PartitionTracker::default());
            }
            let todo: Vec<i32> = partitions
                .iter()
                .copied()
                .filter(|p| !st.replay.applied.contains(p))
                .collect();
            (st.replay.target.clone(), todo)
        };
        tracing::info!(topic = %self.topic, group = %self.group, ?partitions, "partitions assigned");
        let Some(target) = target else {
            return;
        };
        if todo.is_empty() {
            return;
        }
        match self.target_offsets(consumer, &target, &todo) {
            Ok(offsets) => {
                for (p, o) in &offsets {
                    if let Err(e) = tpl.set_partition_offset(&self.topic, *p, Offset::Offset(*o)) {
                        tracing::warn!(error = %e, partition = p, "cannot set the replay offset");
                    }
                }
                self.commit_moved(consumer, &offsets, &target);
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, group = %self.group, error = %e, "cannot move the group");
                self.set_fatal(format!(
                    "cannot move {} for group {} to {target:?}: {e}",
                    self.topic, self.group
                ));
            }
        }
    }

    /// On revocation: commit what was acknowledged, then forget the
    /// partitions' in-flight messages.
    pub(crate) fn on_revoke(&self, consumer: &BaseConsumer<GroupContext>, tpl: &TopicPartitionList, lost: bool) {
        let partitions = self.partitions_of(tpl);
        if lost {
            tracing::warn!(topic = %self.topic, group = %self.group, ?partitions,
                "partitions lost (session expired); their unacknowledged messages will be delivered again");
        } else {
            self.commit_acked(consumer, &partitions, "before the partitions are revoked");
        }
        self.lock().forget_partitions(&partitions);
        tracing::info!(topic = %self.topic, group = %self.group, ?partitions, "partitions revoked");
    }
}
