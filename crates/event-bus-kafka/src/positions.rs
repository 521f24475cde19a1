//! Places in a Kafka topic as the bus names them: the position text of a
//! message (`partition P offset O`) and the `offset_time` a subscription is
//! moved to.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use openedx_events::datetime::IsoDateTime;

/// The broker position text of a message: `partition P offset O`.
///
/// ```
/// use event_bus_kafka::positions::{parse_position, position};
/// assert_eq!(position(2, 17), "partition 2 offset 17");
/// assert_eq!(parse_position("partition 2 offset 17"), Some((2, 17)));
/// assert_eq!(parse_position("2:17"), Some((2, 17)));
/// ```
pub fn position(partition: i32, offset: i64) -> String {
    format!("partition {partition} offset {offset}")
}

/// Parse `partition P offset O` (or `P:O`).
pub fn parse_position(text: &str) -> Option<(i32, i64)> {
    let t = text.trim();
    if let Some((p, o)) = t.split_once(':') {
        return Some((p.trim().parse().ok()?, o.trim().parse().ok()?));
    }
    let mut words = t.split_whitespace();
    match (words.next(), words.next(), words.next(), words.next(), words.next()) {
        (Some("partition"), Some(p), Some("offset"), Some(o), None) => Some((p.parse().ok()?, o.parse().ok()?)),
        _ => None,
    }
}

/// Parse an `offset_time` the way Python's `datetime.fromisoformat` reads
/// it (the core's isoformat parser, [`IsoDateTime::parse`]): a date, or a
/// date and time (`T` or space), optional fraction, optional UTC offset
/// (`Z`, `+01:00`, `+0100`). A time without offset is taken as UTC (Python
/// takes the process's local time zone: the same on servers in UTC).
///
/// ```
/// use event_bus_kafka::positions::parse_offset_time;
/// let t = parse_offset_time("2023-03-14T05:56:05.314331+01:00").unwrap();
/// assert_eq!(t.to_rfc3339(), "2023-03-14T04:56:05.314331+00:00");
/// assert_eq!(parse_offset_time("2023-03-14").unwrap().to_rfc3339(), "2023-03-14T00:00:00+00:00");
/// assert!(parse_offset_time("yesterday").is_err());
/// ```
pub fn parse_offset_time(text: &str) -> Result<DateTime<Utc>, String> {
    let unreadable = || {
        format!(
            "Could not parse the offset timestamp {text:?}: expected an ISO datetime such as 2023-03-14T05:56:05+00:00"
        )
    };
    let parsed = IsoDateTime::parse(&python_only_forms(text.trim())).map_err(|_| unreadable())?;
    if let Some(utc) = parsed.to_utc() {
        return Ok(utc);
    }
    // A naive time: its isoformat text with a UTC offset.
    IsoDateTime::parse(&format!("{parsed}+00:00"))
        .ok()
        .and_then(|t| t.to_utc())
        .ok_or_else(unreadable)
}

/// `text` with the two forms Python's `fromisoformat` reads and the core
/// parser does not rewritten into ones it does: spaces before the UTC
/// offset are dropped, and a fraction of more than nine digits is cut to
/// nine (Python keeps microseconds, as the core parser does).
fn python_only_forms(text: &str) -> Cow<'_, str> {
    let Some(time) = text.get(11..).filter(|_| text.is_ascii()) else {
        return Cow::Borrowed(text);
    };
    let offset_at = time.find(['+', '-', 'Z', 'z']).unwrap_or(time.len());
    let (clock, offset) = time.split_at(offset_at);
    let clock = if offset.is_empty() { clock } else { clock.trim_end() };
    let clock = match clock.find(['.', ',']) {
        Some(dot) if clock.len() - dot - 1 > 9 && clock[dot + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            &clock[..dot + 10]
        }
        _ => clock,
    };
    if clock.len() + offset.len() == time.len() {
        return Cow::Borrowed(text);
    }
    Cow::Owned(format!("{}{clock}{offset}", &text[..11]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_times_parse_like_python() {
        for (text, want) in [
            ("2023-03-14T05:56:05+00:00", "2023-03-14T05:56:05+00:00"),
            ("2023-03-14T05:56:05Z", "2023-03-14T05:56:05+00:00"),
            ("2023-03-14 05:56:05.5+00:00", "2023-03-14T05:56:05.500+00:00"),
            ("2023-03-14T05:56:05", "2023-03-14T05:56:05+00:00"),
            ("2023-03-14T05:56", "2023-03-14T05:56:00+00:00"),
            ("2023-03-14T07:56:05+0200", "2023-03-14T05:56:05+00:00"),
            ("2023-03-14", "2023-03-14T00:00:00+00:00"),
        ] {
            let t = parse_offset_time(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(t.to_rfc3339(), want, "{text}");
        }
        let e = parse_offset_time("not a time").unwrap_err();
        assert!(e.contains("Could not parse the offset timestamp"), "{e}");
    }

    #[test]
    fn python_forms_the_core_parser_does_not_read_are_read() {
        for (text, want) in [
            ("2023-03-14T05:56:05 +00:00", "2023-03-14T05:56:05+00:00"),
            ("2023-03-14 05:56:05  -01:00", "2023-03-14T06:56:05+00:00"),
            (
                "2023-03-14T05:56:05.1234567891+00:00",
                "2023-03-14T05:56:05.123456+00:00",
            ),
            ("2023-03-14T05:56:05.123456789", "2023-03-14T05:56:05.123456+00:00"),
        ] {
            let t = parse_offset_time(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(t.to_rfc3339(), want, "{text}");
        }
        for text in [
            "2023-03-14T05:56:05.12345a789+00:00",
            "2023-03-14T05:56:05.1234567891a",
            "2023-03-14T05:56:05 +",
            "2023-03-14T",
        ] {
            assert!(parse_offset_time(text).is_err(), "{text}");
        }
    }

    #[test]
    fn positions_round_trip() {
        assert_eq!(parse_position(&position(0, 0)), Some((0, 0)));
        assert_eq!(parse_position("partition x offset 1"), None);
        assert_eq!(parse_position("17"), None);
    }
}
