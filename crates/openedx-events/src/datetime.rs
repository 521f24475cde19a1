//! Datetimes in the text form of Python's `datetime.isoformat()`.
//!
//! Every datetime on the bus (the `time` metadata and datetime payload fields)
//! is written as Python writes it: `YYYY-MM-DDTHH:MM:SS[.ffffff][+HH:MM]`,
//! with six fraction digits only when the microseconds are not zero and the
//! offset only when the value has one. Older Python consumers (3.8-3.10)
//! accept nothing else. Parsing accepts what `datetime.fromisoformat` accepts
//! in practice: that form, `Z`, fractions of 1 to 9 digits, a space separator
//! and offsets with or without colons.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};

/// A datetime as Python holds it: microsecond precision, with or without a
/// UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IsoDateTime {
    naive: NaiveDateTime,
    /// Offset east of UTC in seconds; `None` for a naive datetime.
    offset: Option<i32>,
}

/// Text that is not an ISO 8601 datetime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid isoformat string: {input:?} ({reason})")]
pub struct DateTimeParseError {
    input: String,
    reason: &'static str,
}

impl IsoDateTime {
    /// A UTC datetime (microseconds kept, nanoseconds dropped).
    pub fn from_utc(t: DateTime<Utc>) -> Self {
        IsoDateTime {
            naive: truncate_micros(t.naive_utc()),
            offset: Some(0),
        }
    }

    /// The current time in UTC.
    pub fn now() -> Self {
        Self::from_utc(Utc::now())
    }

    /// The instant in UTC, or `None` for a naive datetime.
    pub fn to_utc(&self) -> Option<DateTime<Utc>> {
        let off = self.offset?;
        let utc = self.naive - chrono::Duration::seconds(i64::from(off));
        Some(DateTime::from_naive_utc_and_offset(utc, Utc))
    }

    /// The UTC offset in seconds, if any.
    pub fn offset_seconds(&self) -> Option<i32> {
        self.offset
    }

    /// Parse ISO 8601 text.
    ///
    /// ```
    /// use openedx_events::datetime::IsoDateTime;
    /// let t: IsoDateTime = "2024-05-06T07:08:09Z".parse().unwrap();
    /// assert_eq!(t.to_string(), "2024-05-06T07:08:09+00:00");
    /// let t: IsoDateTime = "2023-03-14T05:56:05.3143+00:00".parse().unwrap();
    /// assert_eq!(t.to_string(), "2023-03-14T05:56:05.314300+00:00");
    /// assert!("2023-13-01T00:00:00".parse::<IsoDateTime>().is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, DateTimeParseError> {
        if let Some(t) = parse_canonical(input.as_bytes()) {
            return Ok(t);
        }
        let fail = |reason| DateTimeParseError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim_end();
        // Every valid form is ASCII (as for Python's `fromisoformat`); so the
        // byte slicing below never cuts inside a character.
        if !s.is_ascii() {
            return Err(fail("not an ASCII isoformat text"));
        }
        if s.len() < 10 {
            return Err(fail("too short"));
        }
        let (date_part, rest) = s.split_at(10);
        let date = parse_date(date_part).ok_or_else(|| fail("bad date"))?;
        if rest.is_empty() {
            return Ok(IsoDateTime {
                naive: date.and_time(NaiveTime::MIN),
                offset: None,
            });
        }
        let mut chars = rest.chars();
        match chars.next() {
            Some('T' | 't' | ' ') => {}
            _ => return Err(fail("expected 'T' between date and time")),
        }
        let rest = chars.as_str();
        // Split the offset off the time.
        let (time_part, offset) = match rest.find(['+', '-', 'Z', 'z']) {
            Some(i) => {
                let (t, o) = rest.split_at(i);
                (t, Some(parse_offset(o).ok_or_else(|| fail("bad UTC offset"))?))
            }
            None => (rest, None),
        };
        let time = parse_time(time_part).ok_or_else(|| fail("bad time"))?;
        Ok(IsoDateTime {
            naive: date.and_time(time),
            offset,
        })
    }
}

