//! Consumer lag, read from the broker into gauges.

use std::sync::Arc;
use std::time::Duration;

use openedx_events::bus::transport::{GroupLag, Transport, TransportError};

/// Read the lag of `group` on `topic` (full name) once and set the gauges
/// `event_bus_consumer_lag_messages` and `event_bus_consumer_pending_messages`
/// (labels topic, group, partition). Returns what the broker said.
pub async fn poll_lag_once(
    transport: &dyn Transport,
    topic: &str,
    group: &str,
) -> Result<Vec<GroupLag>, TransportError> {
    let rows = transport.lag(topic, Some(group)).await?;
    for row in &rows {
        let labels = [
            ("topic", row.topic.clone()),
            ("group", row.group.clone()),
            ("partition", row.partition.clone()),
        ];
        metrics::gauge!("event_bus_consumer_lag_messages", &labels).set(row.lag as f64);
        if let Some(pending) = row.pending {
            metrics::gauge!("event_bus_consumer_pending_messages", &labels).set(pending as f64);
        }
    }
    Ok(rows)
}

/// Poll the lag every `every` in a task of its own (stopped when the handle
/// is aborted or dropped with the runtime). A backend that cannot report
/// lag is logged once and the task ends; other errors are logged and the
/// next poll tries again.
pub fn spawn_lag_gauges(
    transport: Arc<dyn Transport>,
    topic: String,
    group: String,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = every.max(Duration::from_millis(100));
        // The first poll a moment after the start, once the group exists.
        let first = tokio::time::Instant::now() + every.min(Duration::from_secs(1));
        let mut ticker = tokio::time::interval_at(first, every);
        loop {
            ticker.tick().await;
            match poll_lag_once(transport.as_ref(), &topic, &group).await {
                Ok(_) => {}
                Err(e) if e.kind == openedx_events::bus::transport::TransportErrorKind::Unsupported => {
                    tracing::info!(backend = transport.name(), error = %e, "no lag gauges for this backend");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, full_topic = %topic, "cannot read the consumer lag"),
            }
        }
    })
}
