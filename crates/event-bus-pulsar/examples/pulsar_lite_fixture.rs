//! The pulsar-lite **test fixtures** as a program, for the benchmark harness
//! (`bench/compare.py pulsar`) and other scripts: a pulsar-lite 0.2.0 broker
//! (from the project's Python venv) and the test-only
//! `ChecksumRestoringProxy` in front of it, the very code of
//! `tests/support/` (included here, not copied). Neither is part of the
//! backend; see `tests/support/proxy.rs` for why pulsar-rs needs the proxy
//! to consume from pulsar-lite.
//!
//! ```text
//! cargo run --release -p event-bus-pulsar --example pulsar_lite_fixture
//! ```
//!
//! It prints `BROKER_URL=pulsar://127.0.0.1:P` (pulsar-lite itself: for
//! clients that tolerate its missing checksums, such as the official Python
//! client), `PROXY_URL=pulsar://127.0.0.1:Q` (for pulsar-rs, hence this
//! backend), `PULSAR_LITE_BIN=...`, then `READY`, and serves until its
//! standard input closes (or reads `quit`); then it prints what the proxy
//! did on standard error, stops the proxy and the broker, and removes the
//! broker's data.

use std::io::{BufRead, Write};

#[allow(dead_code)]
#[path = "../tests/support/proxy.rs"]
mod proxy;
#[allow(dead_code)]
#[path = "../tests/support/pulsar_lite.rs"]
mod pulsar_lite;

use std::sync::atomic::Ordering;

use proxy::ChecksumRestoringProxy;
use pulsar_lite::PulsarLite;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = PulsarLite::start()?;
    let proxy = ChecksumRestoringProxy::start(broker.addr())?;
    let mut out = std::io::stdout();
    writeln!(out, "BROKER_URL={}", broker.url())?;
    writeln!(out, "PROXY_URL={}", proxy.url())?;
    writeln!(out, "PULSAR_LITE_BIN={}", pulsar_lite::binary()?.display())?;
    writeln!(out, "READY")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(l) if l.trim() == "quit" => break,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let stats = proxy.stats();
    eprintln!(
        "proxy: {} connections, {} checksums restored, {} lookups rewritten",
        stats.connections.load(Ordering::Relaxed),
        stats.checksums_restored.load(Ordering::Relaxed),
        stats.lookups_rewritten.load(Ordering::Relaxed)
    );
    drop(proxy);
    drop(broker);
    Ok(())
}
