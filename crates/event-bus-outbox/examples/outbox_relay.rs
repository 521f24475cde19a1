//! The outbox relay as a process: relays the outbox table named by the
//! `EVENT_BUS_OUTBOX_*` settings to the backend of `EVENT_BUS_BACKEND`
//! (Redis here) until Ctrl-C or SIGTERM, then prints its totals as JSON.
//! What `event-bus outbox relay` does; the SIGKILL test runs it as a child.
//!
//! ```text
//! EVENT_BUS_OUTBOX_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//! EVENT_BUS_BACKEND=redis EVENT_BUS_REDIS_CONNECTION_URL=redis://127.0.0.1:6379/0 \
//! cargo run -p event-bus-outbox --example outbox_relay
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use event_bus_redis::RedisBackend;
use openedx_events::bus::{Backends, EventBus};
use openedx_events::config::Settings;
use tokio_util::sync::CancellationToken;

async fn relay() -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings::from_env();
    // The bus is built from the other settings (it would warn about ours).
    let bus_settings = Settings::from_vars(
        std::env::vars().filter(|(k, _)| !event_bus_outbox::settings::SETTINGS.contains(&k.as_str())),
    );
    let bus = EventBus::from_settings(bus_settings, &Backends::new().with(Arc::new(RedisBackend))).await?;
    let transport = bus.transport().cloned().ok_or("EVENT_BUS_BACKEND is not set")?;
    event_bus_outbox::migrate(&settings).await?;
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            stop.cancel();
        }
    });
    let totals = event_bus_outbox::run_relay(&settings, transport, stop).await?;
    println!(
        "{}",
        serde_json::json!({"rounds": totals.rounds, "sent": totals.sent, "failed": totals.failed, "purged": totals.purged})
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EVENT_BUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match relay().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outbox relay: {e}");
            ExitCode::FAILURE
        }
    }
}
