//! Keeping the messages in hand: `+WPI` (work in progress) restarts a
//! message's ack wait on the server, so a slow receiver keeps it.

use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::Client;
use async_trait::async_trait;
use openedx_events::bus::transport::{LeaseKeeper, TransportError};

use super::{lock, Held};
use crate::error::timed;

/// Send `+WPI` for every message in hand.
pub(crate) async fn progress(client: &Client, held: &Held, limit: Duration) -> Result<(), TransportError> {
    let subjects: Vec<_> = lock(held).values().cloned().collect();
    if subjects.is_empty() {
        return Ok(());
    }
    for subject in subjects {
        timed(limit, "keep alive", client.publish(subject, AckKind::Progress.into())).await?;
    }
    timed(limit, "keep alive (flush)", client.flush()).await
}

/// The subscription's [`LeaseKeeper`]: progress reports every fifth of the
/// ack wait. The loop renews only once the same message was in hand at two
/// ticks, so around the switch from one message to the next, up to three
/// intervals pass between renewals of the messages still waiting in hand.
pub(crate) struct Keeper {
    client: Client,
    held: Held,
    interval: Duration,
    limit: Duration,
}

impl Keeper {
    pub(crate) fn new(client: Client, held: Held, ack_wait: Duration, limit: Duration) -> Self {
        Keeper {
            client,
            held,
            interval: (ack_wait / 5).max(Duration::from_millis(100)),
            limit,
        }
    }
}

#[async_trait]
impl LeaseKeeper for Keeper {
    async fn keep_alive(&self) -> Result<(), TransportError> {
        progress(&self.client, &self.held, self.limit).await
    }

    fn interval(&self) -> Duration {
        self.interval
    }
}
