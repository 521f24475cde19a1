//! `event-bus codec`: event data between JSON and schemaless Avro.

use crate::cmd::bus_event_type;
use crate::error::{CliError, Result};
use crate::io::{json_arg, println};

/// Decode hex Avro bytes and print the data as one line of JSON, keys
/// sorted, as Python's `json.dumps(sort_keys=True)` writes it.
pub fn decode(event_type: &str, hex_text: &str) -> Result<()> {
    let t = bus_event_type(event_type)?;
    let bytes = parse_hex(hex_text)?;
    let data = t.decode_data(&bytes)?;
    println(&data.to_json_string())
}

/// Encode JSON data and print the Avro bytes in lowercase hex.
pub fn encode(event_type: &str, json: &str) -> Result<()> {
    let t = bus_event_type(event_type)?;
    let value = json_arg("--json", json)?;
    let data = t.data_from_json(&value)?;
    let bytes = t.encode_data(&data)?;
    println(&hex::encode(bytes))
}

/// Hex text (whitespace ignored, an optional `0x` prefix) to bytes.
fn parse_hex(text: &str) -> Result<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = compact
        .strip_prefix("0x")
        .or_else(|| compact.strip_prefix("0X"))
        .unwrap_or(&compact);
    hex::decode(digits).map_err(|e| CliError::new(format!("--hex: invalid hex: {e}")))
}
