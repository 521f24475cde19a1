//! JSON text exactly as Python's `json.dumps` writes it.
//!
//! The Kafka bus registers `json.dumps(schema, sort_keys=True)` with the schema
//! registry, so the text must match byte for byte or a new schema version is
//! created. serde_json's compact and pretty writers differ from Python in their
//! separators (`,` vs `, `) and in escaping (Python escapes every non-ASCII
//! character by default), so this small writer exists; it follows the
//! `json.dumps` defaults: separators `", "` and `": "` (or `","` at line ends
//! with `indent`), `ensure_ascii=True`, floats as `repr(float)`.

use serde_json::Value as Json;

/// Options for [`dumps`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DumpOptions {
    /// Sort object keys (`sort_keys=True`).
    pub sort_keys: bool,
    /// Pretty-print with this many spaces per level (`indent=N`).
    pub indent: Option<usize>,
}

/// Render `value` as `json.dumps(value, sort_keys=.., indent=..)` would.
///
/// ```
/// use openedx_events::pyjson::{dumps, DumpOptions};
/// let v = serde_json::json!({"b": 1, "a": [true, null, "é"]});
/// let s = dumps(&v, DumpOptions { sort_keys: true, indent: None });
/// assert_eq!(s, r#"{"a": [true, null, "\u00e9"], "b": 1}"#);
/// ```
pub fn dumps(value: &Json, options: DumpOptions) -> String {
    let mut out = String::new();
    write_value(&mut out, value, options, 0);
    out
}

fn newline(out: &mut String, indent: usize, level: usize) {
    out.push('\n');
    for _ in 0..indent * level {
        out.push(' ');
    }
}

fn write_value(out: &mut String, value: &Json, options: DumpOptions, level: usize) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else if let Some(f) = n.as_f64() {
                out.push_str(&float_repr(f));
            }
        }
        Json::String(s) => write_string(out, s),
        Json::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                separator(out, options, level + 1, i == 0);
                write_value(out, item, options, level + 1);
            }
            close(out, options, level, ']');
        }
        Json::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            if options.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            for (i, (k, v)) in entries.into_iter().enumerate() {
                separator(out, options, level + 1, i == 0);
                write_string(out, k);
                out.push_str(": ");
                write_value(out, v, options, level + 1);
            }
            close(out, options, level, '}');
        }
    }
}

fn separator(out: &mut String, options: DumpOptions, level: usize, first: bool) {
    match options.indent {
        Some(indent) => {
            if !first {
                out.push(',');
            }
            newline(out, indent, level);
        }
        None => {
            if !first {
                out.push_str(", ");
            }
        }
    }
}

fn close(out: &mut String, options: DumpOptions, level: usize, bracket: char) {
    if let Some(indent) = options.indent {
        newline(out, indent, level);
    }
    out.push(bracket);
}

/// Write a JSON string literal with Python's `ensure_ascii=True` escaping.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest text that reads back to the same
/// value, in exponent form below 1e-4 and from 1e16 up.
///
/// ```
/// use openedx_events::pyjson::float_repr;
/// assert_eq!(float_repr(1.5), "1.5");
/// assert_eq!(float_repr(2.0), "2.0");
/// assert_eq!(float_repr(1e16), "1e+16");
/// assert_eq!(float_repr(0.00001), "1e-05");
/// assert_eq!(float_repr(f64::NAN), "NaN");
/// ```
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e17".
    let sci = format!("{f:e}");
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        // Positional notation.
        let n = digits.len() as i32;
        let point = exp + 1; // digits before the decimal point
        let text = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point >= n {
            format!("{}{}.0", digits, "0".repeat((point - n) as usize))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{text}")
    } else {
        let mant = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.clone()
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mant}e{esign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (0.1, "0.1"),
            (12.08, "12.08"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (1.5e16, "1.5e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (1.2e-5, "1.2e-05"),
            (-2.5, "-2.5"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn indent_matches_python() {
        let v = json!({"name": "x", "fields": [{"name": "a", "type": "string"}], "e": [], "o": {}});
        let s = dumps(
            &v,
            DumpOptions {
                sort_keys: false,
                indent: Some(2),
            },
        );
        assert_eq!(
            s,
            "{\n  \"name\": \"x\",\n  \"fields\": [\n    {\n      \"name\": \"a\",\n      \"type\": \"string\"\n    }\n  ],\n  \"e\": [],\n  \"o\": {}\n}"
        );
    }

    #[test]
    fn escapes_like_python() {
        let s = dumps(&json!("a\"b\\c\n\u{1}\u{7f}😀"), DumpOptions::default());
        assert_eq!(s, r#""a\"b\\c\n\u0001\u007f\ud83d\ude00""#);
    }
}
