//! `event-bus dlq`: list, show and requeue dead letters.

use std::sync::Arc;

use openedx_events::bus::dead_letter::{
    self, header_text, DLQ_ATTEMPTS, DLQ_FAILED_AT, DLQ_ORIGINAL_TOPIC, DLQ_REASON,
};
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
    let found = dead_letter::find(transport.as_ref(), &dlq, position)
        .await
        .with_context(|| format!("cannot read the dead-letter topic {dlq}"))?
        .ok_or_else(|| CliError::new(format!("no dead letter at position {position:?} in {dlq}")))?;
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
    match dead_letter::decode_data(bus.registry(), d) {
        Ok(data) => data.to_json_string(),
        Err(why) => format!("({why})"),
    }
}

/// Send dead letters back to their original topics, acknowledging each one
/// in the group once it is republished (the core's [`dead_letter::requeue`]).
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
    let (done, failure) = match dead_letter::requeue(transport.as_ref(), &request, limit, options.poll_timeout).await {
        Ok(done) => (done, None),
        Err(e) => (e.done, Some(CliError::new(e.to_string()))),
    };
    println(&format!("requeued {} dead letters from {dlq}", done.requeued))?;
    if done.skipped > 0 {
        eprintln!(
            "skipped {} messages without a {DLQ_ORIGINAL_TOPIC} header",
            done.skipped
        );
    }
    failure.map_or(Ok(()), Err)
}