/// The text Python writes (`YYYY-MM-DDTHH:MM:SS[.ffffff][+HH:MM]`), parsed
/// without the general parser's allocations: the hot path of every consumed
/// event with a datetime.
fn parse_canonical(b: &[u8]) -> Option<IsoDateTime> {
    fn num(b: &[u8]) -> Option<u32> {
        let mut n = 0u32;
        for &c in b {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(c - b'0');
        }
        Some(n)
    }
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(&b[0..4])? as i32, num(&b[5..7])?, num(&b[8..10])?)?;
    let (mut rest, mut micros) = (&b[19..], 0);
    if rest.first() == Some(&b'.') {
        if rest.len() < 7 {
            return None;
        }
        micros = num(&rest[1..7])?;
        rest = &rest[7..];
    }
    let time = NaiveTime::from_hms_micro_opt(num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?, micros)?;
    let offset = match rest {
        [] => None,
        [b'Z'] => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (num(&[*h1, *h2])?, num(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let off = (h * 3600 + m * 60) as i32;
            Some(if *sign == b'-' { -off } else { off })
        }
        _ => return None,
    };
    Some(IsoDateTime {
        naive: date.and_time(time),
        offset,
    })
}

fn truncate_micros(t: NaiveDateTime) -> NaiveDateTime {
    let micros = t.nanosecond() / 1000 * 1000;
    t.with_nanosecond(micros).unwrap_or(t)
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(&s[0..4])? as i32, digits(&s[5..7])?, digits(&s[8..10])?)
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    let (hms, frac) = match s.find(['.', ',']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    if parts.iter().any(|p| p.len() != 2) || parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let h = digits(parts[0])?;
    let m = parts.get(1).map_or(Some(0), |p| digits(p))?;
    let sec = parts.get(2).map_or(Some(0), |p| digits(p))?;
    let micros = match frac {
        None => 0,
        Some(f) => {
            if parts.len() != 3 || f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let six: String = f.chars().chain(std::iter::repeat('0')).take(6).collect();
            digits(&six)?
        }
    };
    NaiveTime::from_hms_micro_opt(h, m, sec, micros)
}

/// `Z`, `+HH`, `+HH:MM`, `+HHMM`, `+HH:MM:SS` → seconds east of UTC.
fn parse_offset(s: &str) -> Option<i32> {
    if s == "Z" || s == "z" {
        return Some(0);
    }
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let body = &s[1..];
    if !body.is_ascii() {
        return None;
    }
    let parts: Vec<&str> = if body.contains(':') {
        body.split(':').collect()
    } else if body.len() == 4 {
        vec![&body[..2], &body[2..]]
    } else {
        vec![body]
    };
    if parts.iter().any(|p| p.len() != 2) || parts.len() > 3 {
        return None;
    }
    let h = digits(parts[0])? as i32;
    let m = parts.get(1).map_or(Some(0), |p| digits(p))? as i32;
    let sec = parts.get(2).map_or(Some(0), |p| digits(p))? as i32;
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60 + sec))
}

impl FromStr for IsoDateTime {
    type Err = DateTimeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IsoDateTime::parse(s)
    }
}

