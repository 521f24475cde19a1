//! `browse`: reading a topic's backlog (what arrived while no group queue
//! was bound, e.g. a dead-letter topic nobody consumes) without consuming
//! it: `basic.get` of every message without acknowledgement, then all
//! handed back at once (a full turn of the queue, so its order is kept).
//! Positions are `<backlog> #<index>` (0 for the oldest message kept).

use lapin::options::{BasicGetOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use openedx_events::bus::transport::{Delivery, DeliveryTag, TransportError};
use openedx_events::bus::wire::cloudevent_incoming;

use crate::error::timed;
use crate::names;
use crate::wire;

/// The index after which a browse continues (`None`: from the start).
fn after_index(after: Option<&str>) -> Result<Option<u64>, TransportError> {
    let Some(text) = after else {
        return Ok(None);
    };
    text.rsplit_once(" #")
        .and_then(|(_, n)| n.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            TransportError::new(
                openedx_events::bus::transport::TransportErrorKind::Rejected,
                format!("{text:?} is not a position of this backend (`<queue> #<index>`)"),
            )
        })
}

/// Up to `limit` messages of the topic's backlog after the position.
pub(crate) async fn backlog(
    connection: &lapin::Connection,
    timeout: std::time::Duration,
    redactor: &openedx_events::config::Redactor,
    topic: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Delivery>, TransportError> {
    let start = after_index(after)?.map_or(0, |i| i + 1);
    let queue = names::backlog(topic)?;
    let ch = timed(timeout, "open a channel", redactor, connection.create_channel()).await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let what = format!("browse {queue}");
    let Ok(Ok(declared)) =
        tokio::time::timeout(timeout, ch.queue_declare(queue.clone(), passive, FieldTable::default())).await
    else {
        // No backlog: the topic was never used (or another error, which
        // closed the probe channel: nothing to show either way).
        return Ok(Vec::new());
    };
    // Every message is taken and handed back, not only the page: a quorum
    // queue puts returned messages behind the others, so only a full turn
    // keeps the order (and the positions) for the next page.
    let end = u64::from(declared.message_count());
    let stop = start.saturating_add(limit as u64);
    let mut out = Vec::new();
    let mut last = None;
    let mut index = 0;
    while index < end {
        let get = ch.basic_get(queue.clone(), BasicGetOptions { no_ack: false });
        let Some(m) = timed(timeout, &what, redactor, get).await? else {
            break;
        };
        let d = m.delivery;
        last = Some(d.delivery_tag);
        if index >= start && index < stop {
            let r = wire::from_amqp(
                topic,
                d.exchange.as_str(),
                d.routing_key.as_str(),
                &d.properties,
                d.data,
            );
            out.push(Delivery {
                event: cloudevent_incoming(&r.raw),
                raw: r.raw,
                tag: DeliveryTag(index),
                position: format!("{queue} #{index}"),
                attempt: r.attempt,
            });
        }
        index += 1;
    }
    if let Some(tag) = last {
        let back = BasicNackOptions {
            multiple: true,
            requeue: true,
        };
        timed(timeout, &what, redactor, ch.basic_nack(tag, back)).await?;
        crate::topology::wait_ready(&ch, &queue, index, timeout).await;
    }
    let _ = tokio::time::timeout(timeout, ch.close(200, "browsed".into())).await;
    Ok(out)
}
