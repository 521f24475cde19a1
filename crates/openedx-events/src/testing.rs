//! Helpers for tests of this crate and of backends: where the shared test
//! vectors produced by the Python libraries live.

use std::path::{Path, PathBuf};

/// The `shared/vectors` directory: `$OPENEDX_EVENT_BUS_VECTORS` if set,
/// otherwise the first `shared/vectors` found walking up from the crate
/// being tested (CI keeps `../shared` beside the checkout).
///
/// Panics with a clear message when it cannot be found: the tests that need
/// it must fail, not pass silently.
#[allow(clippy::panic)] // a test helper: failing loudly is its job
pub fn shared_vectors_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("OPENEDX_EVENT_BUS_VECTORS") {
        return PathBuf::from(dir);
    }
    let start = std::env::var("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|_| std::env::current_dir())
        .unwrap_or_else(|_| PathBuf::from("."));
    for dir in start.ancestors() {
        let candidate = dir.join("shared").join("vectors");
        if candidate.is_dir() {
            return candidate;
        }
    }
    panic!(
        "shared test vectors not found: looked for shared/vectors above {} (set OPENEDX_EVENT_BUS_VECTORS to point at it)",
        start.display()
    )
}

/// A file under the openedx-events 11.2.0 vectors.
pub fn openedx_events_vectors(relative: impl AsRef<Path>) -> PathBuf {
    shared_vectors_dir().join("openedx-events-11.2.0").join(relative)
}

/// One sample of `events.jsonl`, produced by openedx-events 11.2.0.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The event type.
    pub event_type: String,
    /// The data in its JSON record form.
    pub data: serde_json::Value,
    /// The data exactly as Python's `json.dumps` wrote it in the line.
    pub data_text: String,
    /// The schemaless Avro bytes, as hex.
    pub avro_hex: String,
}

impl Sample {
    /// The Avro bytes.
    pub fn avro(&self) -> Vec<u8> {
        (0..self.avro_hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(self.avro_hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect()
    }
}

/// Every sample of `events.jsonl` (144 of 72 event types); panics with a
/// clear message when the file is missing or malformed.
#[allow(clippy::panic)] // a test helper: failing loudly is its job
pub fn samples() -> Vec<Sample> {
    let path = openedx_events_vectors("events.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let bad = |what: &str| -> ! { panic!("{}: line without {what}: {line}", path.display()) };
            let j: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| bad("JSON"));
            let start = line.find("\"data\": ").unwrap_or_else(|| bad("data")) + "\"data\": ".len();
            let end = line.find(", \"avro_hex\"").unwrap_or_else(|| bad("avro_hex"));
            Sample {
                event_type: j["event_type"]
                    .as_str()
                    .unwrap_or_else(|| bad("event_type"))
                    .to_string(),
                data: j["data"].clone(),
                data_text: line[start..end].to_string(),
                avro_hex: j["avro_hex"].as_str().unwrap_or_else(|| bad("avro_hex")).to_string(),
            }
        })
        .collect()
}

/// The Python interpreter of the venv with the pinned Python peers, from the
/// workspace's `scripts/python-env.sh` (which creates it on first use).
/// Panics with the script's output when it cannot: the cross-language tests
/// must fail, not pass, when Python is missing.
#[allow(clippy::panic)] // a test helper: failing loudly is its job
pub fn python_interpreter() -> PathBuf {
    let start = std::env::var("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|_| std::env::current_dir())
        .unwrap_or_else(|_| PathBuf::from("."));
    let Some(script) = start
        .ancestors()
        .map(|d| d.join("scripts").join("python-env.sh"))
        .find(|p| p.is_file())
    else {
        panic!("scripts/python-env.sh not found above {}", start.display());
    };
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        panic!(
            "{} failed ({}): the cross-language tests need the Python peers: {}{}",
            script.display(),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if !path.is_file() {
        panic!("{} printed {:?}, not an interpreter", script.display(), path);
    }
    path
}
