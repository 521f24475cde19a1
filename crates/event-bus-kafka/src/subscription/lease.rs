//! The lease keeper of a subscription: while a receiver holds the consume
//! loop, the loop's keeping task polls the group through it, so the member
//! stays in the group and rebalances are not held up.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openedx_events::bus::transport::{LeaseKeeper, TransportError};

use crate::subscription::group::Shared;
use crate::subscription::polling::{check_fatal, poll_without_waiting, GroupConsumer};

/// Messages `keep_alive` may take from Kafka while a receiver works.
pub(crate) const KEEP_ALIVE_BUFFER: usize = 256;

/// Serves the group's events from the loop's keeping task while a receiver
/// holds the loop (synchronous receivers block it), so the member neither
/// exceeds `max.poll.interval.ms` nor delays a rebalance.
pub(crate) struct KafkaLeaseKeeper {
    pub(crate) consumer: Arc<GroupConsumer>,
    pub(crate) shared: Arc<Shared>,
}

#[async_trait]
impl LeaseKeeper for KafkaLeaseKeeper {
    async fn keep_alive(&self) -> Result<(), TransportError> {
        poll_without_waiting(&self.shared, &self.consumer, KEEP_ALIVE_BUFFER);
        check_fatal(&self.shared, &self.consumer)
    }

    /// A quarter of `max.poll.interval.ms` (librdkafka's default: 300 s),
    /// at most 5 s.
    fn interval(&self) -> Duration {
        let poll_interval_ms = self
            .shared
            .settings
            .client_config
            .get("max.poll.interval.ms")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(300_000);
        Duration::from_millis(poll_interval_ms / 4).min(Duration::from_secs(5))
    }
}
