//! `event-bus dlq`: list, show and requeue dead letters.

use std::sync::Arc;

use openedx_events::bus::dead_letter::{self, DLQ_ATTEMPTS, DLQ_FAILED_AT, DLQ_ORIGINAL_TOPIC, DLQ_REASON};
use openedx_events::bus::transport::{Delivery, StartPosition, SubscribeRequest, Transport};
use openedx_events::bus::wire::{CE_ID, CE_TYPE};
use openedx_events::bus::EventBus;
use openedx_events::config::full_topic;

use crate::error::{CliError, Context, Result};
use crate::io::println;
use crate::settings::{self, GlobalArgs};

/// Messages asked for per browse call.
const PAGE: usize = 500;

/// The full dead-letter topic of `topic` (honours
/// `EVENT_BUS_DEAD_LETTER_TOPIC` and the prefix).
fn dlq_topic(bus: &EventBus, topic: &str) -> Result<String> {
    let options = bus.consumer_options(topic, "-")?;
    Ok(full_topic(options.prefix.as_deref(), &options.dead_letter_topic()))
}

async fn connect(global: &GlobalArgs, topic: &str, what: &str) -> Result<(Arc<dyn Transport>, String, EventBus)> {
    let bus = global.bus().await?;
    let transport = settings::transport(&bus, what)?;
    let dlq = dlq_topic(&bus, topic)?;
    Ok((transport, dlq, bus))
}

/// A header as text: UTF-8 as is, anything else as `hex:...`.
fn header_text(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(s) => s.to_string(),
        Err(_) => format!("hex:{}", hex::encode(value)),
    }
}

/// The first of these headers that the message has, as text (`-` if none).
fn first_header(d: &Delivery, names: &[&str]) -> String {
    names
        .iter()
        .find_map(|n| d.raw.header(n))
        .map(header_text)
        .unwrap_or_else(|| "-".into())
}

/// One line of `dlq list`, tab-separated: position, reason, attempts,
/// failed at, event type (`ce_type`, or Redis `type`), message id (`ce_id`,
/// or Redis `id`).
fn list_line(d: &Delivery) -> String {
    [
        d.position.clone(),
        first_header(d, &[DLQ_REASON]),
        first_header(d, &[DLQ_ATTEMPTS]),
        first_header(d, &[DLQ_FAILED_AT]),
        first_header(d, &[CE_TYPE, "type"]),
        first_header(d, &[CE_ID, "id"]),
    ]
    .join("\t")
}

async fn browse(transport: &dyn Transport, dlq: &str, after: Option<&str>, limit: usize) -> Result<Vec<Delivery>> {
    transport
        .browse(dlq, after, limit)
        .await
        .with_context(|| format!("cannot read the dead-letter topic {dlq}"))
}

/// Print every dead letter of a topic (up to `limit`), one line each.
pub async fn list(global: &GlobalArgs, topic: &str, limit: Option<usize>) -> Result<()> {
    let (transport, dlq, _bus) = connect(global, topic, "list dead letters").await?;
    let limit = limit.unwrap_or(usize::MAX);
    let mut after: Option<String> = None;
    let mut listed = 0usize;
    while listed < limit {
        let page = browse(transport.as_ref(), &dlq, after.as_deref(), PAGE.min(limit - listed)).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.position.clone());
        let mut text = String::new();
        for d in page.iter().take(limit - listed) {
            text.push_str(&list_line(d));
            text.push('\n');
            listed += 1;
        }
        crate::io::write_stdout(&text, false)?;
    }
    eprintln!("{listed} dead letters in {dlq}");
    Ok(())
}

