//! Settings: the `--config` TOML file, overlaid by the environment, overlaid
//! by flags.

use std::path::PathBuf;

use clap::Args;
use openedx_events::bus::{EventBus, EventBusProducer};
use openedx_events::config::Settings;

use crate::error::{CliError, Context, Result};

/// Flags every command accepts.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// TOML file of settings named like the Django settings
    /// (`EVENT_BUS_BACKEND = "sqlite"`); the environment and flags override it.
    #[arg(long, global = true, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Backend (sets EVENT_BUS_BACKEND).
    #[arg(long, global = true, value_name = "NAME")]
    pub backend: Option<String>,
    /// Topic prefix (sets EVENT_BUS_TOPIC_PREFIX).
    #[arg(long, global = true, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Any other setting, e.g. `--set EVENT_BUS_SQLITE_PATH=/tmp/bus.db`
    /// (repeatable; wins over the file and the environment).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Log lines as text or as one JSON object per line (sets
    /// EVENT_BUS_LOG_FORMAT).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<crate::logging::LogFormat>,
}

impl GlobalArgs {
    /// The settings: file, then environment, then flags.
    pub fn settings(&self) -> Result<Settings> {
        let mut settings = match &self.config {
            Some(path) => Settings::from_toml_file(path)?,
            None => Settings::new(),
        };
        settings = settings.overlay(Settings::from_env());
        for pair in &self.set {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(CliError::new(format!("--set {pair:?}: expected KEY=VALUE")));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(CliError::new(format!("--set {pair:?}: the setting name is empty")));
            }
            settings.set(key, value);
        }
        if let Some(backend) = &self.backend {
            settings.set("EVENT_BUS_BACKEND", backend.as_str());
        }
        if let Some(prefix) = &self.prefix {
            settings.set("EVENT_BUS_TOPIC_PREFIX", prefix.as_str());
        }
        Ok(settings)
    }

    /// The log format: the flag, else `EVENT_BUS_LOG_FORMAT` of the settings.
    pub fn log_format(&self) -> Result<crate::logging::LogFormat> {
        if let Some(f) = self.log_format {
            return Ok(f);
        }
        const KEY: &str = "EVENT_BUS_LOG_FORMAT";
        match self.settings()?.string(KEY)? {
            Some(v) => crate::logging::LogFormat::parse_setting(KEY, &v),
            None => Ok(crate::logging::LogFormat::Text),
        }
    }

    /// The bus built from the settings with the backends of this build.
    pub async fn bus(&self) -> Result<EventBus> {
        let settings = self.settings()?;
        EventBus::from_settings(settings, &crate::backends::backends())
            .await
            .map_err(CliError::from)
    }
}

/// The producer of a bus, or an error when no backend is configured (the
/// no-op producer would drop every event silently).
pub fn producer(bus: &EventBus, what: &str) -> Result<EventBusProducer> {
    let producer = bus.producer();
    if producer.is_noop() {
        return Err(CliError::new(format!(
            "Cannot {what}; no backend configured (set EVENT_BUS_BACKEND or pass --backend; this build has: {})",
            crate::backends::backends().names().join(", ")
        )));
    }
    Ok(producer)
}

/// The transport of a bus, or an error when no backend is configured.
pub fn transport(bus: &EventBus, what: &str) -> Result<std::sync::Arc<dyn openedx_events::bus::transport::Transport>> {
    bus.transport().cloned().with_context(|| {
        format!(
            "Cannot {what}; no backend configured (set EVENT_BUS_BACKEND or pass --backend; this build has: {})",
            crate::backends::backends().names().join(", ")
        )
    })
}
