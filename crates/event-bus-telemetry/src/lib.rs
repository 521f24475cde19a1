//! Operating the event bus: one small HTTP server with
//!
//! - `GET /metrics`: every metric of the bus (and of the application) in
//!   the Prometheus text format, rendered by `metrics-exporter-prometheus`;
//! - `GET /health/live`: 200 while no consume loop of the process is wedged
//!   (see [`openedx_events::bus::health`]), else 503;
//! - `GET /health/ready`: 200 once every loop is subscribed and its broker
//!   answers, else 503.
//!
//! Both health answers carry the report as JSON. [`spawn_lag_gauges`] polls
//! a group's lag from the broker into the `event_bus_consumer_lag_messages`
//! and `event_bus_consumer_pending_messages` gauges.
//!
//! ```no_run
//! # async fn run() -> Result<(), event_bus_telemetry::TelemetryError> {
//! use event_bus_telemetry::{TelemetryOptions, TelemetryServer};
//! let server = TelemetryServer::start(TelemetryOptions::new("127.0.0.1:9464".parse().unwrap())).await?;
//! println!("metrics on http://{}/metrics", server.local_addr());
//! # Ok(()) }
//! ```

mod error;
mod lag;
mod recorder;
mod server;

pub use error::TelemetryError;
pub use lag::{poll_lag_once, spawn_lag_gauges};
pub use recorder::install_recorder;
pub use server::{TelemetryOptions, TelemetryServer};
