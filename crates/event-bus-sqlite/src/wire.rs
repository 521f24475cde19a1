//! Headers as JSON text in the `headers` column: an array of `[name, value]`
//! pairs, in order; a value is a string when its bytes are UTF-8, otherwise
//! an array of byte numbers (0-255).

use serde_json::Value as Json;

/// Encode headers for the `headers` column.
pub(crate) fn encode(headers: &[(String, Vec<u8>)]) -> String {
    let pairs = headers
        .iter()
        .map(|(name, value)| {
            let v = match std::str::from_utf8(value) {
                Ok(s) => Json::String(s.to_string()),
                Err(_) => Json::Array(value.iter().map(|b| Json::from(*b)).collect()),
            };
            Json::Array(vec![Json::String(name.clone()), v])
        })
        .collect();
    Json::Array(pairs).to_string()
}

/// Decode the `headers` column; an error says what is wrong with it.
pub(crate) fn decode(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let json: Json = serde_json::from_str(text).map_err(|e| format!("headers are not valid JSON ({e})"))?;
    let Json::Array(pairs) = json else {
        return Err("headers are not a JSON array".into());
    };
    pairs
        .into_iter()
        .enumerate()
        .map(|(i, pair)| match pair {
            Json::Array(mut nv) if nv.len() == 2 => {
                let value = nv.pop();
                let name = nv.pop();
                match (name, value) {
                    (Some(Json::String(name)), Some(Json::String(v))) => Ok((name, v.into_bytes())),
                    (Some(Json::String(name)), Some(Json::Array(bytes))) => {
                        let bytes = bytes
                            .iter()
                            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                            .collect::<Option<Vec<u8>>>()
                            .ok_or_else(|| format!("header {i} ({name:?}) has a value that is not bytes"))?;
                        Ok((name, bytes))
                    }
                    _ => Err(format!("header {i} is not a [name, value] pair of text")),
                }
            }
            _ => Err(format!("header {i} is not a [name, value] pair")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_and_bytes_in_order() {
        let h = vec![
            ("ce_type".to_string(), b"t.v1".to_vec()),
            ("bin".to_string(), vec![0, 255, 0xc3]),
            ("ce_type".to_string(), Vec::new()),
        ];
        assert_eq!(decode(&encode(&h)).unwrap(), h);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    #[test]
    fn reports_what_is_wrong() {
        assert!(decode("{").unwrap_err().contains("JSON"));
        assert!(decode("{}").unwrap_err().contains("array"));
        assert!(decode("[[1, \"x\"]]").unwrap_err().contains("header 0"));
        assert!(decode("[[\"a\", [256]]]").unwrap_err().contains("bytes"));
        assert!(decode("[[\"a\"]]").unwrap_err().contains("pair"));
    }
}
