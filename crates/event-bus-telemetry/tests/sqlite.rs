//! Metrics of a real consume on the SQLite backend, scraped from the server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use event_bus_sqlite::{SqliteOptions, SqliteTransport};
use openedx_events::bus::Transport;

fn transport(dir: &tempfile::TempDir) -> Arc<dyn Transport> {
    let options = SqliteOptions {
        poll_interval: Duration::from_millis(5),
        ..SqliteOptions::default()
    };
    Arc::new(SqliteTransport::open(dir.path().join("bus.db"), options).unwrap_or_else(|e| panic!("open: {e}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_what_the_consumer_did_and_promtool_accepts_them() {
    let server = server(Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let scenario = run_scenario(transport(&dir), "sqlite").await;
    let (status, text) = get(&server, "/metrics").await;
    assert_eq!(status, 200);
    check_scenario(&text, &scenario);
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool check metrics refuses the output: {e}\n{text}"));
}
