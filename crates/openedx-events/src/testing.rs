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
