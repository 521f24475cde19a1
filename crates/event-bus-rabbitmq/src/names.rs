//! Names on the broker: the exchange of a topic, the queues of a group, the
//! retry queues, routing keys, and the retry-delay buckets.
//!
//! AMQP names (exchanges, queues, routing keys) are short strings of at most
//! 255 bytes. Names that would be longer keep a readable head and end with
//! `~` and 16 hex digits of a 64-bit FNV-1a hash of the whole name, so two
//! long names stay apart and the same name always maps the same way.

use std::time::Duration;

use lapin::types::ShortString;
use openedx_events::bus::transport::{TransportError, TransportErrorKind};

/// The routing key of an event without a key.
pub const NO_KEY: &str = "_";
/// The suffix of a topic's backlog exchange and queue (messages published
/// while no group queue is bound).
pub const BACKLOG_SUFFIX: &str = ".unrouted";
/// The longest topic: room is left for the suffixes.
pub const MAX_TOPIC_BYTES: usize = 200;
const MAX: usize = 255;
const HASHED_TAIL: usize = 17;

/// FNV-1a, 64 bits: a stable hash (the standard library's is not promised
/// to stay the same across releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `text` cut to `limit` bytes, the cut marked with `~<hash>`.
fn bounded(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit - HASHED_TAIL;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}~{:016x}", &text[..end], fnv1a(text.as_bytes()))
}

fn short(text: String) -> Result<ShortString, TransportError> {
    ShortString::try_new(text).map_err(|e| TransportError::new(TransportErrorKind::Rejected, e.to_string()))
}

/// The topic's exchange: the full topic itself.
///
/// ```
/// use event_bus_rabbitmq::names;
/// assert_eq!(names::exchange("dev-user-login").unwrap().as_str(), "dev-user-login");
/// assert!(names::exchange("").is_err());
/// assert!(names::exchange("amq.topic").is_err());
/// ```
pub fn exchange(topic: &str) -> Result<ShortString, TransportError> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES || topic.starts_with("amq.") {
        return Err(TransportError::new(
            TransportErrorKind::Rejected,
            format!(
                "topic {topic:?} cannot be a RabbitMQ exchange: names are 1 to {MAX_TOPIC_BYTES} bytes here and \
                 `amq.` is reserved"
            ),
        ));
    }
    short(topic.to_string())
}

/// The backlog of a topic: its alternate exchange and the queue bound to it.
pub fn backlog(topic: &str) -> Result<ShortString, TransportError> {
    exchange(topic)?;
    short(format!("{topic}{BACKLOG_SUFFIX}"))
}

/// The queue of a consumer group: `<full topic>.<group>`, control
/// characters and spaces replaced by `_`, bounded.
///
/// ```
/// use event_bus_rabbitmq::names;
/// assert_eq!(names::group_queue("dev-t", "my service").unwrap().as_str(), "dev-t.my_service");
/// assert!(names::group_queue("dev-t", &"g".repeat(300)).unwrap().as_str().len() <= 220);
/// ```
pub fn group_queue(topic: &str, group: &str) -> Result<ShortString, TransportError> {
    exchange(topic)?;
    if group.is_empty() {
        return Err(TransportError::new(
            TransportErrorKind::Config,
            "the consumer group name is empty",
        ));
    }
    let clean: String = group
        .chars()
        .map(|c| if c.is_control() || c.is_whitespace() { '_' } else { c })
        .collect();
    short(bounded(&format!("{topic}.{clean}"), 220))
}

/// The retry queue of a group queue for a delay bucket: `<queue>.retry.<ms>`.
pub fn retry_queue(queue: &str, delay_ms: u64) -> Result<ShortString, TransportError> {
    short(format!("{queue}.retry.{delay_ms}"))
}

/// The routing key of a message: the key text, or [`NO_KEY`]; keys longer
/// than 255 bytes are cut (the whole key travels in a header).
///
/// ```
/// use event_bus_rabbitmq::names;
/// assert_eq!(names::routing_key(Some(b"42")).as_str(), "42");
/// assert_eq!(names::routing_key(None).as_str(), "_");
/// let long = "k".repeat(300);
/// let rk = names::routing_key(Some(long.as_bytes()));
/// assert_eq!(rk.as_str().len(), 255);
/// assert!(rk.as_str().starts_with("kkk") && rk.as_str().contains('~'));
/// ```
pub fn routing_key(key: Option<&[u8]>) -> ShortString {
    let text = match key {
        None => return ShortString::from(NO_KEY),
        Some(k) => String::from_utf8_lossy(k),
    };
    ShortString::try_new(bounded(&text, MAX)).unwrap_or_else(|_| ShortString::from(NO_KEY))
}

/// The delay bucket (milliseconds) of a nack's delay: the smallest bucket
/// at least as long, or the largest.
///
/// ```
/// use std::time::Duration;
/// use event_bus_rabbitmq::names::bucket;
/// let b = [100, 1000, 60_000];
/// assert_eq!(bucket(Duration::from_millis(1), &b), 100);
/// assert_eq!(bucket(Duration::from_millis(101), &b), 1000);
/// assert_eq!(bucket(Duration::from_secs(3600), &b), 60_000);
/// ```
pub fn bucket(delay: Duration, buckets: &[u64]) -> u64 {
    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    buckets
        .iter()
        .copied()
        .find(|b| *b >= ms)
        .or_else(|| buckets.last().copied())
        .unwrap_or(ms.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_stay_distinct_and_bounded() {
        let a = group_queue("t", &format!("{}a", "é".repeat(200))).unwrap();
        let b = group_queue("t", &format!("{}b", "é".repeat(200))).unwrap();
        assert_ne!(a, b);
        assert!(a.as_str().len() <= 220);
        assert!(retry_queue(a.as_str(), 604_800_000).unwrap().as_str().len() <= 255);
        assert!(backlog(&"t".repeat(200)).unwrap().as_str().len() <= 255);
        assert!(exchange(&"t".repeat(201)).is_err());
        let k = "é".repeat(200);
        assert!(routing_key(Some(k.as_bytes())).as_str().len() <= 255);
        assert_eq!(routing_key(Some(&[0xff])).as_str(), "\u{fffd}");
    }
}
