//! Why the telemetry server cannot start.

use std::net::SocketAddr;

/// Why the telemetry server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The address cannot be bound (in use, not local...).
    #[error("EVENT_BUS_METRICS_ADDR: cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The failure.
        source: std::io::Error,
    },
    /// Another metrics recorder was installed in this process first.
    #[error("cannot install the Prometheus recorder: {0}")]
    Recorder(String),
}
