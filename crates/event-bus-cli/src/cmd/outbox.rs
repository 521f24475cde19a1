//! `event-bus outbox`: the transactional outbox's relay and migration
//! (`event-bus-outbox`). The relay publishes the rows of the
//! `EVENT_BUS_OUTBOX_*` table through the configured backend until SIGTERM
//! or Ctrl-C, finishing the round in hand.

use clap::Subcommand;
use openedx_events::bus::consumer::cancel_on_signal;
use openedx_events::bus::EventBus;
use openedx_events::config::Settings;
use tokio_util::sync::CancellationToken;

use crate::error::{CliError, Result};
use crate::settings::GlobalArgs;

/// `event-bus outbox ...`.
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Relay the outbox table to the configured backend until SIGTERM or Ctrl-C
    /// (creates the table first if it is missing).
    Relay {
        /// Do not create the outbox tables; fail if they are missing.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Create the outbox tables (`EVENT_BUS_OUTBOX_TABLE`) if they do not exist.
    Migrate,
}

/// The settings without the outbox's own: the bus is built from the rest
/// (it would warn that it does not know the outbox's).
fn bus_settings(settings: &Settings) -> Settings {
    let mut rest = Settings::new();
    for key in settings.keys() {
        if event_bus_outbox::settings::SETTINGS.contains(&key) {
            continue;
        }
        if let Some(value) = settings.get(key) {
            rest.set(key, value.clone());
        }
    }
    rest
}

/// Run an `outbox` subcommand.
pub async fn run(global: &GlobalArgs, command: OutboxCommand) -> Result<()> {
    let settings = global.settings()?;
    match command {
        OutboxCommand::Migrate => {
            event_bus_outbox::migrate(&settings).await.map_err(outbox_error)?;
            println!("outbox tables ready");
            Ok(())
        }
        OutboxCommand::Relay { no_migrate } => {
            // Checked before connecting to the broker: a bad outbox setting
            // is reported at once, naming the key.
            event_bus_outbox::OutboxSettings::from_settings(&settings).map_err(|e| CliError::new(e.to_string()))?;
            let bus = EventBus::from_settings(bus_settings(&settings), &crate::backends::backends()).await?;
            let transport = crate::settings::transport(&bus, "relay the outbox")?;
            if !no_migrate {
                event_bus_outbox::migrate(&settings).await.map_err(outbox_error)?;
            }
            let shutdown = CancellationToken::new();
            let watcher = tokio::spawn(cancel_on_signal(shutdown.clone()));
            let totals = event_bus_outbox::run_relay(&settings, transport, shutdown).await;
            watcher.abort();
            let totals = totals.map_err(outbox_error)?;
            eprintln!(
                "outbox relay stopped: {} rounds, {} sent, {} failed attempts, {} purged",
                totals.rounds, totals.sent, totals.failed, totals.purged
            );
            Ok(())
        }
    }
}

fn outbox_error(e: event_bus_outbox::OutboxError) -> CliError {
    CliError::new(e.to_string())
}
