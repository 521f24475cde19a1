//! Dead letters: a message that cannot be handled goes, bytes and headers
//! untouched, to `<topic>-dlq` with headers saying why, after how many
//! attempts and when. [`requeue`] (what `event-bus dlq requeue` runs) sends
//! dead letters back to their topics; [`decode_data`] reads one (`dlq show`).

use std::time::Duration;

use crate::datetime::isoformat_utc;
use crate::signal::Registry;
use crate::value::Record;

use super::transport::{Delivery, RawMessage, SubscribeRequest, Transport, TransportError};

/// Header: why the message was dead-lettered (a [`Reason`] name).
pub const DLQ_REASON: &str = "dlq_reason";
/// Header: the error text.
pub const DLQ_ERROR: &str = "dlq_error";
/// Header: handling attempts made.
pub const DLQ_ATTEMPTS: &str = "dlq_attempts";
/// Header: when (isoformat, UTC).
pub const DLQ_FAILED_AT: &str = "dlq_failed_at";
/// Header: the full topic the message came from.
pub const DLQ_ORIGINAL_TOPIC: &str = "dlq_original_topic";
/// Header: its broker position there.
pub const DLQ_ORIGINAL_POSITION: &str = "dlq_original_position";
/// Header: the consumer group that gave up.
pub const DLQ_CONSUMER_GROUP: &str = "dlq_consumer_group";

/// The longest `dlq_error` header kept, in bytes: a receiver's error text
/// has no bound of its own, and a dead letter too large for the broker could
/// never be published.
pub const MAX_ERROR_BYTES: usize = 4096;

/// Messages asked for per `browse` call while searching a topic.
const FIND_PAGE: usize = 500;

/// A header value as text for people: UTF-8 as is, anything else as
/// `hex:...` (what `dlq list` and `dlq show` print).
///
/// ```
/// use openedx_events::bus::dead_letter::header_text;
/// assert_eq!(header_text(b"undecodable"), "undecodable");
/// assert_eq!(header_text(b"\xff\x00"), "hex:ff00");
/// ```
pub fn header_text(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(s) => s.to_string(),
        Err(_) => format!("hex:{}", hex::encode(value)),
    }
}

/// The message at `position` in `topic` (a dead-letter topic, for `dlq
/// show`), browsing page by page from the start; `None` if there is none.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use openedx_events::bus::dead_letter::find;
/// use openedx_events::bus::memory::MemoryBroker;
/// use openedx_events::bus::transport::{RawMessage, Transport};
/// let t = MemoryBroker::new().transport();
/// let m = RawMessage { topic: "t-dlq".into(), key: None, headers: vec![], value: b"x".to_vec(), timestamp: None };
/// let position = t.publish_raw(&m).await.unwrap();
/// assert_eq!(find(&t, "t-dlq", &position).await.unwrap().unwrap().raw.value, b"x");
/// assert!(find(&t, "t-dlq", "no-such-position").await.unwrap().is_none());
/// # });
/// ```
pub async fn find(transport: &dyn Transport, topic: &str, position: &str) -> Result<Option<Delivery>, TransportError> {
    let mut after: Option<String> = None;
    loop {
        let page = transport.browse(topic, after.as_deref(), FIND_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        after = Some(last.position.clone());
        if let Some(d) = page.into_iter().find(|d| d.position == position) {
            return Ok(Some(d));
        }
    }
}

/// Whether a message is a dead letter (it carries a `dlq_reason` header).
/// Backends use it to keep dead letters out of stream trimming and retention:
/// a dead letter is deleted by an operator, never by the broker.
///
/// ```
/// use openedx_events::bus::dead_letter::{is_dead_letter, DLQ_REASON};
/// use openedx_events::bus::transport::RawMessage;
/// let mut m = RawMessage { topic: "t-dlq".into(), key: None, headers: vec![], value: vec![], timestamp: None };
/// assert!(!is_dead_letter(&m));
/// m.headers.push((DLQ_REASON.into(), b"undecodable".to_vec()));
/// assert!(is_dead_letter(&m));
/// ```
pub fn is_dead_letter(raw: &RawMessage) -> bool {
    raw.headers.iter().any(|(k, _)| k == DLQ_REASON)
}

/// `text` cut to at most `max` bytes on a character boundary, saying so.
pub fn bounded(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    const MARK: &str = "... (truncated)";
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = max.saturating_sub(MARK.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}{MARK}", &text[..end]))
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The headers or framing cannot be understood (no event type, bad id...).
    UnusableMessage,
    /// No event type of that name is registered.
    UnknownEventType,
    /// The body does not decode with the schema.
    Undecodable,
    /// The data decodes but is invalid (a malformed key, a bad date).
    InvalidData,
    /// Receivers kept failing after every retry.
    ReceiverFailed,
}

impl Reason {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnusableMessage => "unusable_message",
            Reason::UnknownEventType => "unknown_event_type",
            Reason::Undecodable => "undecodable",
            Reason::InvalidData => "invalid_data",
            Reason::ReceiverFailed => "receiver_failed",
        }
    }
}