impl IsoDateTime {
    /// Write the isoformat text into `out`, returning its length (at most 35
    /// bytes); digits by hand, since this runs for every datetime on the bus.
    fn write_iso(&self, out: &mut [u8; 40]) -> usize {
        fn put(out: &mut [u8; 40], at: &mut usize, n: u32, width: usize) {
            let mut n = n;
            for i in (0..width).rev() {
                out[*at + i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
            *at += width;
        }
        fn sep(out: &mut [u8; 40], at: &mut usize, c: u8) {
            out[*at] = c;
            *at += 1;
        }
        let d = self.naive;
        let mut at = 0;
        put(out, &mut at, d.year().clamp(0, 9999) as u32, 4);
        sep(out, &mut at, b'-');
        put(out, &mut at, d.month(), 2);
        sep(out, &mut at, b'-');
        put(out, &mut at, d.day(), 2);
        sep(out, &mut at, b'T');
        put(out, &mut at, d.hour(), 2);
        sep(out, &mut at, b':');
        put(out, &mut at, d.minute(), 2);
        sep(out, &mut at, b':');
        put(out, &mut at, d.second(), 2);
        let micros = (d.nanosecond() / 1000).min(999_999);
        if micros != 0 {
            sep(out, &mut at, b'.');
            put(out, &mut at, micros, 6);
        }
        if let Some(off) = self.offset {
            sep(out, &mut at, if off < 0 { b'-' } else { b'+' });
            let a = off.unsigned_abs();
            put(out, &mut at, (a / 3600) % 100, 2);
            sep(out, &mut at, b':');
            put(out, &mut at, (a / 60) % 60, 2);
            if a % 60 != 0 {
                sep(out, &mut at, b':');
                put(out, &mut at, a % 60, 2);
            }
        }
        at
    }

    /// Whether `text` is exactly this datetime's isoformat text.
    pub fn is_written_as(&self, text: &str) -> bool {
        let mut buf = [0u8; 40];
        let n = self.write_iso(&mut buf);
        text.as_bytes() == &buf[..n]
    }
}

impl fmt::Display for IsoDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 40];
        let n = self.write_iso(&mut buf);
        // Only ASCII digits and separators were written.
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

/// Format a UTC instant as Python's `isoformat()` of an aware UTC datetime.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let t = Utc.with_ymd_and_hms(2023, 1, 1, 14, 0, 0).unwrap();
/// assert_eq!(openedx_events::datetime::isoformat_utc(&t), "2023-01-01T14:00:00+00:00");
/// ```
pub fn isoformat_utc(t: &DateTime<Utc>) -> String {
    IsoDateTime::from_utc(*t).to_string()
}

/// The longest isoformat text [`isoformat_utc_into`] writes, and the size
/// of its buffer.
pub const ISOFORMAT_MAX_LEN: usize = 40;

/// [`isoformat_utc`] written into a stack buffer, without an allocation:
/// for backends that put the time of every event they publish on the wire.
/// The bytes are the same as `isoformat_utc`'s text for every instant.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use openedx_events::datetime::{isoformat_utc_into, ISOFORMAT_MAX_LEN};
/// let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
/// let mut buf = [0u8; ISOFORMAT_MAX_LEN];
/// assert_eq!(isoformat_utc_into(&t, &mut buf), b"2023-11-14T22:13:20.123456+00:00");
/// ```
pub fn isoformat_utc_into<'a>(t: &DateTime<Utc>, buf: &'a mut [u8; ISOFORMAT_MAX_LEN]) -> &'a [u8] {
    let n = IsoDateTime::from_utc(*t).write_iso(buf);
    &buf[..n]
}

/// The UTC instant of `text` when it is in the form Python and this crate
/// write for UTC times (`YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`, or `Z` for the
/// offset), read without the general parser: the hot path of a consumer.
/// `None` for any other text, which then goes to the general parser
/// ([`IsoDateTime::parse`], or [`crate::metadata::parse_time`] for the
/// metadata `time`); where this returns an instant, that parser returns the
/// same one.
///
/// ```
/// use openedx_events::datetime::parse_isoformat_utc;
/// let t = parse_isoformat_utc("2024-05-06T07:08:09.000001+00:00").unwrap();
/// assert_eq!(t.timestamp_subsec_micros(), 1);
/// assert!(parse_isoformat_utc("2024-05-06T07:08:09+01:00").is_none());
/// assert!(parse_isoformat_utc("2024-05-06T07:08:09").is_none());
/// ```
pub fn parse_isoformat_utc(text: &str) -> Option<DateTime<Utc>> {
    let t = parse_canonical(text.as_bytes())?;
    (t.offset == Some(0)).then(|| t.naive.and_utc())
}

