//! Stream entry ids (`<milliseconds>-<sequence>`): parsing, ordering and
//! their text without an allocation.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::digits::Digits;

/// A stream entry id, `<milliseconds>-<sequence>`.
///
/// ```
/// use event_bus_redis::wire::EntryId;
/// let id: EntryId = "1678773365314-7".parse().unwrap();
/// assert_eq!((id.ms, id.seq), (1678773365314, 7));
/// assert_eq!(id.to_string(), "1678773365314-7");
/// assert_eq!("42".parse::<EntryId>().unwrap(), EntryId { ms: 42, seq: 0 });
/// assert!("1-2-3".parse::<EntryId>().is_err());
/// assert!("$".parse::<EntryId>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    /// Server time in milliseconds since the epoch.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl EntryId {
    /// The smallest id.
    pub const ZERO: EntryId = EntryId { ms: 0, seq: 0 };

    /// The last id before `t` (milliseconds): everything at or after `t` is
    /// after it.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use event_bus_redis::wire::EntryId;
    /// let t = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
    /// assert_eq!(EntryId::just_before(t).to_string(), "1700000000122-18446744073709551615");
    /// assert_eq!(EntryId::just_before(Utc.timestamp_millis_opt(0).unwrap()), EntryId::ZERO);
    /// ```
    pub fn just_before(t: DateTime<Utc>) -> EntryId {
        match u64::try_from(t.timestamp_millis()) {
            Ok(ms) if ms > 0 => EntryId {
                ms: ms - 1,
                seq: u64::MAX,
            },
            _ => EntryId::ZERO,
        }
    }

    /// The id as text (`<ms>-<seq>`), written into `buf` without an
    /// allocation.
    pub(crate) fn text<'a>(&self, buf: &'a mut [u8; 41]) -> &'a [u8] {
        let mut ms = Digits::default();
        let mut seq = Digits::default();
        let (ms, seq) = (ms.format(self.ms), seq.format(self.seq));
        let n = ms.len() + 1 + seq.len();
        buf[..ms.len()].copy_from_slice(ms);
        buf[ms.len()] = b'-';
        buf[ms.len() + 1..n].copy_from_slice(seq);
        &buf[..n]
    }

    /// The id as a `String` (`<ms>-<seq>`), faster than `to_string`.
    pub(crate) fn to_text(self) -> String {
        let mut buf = [0u8; 41];
        String::from_utf8_lossy(self.text(&mut buf)).into_owned()
    }

    /// The server time the id was made at.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        i64::try_from(self.ms).ok().and_then(DateTime::from_timestamp_millis)
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Not a stream entry id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Redis stream entry id (<milliseconds>-<sequence>)")]
pub struct BadEntryId(pub String);

impl FromStr for EntryId {
    type Err = BadEntryId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadEntryId(s.to_string());
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms, seq),
            None => (s, "0"),
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(bad());
        }
        Ok(EntryId {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids() {
        assert!("".parse::<EntryId>().is_err());
        assert!("-1".parse::<EntryId>().is_err());
        assert!("1-".parse::<EntryId>().is_err());
        assert!("18446744073709551616-0".parse::<EntryId>().is_err());
        let a: EntryId = "5-10".parse().expect("id");
        let b: EntryId = "10-2".parse().expect("id");
        assert!(a < b);
        assert_eq!(EntryId { ms: u64::MAX, seq: 0 }.timestamp(), None);
    }
}