/// The dead letter for a delivery: the original message with the `dlq_*`
/// headers appended, addressed to `dlq_topic` (full topic).
pub fn dead_letter(
    delivery: &Delivery,
    dlq_topic: &str,
    group: &str,
    reason: Reason,
    error: &str,
    attempts: u32,
) -> RawMessage {
    let mut raw = strip(&delivery.raw);
    let now = isoformat_utc(&chrono::Utc::now());
    raw.headers.extend([
        (DLQ_REASON.to_string(), reason.as_str().as_bytes().to_vec()),
        (
            DLQ_ERROR.to_string(),
            bounded(error, MAX_ERROR_BYTES).as_bytes().to_vec(),
        ),
        (DLQ_ATTEMPTS.to_string(), attempts.to_string().into_bytes()),
        (DLQ_FAILED_AT.to_string(), now.into_bytes()),
        (DLQ_ORIGINAL_TOPIC.to_string(), delivery.raw.topic.as_bytes().to_vec()),
        (DLQ_ORIGINAL_POSITION.to_string(), delivery.position.as_bytes().to_vec()),
        (DLQ_CONSUMER_GROUP.to_string(), group.as_bytes().to_vec()),
    ]);
    raw.topic = dlq_topic.to_string();
    raw
}

/// The original message of a dead letter, to requeue it to its topic.
/// Returns `None` if it has no `dlq_original_topic` header.
pub fn original(raw: &RawMessage) -> Option<RawMessage> {
    let topic = raw.header_str(DLQ_ORIGINAL_TOPIC)?.to_string();
    let mut m = strip(raw);
    m.topic = topic;
    Some(m)
}

/// A message without `dlq_*` headers (a message dead-lettered twice keeps
/// only the latest reason).
fn strip(raw: &RawMessage) -> RawMessage {
    let mut m = raw.clone();
    m.headers.retain(|(k, _)| !k.starts_with("dlq_"));
    m.timestamp = None;
    m
}

/// The data of a dead letter (or any delivery), decoded with the schema of
/// its event type; or why it cannot be.
pub fn decode_data(registry: &Registry, d: &Delivery) -> Result<Record, String> {
    let incoming = d
        .event
        .as_ref()
        .map_err(|reason| format!("cannot read the message: {reason}"))?;
    let signal = registry
        .get(&incoming.event_type)
        .ok_or_else(|| format!("unknown event type {:?}", incoming.event_type))?;
    let t = signal.event_type();
    let decoded = match &incoming.writer_schema {
        Some(writer) => t.decode_data_from(writer, &incoming.body),
        None => t.decode_data(&incoming.body),
    };
    decoded.map_err(|e| format!("undecodable: {e}"))
}

/// What a [`requeue`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requeued {
    /// Dead letters published back to their topics and acknowledged.
    pub requeued: u64,
    /// Messages without a `dlq_original_topic` header, left unacknowledged.
    pub skipped: u64,
}

/// Why a [`requeue`] stopped early; what was done before is in `done`.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct RequeueError {
    /// What could not be done, with the topic and position.
    pub what: String,
    /// The transport's error.
    #[source]
    pub source: TransportError,
    /// What was requeued before it stopped.
    pub done: Requeued,
}

