//! The entries of a subscription: as read from a reply (`Fresh`), and as
//! kept while handed out and not acknowledged (`Held`, by delivery tag).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use openedx_events::bus::transport::{DeliveryTag, IncomingEvent, RawMessage};

use crate::reader::Reply;
use crate::reply::{self, Entry};
use crate::resp;
use crate::wire::{self, EntryId};

/// An entry handed out and not acknowledged yet. Its fields are kept as
/// they came (one RESP array, a single copy) to hand it out again after a
/// nack, even if the stream was trimmed meanwhile.
pub(super) struct Held {
    pub(super) id: EntryId,
    pub(super) attempt: u32,
    pub(super) saved: Vec<u8>,
}

/// An entry just read, parsed, not handed out yet.
pub(super) struct Fresh {
    pub(super) id: EntryId,
    pub(super) attempt: u32,
    pub(super) raw: RawMessage,
    pub(super) event: Result<IncomingEvent, String>,
    pub(super) saved: Vec<u8>,
}

/// Entries read: the usable ones, and the ids of pending entries that were
/// trimmed from the stream (no fields any more).
pub(super) type Read = (Vec<Fresh>, Vec<EntryId>);

/// Hashes delivery tags (sequential numbers) with one multiplication.
#[derive(Default)]
pub(super) struct TagHasher(u64);

impl Hasher for TagHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(super) type TagMap<V> = HashMap<DeliveryTag, V, BuildHasherDefault<TagHasher>>;

/// The entries of an `XREADGROUP` reply, each with `attempt`.
pub(super) fn entries_of(stream: &str, reply: Reply<'_>, attempt: u32) -> Result<Read, String> {
    let mut fresh = Vec::new();
    let mut trimmed = Vec::new();
    match reply {
        Reply::Raw(bytes) => {
            let mut pairs = Vec::new();
            let entries = resp::read_reply_entries(bytes, &mut pairs).map_err(|e| e.to_string())?;
            fresh.reserve(entries.len());
            for e in entries {
                let Some(at) = e.fields else {
                    trimmed.push(e.id);
                    continue;
                };
                let fields = pairs.get(at.pairs.0..at.pairs.1).unwrap_or_default();
                let (raw, event) = wire::parse_entry_from(stream, e.id, fields.iter().copied(), fields.len());
                fresh.push(Fresh {
                    id: e.id,
                    attempt,
                    raw,
                    event,
                    saved: bytes.get(at.bytes.0..at.bytes.1).unwrap_or_default().to_vec(),
                });
            }
        }
        Reply::Value(v) => {
            for e in reply::read_reply(v)? {
                let id = e.id;
                match owned_fresh(stream, e, attempt) {
                    Some(f) => fresh.push(f),
                    None => trimmed.push(id),
                }
            }
        }
    }
    Ok((fresh, trimmed))
}

/// An entry parsed by [`reply`] as a fresh one (`None` if trimmed).
pub(super) fn owned_fresh(stream: &str, e: Entry, attempt: u32) -> Option<Fresh> {
    let fields = e.fields?;
    let saved = resp::encode_fields(fields.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
    let (raw, event) = wire::parse_entry(stream, e.id, fields);
    Some(Fresh {
        id: e.id,
        attempt,
        raw,
        event,
        saved,
    })
}

/// A held entry, from its saved fields, to hand out again.
pub(super) fn saved_entry(stream: &str, id: EntryId, saved: &[u8]) -> (RawMessage, Result<IncomingEvent, String>) {
    match resp::fields(saved) {
        Ok(fields) => {
            let count = fields.len();
            wire::parse_entry_from(stream, id, fields.map_while(Result::ok), count)
        }
        // Saved by this process from a checked reply: cannot happen.
        Err(e) => {
            let (raw, _) = wire::parse_entry(stream, id, Vec::new());
            (raw, Err(format!("cannot read the entry kept for a redelivery: {e}")))
        }
    }
}
