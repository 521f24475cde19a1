//! `EVENT_BUS_BACKEND = "sqlite"`.

use std::sync::Arc;

use async_trait::async_trait;
use openedx_events::bus::{BackendFactory, BusError, Transport};
use openedx_events::config::Settings;

use crate::options::{SqliteOptions, SETTINGS};
use crate::transport::SqliteTransport;

/// The factory that builds a [`SqliteTransport`] from settings; add it to
/// the application's [`Backends`](openedx_events::bus::Backends).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use event_bus_sqlite::SqliteBackend;
/// use openedx_events::bus::{Backends, EventBus};
/// use openedx_events::config::Settings;
/// let dir = tempfile::tempdir().unwrap();
/// let mut settings = Settings::new();
/// settings.set("EVENT_BUS_BACKEND", "sqlite");
/// settings.set("EVENT_BUS_SQLITE_PATH", dir.path().join("bus.db").to_str().unwrap());
/// let backends = Backends::new().with(Arc::new(SqliteBackend));
/// let bus = EventBus::from_settings(settings, &backends).await.unwrap();
/// assert_eq!(bus.transport().unwrap().name(), "sqlite");
///
/// let mut bad = Settings::new();
/// bad.set("EVENT_BUS_BACKEND", "sqlite");
/// bad.set("EVENT_BUS_SQLITE_LEASE_SECONDS", "soon");
/// let e = EventBus::from_settings(bad, &backends).await.err().unwrap();
/// assert!(e.to_string().contains("EVENT_BUS_SQLITE_LEASE_SECONDS"));
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteBackend;

#[async_trait]
impl BackendFactory for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn settings(&self) -> &'static [&'static str] {
        SETTINGS
    }

    async fn create(&self, settings: &Settings) -> Result<Arc<dyn Transport>, BusError> {
        let (path, options) = SqliteOptions::from_settings(settings)?;
        let opened = tokio::task::spawn_blocking(move || SqliteTransport::open(path, options))
            .await
            .map_err(|e| openedx_events::bus::TransportError::other(format!("opening the sqlite database: {e}")))??;
        Ok(Arc::new(opened))
    }
}