/// Send the dead letters read in `request`'s group (its `topic` is the
/// dead-letter topic) back to their original topics, at most `limit`, until
/// the topic has nothing more within `wait`. Each is acknowledged in the group
/// once republished, so a requeue that stops early resumes where it
/// stopped; one republished but not acknowledged may be requeued twice
/// (consumers' deduplication window skips the second).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use openedx_events::bus::dead_letter::{requeue, DLQ_ORIGINAL_TOPIC};
/// use openedx_events::bus::memory::MemoryBroker;
/// use openedx_events::bus::transport::{RawMessage, SubscribeRequest, Transport};
/// let t = MemoryBroker::new().transport();
/// let letter = RawMessage { topic: "t-dlq".into(), key: None, value: b"x".to_vec(), timestamp: None,
///     headers: vec![(DLQ_ORIGINAL_TOPIC.into(), b"t".to_vec())] };
/// t.publish_raw(&letter).await.unwrap();
/// let request = SubscribeRequest { topic: "t-dlq".into(), group: "ops".into(), consumer_name: "me".into(),
///     start: Default::default(), extras: Default::default() };
/// let done = requeue(&t, &request, None, Duration::from_millis(50)).await.unwrap();
/// assert_eq!(done.requeued, 1);
/// assert_eq!(t.browse("t", None, 10).await.unwrap()[0].raw.value, b"x");
/// # });
/// ```
pub async fn requeue(
    transport: &dyn Transport,
    request: &SubscribeRequest,
    limit: Option<u64>,
    wait: Duration,
) -> Result<Requeued, RequeueError> {
    let dlq = &request.topic;
    let mut done = Requeued::default();
    let fail = |what: String, source: TransportError, done: Requeued| RequeueError { what, source, done };
    let mut sub = transport.subscribe(request).await.map_err(|e| {
        fail(
            format!("cannot read the dead-letter topic {dlq} in group {}", request.group),
            e,
            done,
        )
    })?;
    let limit = limit.unwrap_or(u64::MAX);
    let mut failure = None;
    'read: while done.requeued < limit {
        let max = (limit - done.requeued).min(64) as usize;
        let batch = match sub.receive(max, wait).await {
            Ok(b) if b.is_empty() => break,
            Ok(b) => b,
            Err(e) => {
                failure = Some((format!("cannot read {dlq}"), e));
                break;
            }
        };
        let mut rest = batch.into_iter();
        while let Some(d) = rest.next() {
            let Some(message) = original(&d.raw) else {
                // Not a dead letter: left alone (unacknowledged).
                tracing::warn!(position = %d.position, "message has no {DLQ_ORIGINAL_TOPIC} header; skipped");
                done.skipped += 1;
                continue;
            };
            let step = match transport.publish_raw(&message).await {
                Ok(_) => sub.ack(d.tag).await.map_err(|e| {
                    let what = format!(
                        "requeued {dlq} position {} but cannot acknowledge it (it may be requeued again)",
                        d.position
                    );
                    (what, e)
                }),
                Err(e) => {
                    let what = format!("cannot requeue {dlq} position {} to {}", d.position, message.topic);
                    let _ = sub.nack(d.tag, Duration::ZERO).await;
                    Err((what, e))
                }
            };
            if let Err(f) = step {
                for d in rest {
                    let _ = sub.nack(d.tag, Duration::ZERO).await;
                }
                failure = Some(f);
                break 'read;
            }
            done.requeued += 1;
            tracing::info!(dead_letter_topic = %dlq, position = %d.position, topic = %message.topic, "requeued");
        }
    }
    let flushed = sub.flush_acks().await;
    if let Err(e) = sub.close().await {
        tracing::warn!(error = %e, "could not close the dead-letter subscription cleanly");
    }
    if let Some((what, e)) = failure {
        return Err(fail(what, e, done));
    }
    flushed.map_err(|e| fail(format!("cannot acknowledge the requeued messages in {dlq}"), e, done))?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::transport::DeliveryTag;

    #[test]
    fn keeps_bytes_and_round_trips() {
        let raw = RawMessage {
            topic: "dev-t".into(),
            key: Some(vec![1, 2]),
            headers: vec![("ce_type".into(), b"x".to_vec()), ("weird".into(), vec![0xff])],
            value: vec![0, 159, 146, 150],
            timestamp: None,
        };
        let d = Delivery {
            raw: raw.clone(),
            tag: DeliveryTag(1),
            position: "17".into(),
            attempt: 1,
            event: Err("bad".into()),
        };
        let dl = dead_letter(&d, "dev-t-dlq", "g", Reason::Undecodable, "boom", 3);
        assert_eq!(dl.topic, "dev-t-dlq");
        assert_eq!(dl.value, raw.value);
        assert_eq!(dl.key, raw.key);
        assert_eq!(&dl.headers[..2], &raw.headers[..]);
        assert_eq!(dl.header_str(DLQ_REASON), Some("undecodable"));
        assert_eq!(dl.header_str(DLQ_ATTEMPTS), Some("3"));
        assert_eq!(dl.header_str(DLQ_ORIGINAL_POSITION), Some("17"));
        let back = original(&dl).unwrap();
        assert_eq!(back, raw);
        assert!(is_dead_letter(&dl));
        assert!(!is_dead_letter(&back));
    }

    #[test]
    fn error_header_is_bounded_on_a_char_boundary() {
        let long = "é".repeat(10_000);
        let cut = bounded(&long, MAX_ERROR_BYTES);
        assert!(cut.len() <= MAX_ERROR_BYTES, "{}", cut.len());
        assert!(cut.ends_with("(truncated)"));
        assert_eq!(bounded("short", MAX_ERROR_BYTES), "short");
        let d = Delivery {
            raw: RawMessage {
                topic: "t".into(),
                key: None,
                headers: vec![],
                value: vec![],
                timestamp: None,
            },
            tag: DeliveryTag(1),
            position: "1".into(),
            attempt: 1,
            event: Err("bad".into()),
        };
        let dl = dead_letter(&d, "t-dlq", "g", Reason::ReceiverFailed, &long, 1);
        assert!(dl.header(DLQ_ERROR).map_or(0, |v| v.len()) <= MAX_ERROR_BYTES);
    }
}