/// Print one dead letter: its headers as text and its data as JSON.
pub async fn show(global: &GlobalArgs, topic: &str, position: &str) -> Result<()> {
    let (transport, dlq, bus) = connect(global, topic, "show a dead letter").await?;
    let mut after: Option<String> = None;
    let found = loop {
        let page = browse(transport.as_ref(), &dlq, after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else {
            return Err(CliError::new(format!(
                "no dead letter at position {position:?} in {dlq}"
            )));
        };
        after = Some(last.position.clone());
        if let Some(d) = page.into_iter().find(|d| d.position == position) {
            break d;
        }
    };
    let mut out = vec![
        format!("position: {}", found.position),
        format!("topic: {}", found.raw.topic),
    ];
    if let Some(key) = &found.raw.key {
        out.push(format!("key: {}", header_text(key)));
    }
    if let Some(ts) = &found.raw.timestamp {
        out.push(format!("timestamp: {}", openedx_events::datetime::isoformat_utc(ts)));
    }
    out.push("headers:".into());
    for (name, value) in &found.raw.headers {
        out.push(format!("  {name}: {}", header_text(value)));
    }
    out.push(format!(
        "value: {} bytes: {}",
        found.raw.value.len(),
        hex::encode(&found.raw.value)
    ));
    out.push(format!("data: {}", decode_data(&bus, &found)));
    println(&out.join("\n"))
}

/// The data of a delivery as JSON, or why it cannot be decoded.
fn decode_data(bus: &EventBus, d: &Delivery) -> String {
    let incoming = match &d.event {
        Ok(e) => e,
        Err(reason) => return format!("(cannot read the message: {reason})"),
    };
    let Some(signal) = bus.registry().get(&incoming.event_type) else {
        return format!("(unknown event type {:?})", incoming.event_type);
    };
    let t = signal.event_type();
    let decoded = match &incoming.writer_schema {
        Some(writer) => t.decode_data_from(writer, &incoming.body),
        None => t.decode_data(&incoming.body),
    };
    match decoded {
        Ok(data) => data.to_json_string(),
        Err(e) => format!("(undecodable: {e})"),
    }
}

/// Send dead letters back to their original topics, acknowledging each one
/// in the group once it is republished.
pub async fn requeue(global: &GlobalArgs, topic: &str, group: &str, limit: Option<u64>) -> Result<()> {
    let (transport, dlq, bus) = connect(global, topic, "requeue dead letters").await?;
    let options = bus.consumer_options(topic, group)?;
    let request = SubscribeRequest {
        topic: dlq.clone(),
        group: group.to_string(),
        consumer_name: options.consumer_name.clone(),
        start: StartPosition::Earliest,
        extras: serde_json::Map::new(),
    };
    let mut sub = transport
        .subscribe(&request)
        .await
        .with_context(|| format!("cannot read the dead-letter topic {dlq} in group {group}"))?;
    let limit = limit.unwrap_or(u64::MAX);
    let mut requeued = 0u64;
    let mut skipped = 0u64;
    let mut failure: Option<CliError> = None;
    'outer: while requeued < limit {
        let max = (limit - requeued).min(64) as usize;
        let batch = match sub.receive(max, options.poll_timeout).await {
            Ok(b) => b,
            Err(e) => {
                failure = Some(CliError::new(format!("cannot read {dlq}: {e}")));
                break;
            }
        };
        if batch.is_empty() {
            break;
        }
        let mut rest = batch.into_iter();
        while let Some(d) = rest.next() {
            if requeued >= limit {
                let _ = sub.nack(d.tag, std::time::Duration::ZERO).await;
                continue;
            }
            let Some(original) = dead_letter::original(&d.raw) else {
                // Not a dead letter: leave it alone (unacknowledged).
                tracing::warn!(position = %d.position, "message has no {DLQ_ORIGINAL_TOPIC} header; skipped");
                skipped += 1;
                continue;
            };
            if let Err(e) = transport.publish_raw(&original).await {
                let _ = sub.nack(d.tag, std::time::Duration::ZERO).await;
                for d in rest.by_ref() {
                    let _ = sub.nack(d.tag, std::time::Duration::ZERO).await;
                }
                failure = Some(CliError::new(format!(
                    "cannot requeue {dlq} position {} to {}: {e}",
                    d.position, original.topic
                )));
                break 'outer;
            }
            if let Err(e) = sub.ack(d.tag).await {
                failure = Some(CliError::new(format!(
                    "requeued {dlq} position {} but cannot acknowledge it (it may be requeued again): {e}",
                    d.position
                )));
                break 'outer;
            }
            requeued += 1;
        }
    }
    let flushed = sub.flush_acks().await;
    let _ = sub.close().await;
    println(&format!("requeued {requeued} dead letters from {dlq}"))?;
    if skipped > 0 {
        eprintln!("skipped {skipped} messages without a {DLQ_ORIGINAL_TOPIC} header");
    }
    if let Some(e) = failure {
        return Err(e);
    }
    flushed.with_context(|| format!("cannot acknowledge the requeued messages in {dlq}"))
}