impl serde::Serialize for IsoDateTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for IsoDateTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python() {
        for (input, want) in [
            ("2024-05-06T07:08:09+00:00", "2024-05-06T07:08:09+00:00"),
            ("2024-05-06T07:08:09", "2024-05-06T07:08:09"),
            ("2024-05-06 07:08:09.5-05:30", "2024-05-06T07:08:09.500000-05:30"),
            ("2024-05-06T07:08:09.000000+00:00", "2024-05-06T07:08:09+00:00"),
            ("2024-05-06T07:08+0100", "2024-05-06T07:08:00+01:00"),
            ("2024-05-06", "2024-05-06T00:00:00"),
            ("0001-01-01T00:00:00.000001+00:00", "0001-01-01T00:00:00.000001+00:00"),
        ] {
            assert_eq!(IsoDateTime::parse(input).unwrap().to_string(), want, "{input}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "2024",
            "2024-05-06X07:08",
            "2024-05-06T25:00:00",
            "2024-05-06T07:08:09+25:00",
            "2024-05-06T07:08:09.+00:00",
            "2024-05-06T07:08:09.1234567890",
        ] {
            assert!(IsoDateTime::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fast_times_are_the_core_times() {
        use crate::metadata::parse_time;
        use chrono::TimeZone;
        // The fast parser, falling back to the general one as callers do.
        let fast_or_general = |text: &str| parse_isoformat_utc(text).map_or_else(|| parse_time(text), Ok);
        // xorshift: enough spread without a dependency.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut times: Vec<DateTime<Utc>> = vec![
            Utc.timestamp_opt(0, 0).single().expect("epoch"),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).single().expect("year 1"),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
                .single()
                .expect("year 9999"),
            Utc.timestamp_opt(1_700_000_000, 1_000).single().expect("1 µs"),
            Utc.timestamp_opt(1_700_000_000, 999).single().expect("below 1 µs"),
        ];
        for _ in 0..2000 {
            let secs = (next() % 315_000_000_000) as i64 - 62_000_000_000;
            let nanos = if next() % 4 == 0 {
                0
            } else {
                (next() % 1_000_000_000) as u32
            };
            times.push(Utc.timestamp_opt(secs, nanos).single().expect("time"));
        }
        for t in times {
            let core = isoformat_utc(&t);
            let mut buf = [0u8; ISOFORMAT_MAX_LEN];
            let ours = String::from_utf8_lossy(isoformat_utc_into(&t, &mut buf)).into_owned();
            assert_eq!(ours, core, "{t:?}");
            assert_eq!(fast_or_general(&core).ok(), parse_time(&core).ok(), "{core}");
            if let Some(fast) = parse_isoformat_utc(&core) {
                assert_eq!(Some(fast), parse_time(&core).ok(), "{core}");
            }
        }
        for text in [
            "2024-05-06T07:08:09+00:00",
            "2024-05-06T07:08:09.000001+00:00",
            "2024-02-30T07:08:09+00:00",
            "2024-05-06T24:08:09+00:00",
            "2024-05-06T07:08:60+00:00",
            "2024-05-06T07:08:09.12345x+00:00",
            "2024-05-06T07:08:09.123456+01:00",
            "2024-05-06T07:08:09.123456Z",
            "2024-05-06 07:08:09+00:00",
            "+024-05-06T07:08:09+00:00",
            "2024-05-06T07:08:09",
        ] {
            assert_eq!(
                fast_or_general(text).map_err(|e| e.to_string()),
                parse_time(text).map_err(|e| e.to_string()),
                "{text}"
            );
        }
    }

    #[test]
    fn utc_conversion() {
        let t = IsoDateTime::parse("2024-05-06T07:08:09+02:00").unwrap();
        assert_eq!(isoformat_utc(&t.to_utc().unwrap()), "2024-05-06T05:08:09+00:00");
        assert!(IsoDateTime::parse("2024-05-06T07:08:09").unwrap().to_utc().is_none());
    }

    #[test]
    fn multi_byte_characters_anywhere_are_an_error_not_a_panic() {
        let valid = [
            "2024-05-06T00:00:00+01:00",
            "2024-05-06T00:00:00+0100",
            "2024-05-06T00:00:00.123456Z",
            "2024-05-06 00:00:00,5-05:30:15",
            "2024-05-06",
        ];
        for text in valid {
            assert!(IsoDateTime::parse(text).is_ok(), "{text}");
            for at in 0..=text.len() {
                for c in ['\u{e9}', '\u{20ac}', '\u{1f600}', '\u{ff11}'] {
                    let mut hostile = text.to_string();
                    hostile.insert(at, c);
                    assert!(IsoDateTime::parse(&hostile).is_err(), "{hostile:?}");
                    // Replacing a byte's character too.
                    let mut replaced: Vec<char> = text.chars().collect();
                    if at < replaced.len() {
                        replaced[at] = c;
                        let replaced: String = replaced.into_iter().collect();
                        assert!(IsoDateTime::parse(&replaced).is_err(), "{replaced:?}");
                    }
                }
            }
        }
        assert!(IsoDateTime::parse("2024-05-06T00:00:00+1\u{e9}1").is_err());
        assert!(IsoDateTime::parse("").is_err());
        assert!(IsoDateTime::parse("99999-05-06T00:00:00").is_err());
        assert!(IsoDateTime::parse("2024-05-06T00:00:00+99999999999999999999").is_err());
    }
}
