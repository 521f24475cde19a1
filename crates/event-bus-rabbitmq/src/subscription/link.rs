//! The connection, channel and consumer of one member, opened again after
//! a failure.

use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, Consumer};
use openedx_events::bus::transport::TransportError;

use crate::conn::Connector;
use crate::error::timed;
use crate::topology::On;

/// One member's broker session.
pub(super) struct SubLink {
    pub(super) connection: Connection,
    pub(super) channel: Channel,
    pub(super) consumer: Consumer,
    /// Which session of the subscription it is (1 for the first).
    pub(super) generation: u64,
}

impl SubLink {
    /// Connect, declare the topic and the group's queue (a new group gets a
    /// copy of the topic's backlog), and consume with `prefetch` unacknowledged messages.
    pub(super) async fn open(
        connector: &Connector,
        topic: &str,
        queue: &ShortString,
        consumer_name: &str,
        prefetch: u16,
        generation: u64,
    ) -> Result<Self, TransportError> {
        let t = connector.settings.operation_timeout;
        let r = &connector.redactor;
        let connection = connector
            .connect(&format!("event-bus consumer {consumer_name}"))
            .await?;
        let channel = timed(t, "open a channel", r, connection.create_channel()).await?;
        timed(
            t,
            "turn publisher confirms on",
            r,
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        timed(
            t,
            "set the prefetch",
            r,
            channel.basic_qos(prefetch, BasicQosOptions::default()),
        )
        .await?;
        let on = On {
            channel: &channel,
            timeout: t,
            redactor: r,
        };
        let new = generation == 1 && !on.exists(&connection, queue).await?;
        on.group(topic, queue).await?;
        if new {
            on.copy_backlog(topic, queue).await?;
        }
        let mut tag: String = consumer_name.chars().take(200).collect();
        tag.push_str(&format!(".{generation}"));
        let consume = channel.basic_consume(
            queue.clone(),
            ShortString::try_new(tag).unwrap_or_default(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        );
        let consumer = timed(t, &format!("consume queue {queue}"), r, consume).await?;
        tracing::debug!(queue = %queue, generation, "RabbitMQ consumer started");
        Ok(SubLink {
            connection,
            channel,
            consumer,
            generation,
        })
    }

    /// Whether the connection and channel are still open.
    pub(super) fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    /// Stop consuming and close (unacknowledged messages go back to the
    /// queue at once). Failures only matter to the broker, which cleans up
    /// a dead connection by itself.
    pub(super) async fn close(self) {
        let t = std::time::Duration::from_secs(2);
        if self.usable() {
            let cancel = self
                .channel
                .basic_cancel(self.consumer.tag(), BasicCancelOptions::default());
            let _ = tokio::time::timeout(t, cancel).await;
            let _ = tokio::time::timeout(t, self.channel.close(200, "closed".into())).await;
        }
        if self.connection.status().connected() {
            let _ = tokio::time::timeout(t, self.connection.close(200, "closed".into())).await;
        }
    }
}
