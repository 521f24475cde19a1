//! Property tests for the decoder on untrusted bytes: whatever arrives, it
//! returns a value or a clear error, never a panic; and what the encoder
//! writes, it reads back unchanged.

use openedx_events::avro::{decode, decode_prefix, decode_resolved, Schema};
use openedx_events::{catalog, sample};
use proptest::prelude::*;

fn bus_types() -> Vec<&'static std::sync::Arc<openedx_events::event::EventType>> {
    catalog::bus_capable().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Random bytes against every catalog schema: no panic.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), pick in 0usize..72) {
        let types = bus_types();
        let t = types[pick % types.len()];
        let schema = &t.avro().unwrap().schema;
        let _ = decode(schema, &bytes);
        let _ = decode_prefix(schema, &bytes);
        let _ = t.decode_data(&bytes);
    }

    /// Valid encodings, then truncated, extended or with one byte changed:
    /// no panic, and the unchanged bytes decode to the original.
    #[test]
    fn mutated_encodings_never_panic(seed in any::<u64>(), pick in 0usize..72, cut in any::<prop::sample::Index>(),
                                     flip in any::<prop::sample::Index>(), value in any::<u8>()) {
        let types = bus_types();
        let t = types[pick % types.len()];
        let mut rng = sample::rng(seed);
        let data = sample::event_data(t, &mut rng);
        let bytes = t.encode_data(&data).unwrap();
        prop_assert_eq!(t.decode_data(&bytes).unwrap(), data);
        let schema = &t.avro().unwrap().schema;
        let _ = decode(schema, &bytes[..cut.index(bytes.len() + 1)]);
        let mut changed = bytes.clone();
        if !changed.is_empty() {
            let i = flip.index(changed.len());
            changed[i] = value;
        }
        let _ = decode(schema, &changed);
        let _ = decode_resolved(schema, schema, &changed);
        changed.extend_from_slice(&[0x80; 12]);
        let _ = decode(schema, &changed);
        // One byte after a valid datum is always reported as trailing.
        let mut longer = bytes.clone();
        longer.push(0);
        let err = decode(schema, &longer).unwrap_err();
        prop_assert_eq!(err.kind, openedx_events::avro::decode::DecodeErrorKind::TrailingBytes(1));
    }

    /// Huge declared lengths and counts are refused before allocating.
    #[test]
    fn huge_lengths_are_errors(n in (1u64 << 20)..u64::MAX / 4) {
        let schema = Schema::parse_str(r#"{"type": "array", "items": "null"}"#).unwrap();
        let mut bytes = Vec::new();
        let mut z = n << 1;
        while z >= 0x80 { bytes.push((z as u8) | 0x80); z >>= 7; }
        bytes.push(z as u8);
        prop_assert!(decode(&schema, &bytes).is_err());
        let strings = Schema::parse_str(r#""string""#).unwrap();
        prop_assert!(decode(&strings, &bytes).is_err());
    }
}
