//! Input generators: random bytes, mutations of valid encodings, hostile
//! Avro writer schemas and header sets.

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value as Json};

/// Characters that break naive text parsers: multi-byte ones, separators,
/// digits, signs.
const NASTY: &[char] = &[
    '\u{e9}',
    '\u{20ac}',
    '\u{1f600}',
    '\u{ff11}',
    '\u{0}',
    ':',
    '-',
    '+',
    '.',
    ',',
    'T',
    'Z',
    ' ',
    '0',
    '9',
    '/',
];

/// Random bytes, mostly short.
pub fn bytes(rng: &mut StdRng) -> Vec<u8> {
    let len = if rng.random_bool(0.9) {
        rng.random_range(0..64)
    } else {
        rng.random_range(0..4096)
    };
    (0..len).map(|_| rng.random()).collect()
}

/// `valid` changed a little: bytes flipped, cut, inserted, repeated.
pub fn mutate(valid: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut v = valid.to_vec();
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..5) {
            0 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] = rng.random();
            }
            1 if !v.is_empty() => v.truncate(rng.random_range(0..v.len())),
            2 => {
                let i = rng.random_range(0..=v.len());
                v.insert(i, rng.random());
            }
            3 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                let j = rng.random_range(i..v.len());
                let chunk = v[i..=j].to_vec();
                v.splice(j..j, chunk);
            }
            _ => {
                let i = rng.random_range(0..=v.len());
                // A large varint: a hostile length or block count.
                v.splice(i..i, [0xfe, 0xff, 0xff, 0xff, 0x0f]);
            }
        }
    }
    v
}

/// `valid` text with characters replaced, inserted or cut.
pub fn mutate_text(valid: &str, rng: &mut StdRng) -> String {
    let mut chars: Vec<char> = valid.chars().collect();
    for _ in 0..rng.random_range(1..4) {
        let c = NASTY[rng.random_range(0..NASTY.len())];
        match rng.random_range(0..3) {
            0 if !chars.is_empty() => {
                let i = rng.random_range(0..chars.len());
                chars[i] = c;
            }
            1 => {
                let i = rng.random_range(0..=chars.len());
                chars.insert(i, c);
            }
            _ if !chars.is_empty() => chars.truncate(rng.random_range(0..chars.len())),
            _ => chars.push(c),
        }
    }
    chars.into_iter().collect()
}

/// A random Avro schema, as JSON: nested arrays, maps, records (empty ones
/// included), unions, enums and zero-size fixed, the shapes that stress a
/// decoder. Names are unique within the schema.
pub fn writer_schema(rng: &mut StdRng, depth: u32, names: &mut u32) -> Json {
    let leaf = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];
    if depth == 0 || rng.random_bool(0.3) {
        return json!(leaf[rng.random_range(0..leaf.len())]);
    }
    *names += 1;
    let name = format!("N{names}");
    match rng.random_range(0..6) {
        0 => json!({"type": "array", "items": writer_schema(rng, depth - 1, names)}),
        1 => json!({"type": "map", "values": writer_schema(rng, depth - 1, names)}),
        2 => {
            let fields: Vec<Json> = (0..rng.random_range(0..4))
                .map(|i| json!({"name": format!("f{i}"), "type": writer_schema(rng, depth - 1, names)}))
                .collect();
            json!({"type": "record", "name": name, "fields": fields})
        }
        3 => json!(["null", writer_schema(rng, depth - 1, names)]),
        4 => json!({"type": "enum", "name": name, "symbols": ["A", "B"]}),
        _ => json!({"type": "fixed", "name": name, "size": rng.random_range(0..3)}),
    }
}

/// A random header value: valid-looking text changed, or bytes.
pub fn header_value(valid: &str, rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..3) {
        0 => valid.as_bytes().to_vec(),
        1 => mutate_text(valid, rng).into_bytes(),
        _ => bytes(rng),
    }
}
