//! The SQLite backend against the shared conformance suite: every group.
//! Each case gets its own database file; every `transport()` opens a new
//! connection to it, as a new process would.
//!
//! SQLite has no broker process to restart: for the `restart` group the
//! nearest event is the write-ahead log being checkpointed and truncated by
//! another connection while the case's connections are live, which is what
//! `restart_broker` does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use event_bus_conformance::{conformance_suite, conformance_tests, BackendUnderTest};
use event_bus_sqlite::{SqliteOptions, SqliteTransport};
use openedx_events::bus::Transport;

struct Sqlite {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn options() -> SqliteOptions {
    SqliteOptions {
        poll_interval: Duration::from_millis(5),
        ..SqliteOptions::default()
    }
}

#[async_trait]
impl BackendUnderTest for Sqlite {
    async fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(SqliteTransport::open(&self.path, options()).expect("open the database"))
    }

    async fn restart_broker(&self) -> Result<(), String> {
        let conn = rusqlite::Connection::open(&self.path).map_err(|e| e.to_string())?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(|e| e.to_string())?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| e.to_string())
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(20)
    }

    /// Two seconds. With a 1 s lease, one CI run (this case beside the
    /// 5000-event fault cases, on two cores) had every event handled twice;
    /// six runs since, three under extra CPU load, did not. The suspect is
    /// the margin: the keeper renews after a quarter lease in hand, so a
    /// starved runtime had 750 ms to spare. The receiver still works 1.5
    /// leases, so the case shows the same thing.
    fn short_lease(&self) -> Option<(serde_json::Map<String, serde_json::Value>, Duration)> {
        let mut extras = serde_json::Map::new();
        extras.insert("lease_seconds".into(), 2.0.into());
        Some((extras, Duration::from_secs(2)))
    }
}

fn backend() -> Sqlite {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bus.db");
    Sqlite { _dir: dir, path }
}

conformance_suite!(backend());
conformance_tests!(restart, backend());
// The write-ahead log truncated twice under a consumer of 5000 events and
// once under a producer (the nearest SQLite has to a broker restart). The
// network cases do not apply: there is no network between the process and
// its file.
conformance_tests!(faults, backend());
conformance_tests!(slow_receiver, backend());
