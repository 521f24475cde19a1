//! The Confluent wire framing of keys and values: byte `0x00` (the magic
//! byte), the schema id as 4 big-endian bytes, then the Avro binary datum.

/// The magic byte of the Confluent framing.
pub const MAGIC: u8 = 0;

/// Length of the frame header (magic byte and schema id).
pub const HEADER_LEN: usize = 5;

/// Frame an Avro datum with its schema id.
///
/// ```
/// use event_bus_kafka::framing::frame;
/// // Key `foobob` with schema id 1, as edx-event-bus-kafka writes it.
/// assert_eq!(frame(1, b"\x0cfoobob"), b"\x00\x00\x00\x00\x01\x0cfoobob");
/// ```
pub fn frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// Why bytes are not a Confluent frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer than 5 bytes.
    #[error("value is too short for the Confluent schema-registry framing ({0} bytes, need at least 5)")]
    TooShort(usize),
    /// The first byte is not 0.
    #[error("value does not start with the Confluent magic byte 0 (found 0x{0:02x})")]
    BadMagic(u8),
}

/// Split a frame into its schema id and datum.
///
/// ```
/// use event_bus_kafka::framing::{unframe, FrameError};
/// assert_eq!(unframe(b"\x00\x00\x01\x86\xb3\xf6\x01").unwrap(), (100019, &b"\xf6\x01"[..]));
/// assert_eq!(unframe(b"\x01\x00\x00\x00\x01"), Err(FrameError::BadMagic(1)));
/// assert_eq!(unframe(b"\x00"), Err(FrameError::TooShort(1)));
/// ```
pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8]), FrameError> {
    if bytes.len() < HEADER_LEN {
        return Err(FrameError::TooShort(bytes.len()));
    }
    if bytes[0] != MAGIC {
        return Err(FrameError::BadMagic(bytes[0]));
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_the_python_vectors() {
        // spec §2.2/§2.3: key `foobob` id 1; integer 123; value frame with id 100019.
        assert_eq!(hex(&frame(1, b"\x0cfoobob")), "00000000010c666f6f626f62");
        assert_eq!(hex(&frame(3, &[0xf6, 0x01])), "0000000003f601");
        assert_eq!(&hex(&frame(100_019, &[0xf6]))[..10], "00000186b3");
    }

    #[test]
    fn unframe_round_trips_and_rejects_garbage() {
        for id in [0u32, 1, 255, 65_536, u32::MAX] {
            let f = frame(id, b"abc");
            assert_eq!(unframe(&f).unwrap(), (id, &b"abc"[..]));
        }
        assert_eq!(unframe(b"\x00\x00\x00\x00\x07").unwrap(), (7, &b""[..]));
        assert_eq!(unframe(b""), Err(FrameError::TooShort(0)));
        assert_eq!(unframe(b"\xff\xfe not an event"), Err(FrameError::BadMagic(0xff)));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
