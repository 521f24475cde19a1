//! The schema registry **test double**, as a program: for scripts and for the
//! Python side of cross-language tests.
//!
//! ```text
//! cargo run -p event-bus-kafka --features testing --example registry_double -- [ADDR] [--exit-on-stdin-eof]
//! ```
//!
//! It prints `REGISTRY_URL=http://127.0.0.1:PORT` on its first line and
//! serves until it is killed (or, with `--exit-on-stdin-eof`, until its
//! standard input closes, so that it ends with the process that piped it).
//! `ADDR` defaults to `127.0.0.1:0` (a free port).

use std::io::{BufRead, Write};

use event_bus_kafka::testing::RegistryDouble;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let until_eof = args.iter().any(|a| a == "--exit-on-stdin-eof");
    let addr = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let registry = RegistryDouble::builder().addr(addr).start()?;
    let mut out = std::io::stdout();
    writeln!(out, "REGISTRY_URL={}", registry.url())?;
    out.flush()?;
    if until_eof {
        for line in std::io::stdin().lock().lines() {
            if line.is_err() {
                break;
            }
        }
        drop(registry);
        return Ok(());
    }
    loop {
        std::thread::park();
    }
}
