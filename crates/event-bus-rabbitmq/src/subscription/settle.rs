//! Settling held messages: ack, redelivery by this member, and delayed
//! retry through a retry queue.

use std::time::{Duration, Instant};

use lapin::options::BasicAckOptions;
use openedx_events::bus::transport::TransportError;

use super::{Held, RabbitMqSubscription};
use crate::error::timed;
use crate::names;
use crate::topology::On;
use crate::wire;

/// How long a retry queue declaration is trusted before it is repeated.
const REDECLARE_AFTER: Duration = Duration::from_secs(60);

impl RabbitMqSubscription {
    /// The live link `held` came on, if it is still open.
    fn link_of(&self, held: &Held) -> Option<&super::SubLink> {
        self.link
            .as_ref()
            .filter(|l| l.generation == held.generation && l.usable())
    }

    pub(super) async fn settle_ack(&mut self, held: &Held) -> Result<(), TransportError> {
        let t = self.connector.settings.operation_timeout;
        let Some(link) = self.link_of(held) else {
            tracing::debug!(queue = %self.queue, "ack of a message from a lost connection: the broker delivers it again");
            return Ok(());
        };
        let ack = link.channel.basic_ack(held.amqp_tag, BasicAckOptions::default());
        timed(t, "acknowledge", &self.connector.redactor, ack).await
    }

    /// Keep the message and hand it out again before anything else (it
    /// stays unacknowledged on the broker, so closing the subscription
    /// releases it to the group). Not `basic.nack` with requeue: a quorum
    /// queue (3.10) puts a requeued message behind everything waiting, so
    /// it would not come back before the messages after it.
    pub(super) fn hold_for_redelivery(&mut self, held: Held) {
        if held.generation == self.generation {
            self.redeliver.push_back(held);
        }
    }

    /// A copy to the retry queue of the delay's bucket (confirmed), then
    /// the original acknowledged. If the copy cannot be made, the message
    /// is handed out again at once (sooner than asked, never lost).
    pub(super) async fn retry_later(&mut self, held: Held, delay: Duration) -> Result<(), TransportError> {
        let t = self.connector.settings.operation_timeout;
        let r = self.connector.redactor.clone();
        let ms = names::bucket(delay, &self.connector.settings.retry_delays_ms);
        let queue = self.queue.clone();
        let fresh = self
            .retry_declared
            .get(&ms)
            .is_some_and(|at| at.elapsed() < REDECLARE_AFTER);
        let Some(link) = self.link_of(&held) else {
            return Ok(());
        };
        let on = On {
            channel: &link.channel,
            timeout: t,
            redactor: &r,
        };
        let copied = async {
            let retry = if fresh {
                names::retry_queue(queue.as_str(), ms)?
            } else {
                on.retry(queue.as_str(), ms).await?
            };
            let raw = &held.delivery.raw;
            let properties = wire::for_copy(&held.properties, raw.key.as_deref(), Some(held.delivery.attempt));
            on.to_queue(&retry, properties, &raw.value).await
        }
        .await;
        match copied {
            Ok(()) => {
                if !fresh {
                    self.retry_declared.insert(ms, Instant::now());
                }
                self.settle_ack(&held).await
            }
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, "cannot hold the message back in a retry queue; handed out again now");
                self.hold_for_redelivery(held);
                Err(e)
            }
        }
    }
}
