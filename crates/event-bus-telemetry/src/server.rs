//! The HTTP server: `/metrics`, `/health/live`, `/health/ready`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use openedx_events::bus::health;

use crate::{install_recorder, TelemetryError};

/// Where to listen, and when a loop counts as wedged.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    /// The address (`127.0.0.1:9464`; port 0 picks a free one).
    pub addr: SocketAddr,
    /// A loop that made no progress for this long (beyond its poll timeout)
    /// is not live (`EVENT_BUS_HEALTH_STALL_SECONDS`, default 60 s).
    pub stall_after: Duration,
}

impl TelemetryOptions {
    /// Listen on `addr`, with the default stall time.
    pub fn new(addr: SocketAddr) -> Self {
        TelemetryOptions {
            addr,
            stall_after: Duration::from_secs(60),
        }
    }
}

/// The running server; it stops when dropped.
#[derive(Debug)]
pub struct TelemetryServer {
    local_addr: SocketAddr,
    handle: PrometheusHandle,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct AppState {
    handle: PrometheusHandle,
    stall_after: Duration,
}

impl TelemetryServer {
    /// Install the recorder (see [`install_recorder`]) and serve on the
    /// address; fails at once if it cannot be bound.
    pub async fn start(options: TelemetryOptions) -> Result<Self, TelemetryError> {
        let handle = install_recorder()?;
        let listener = tokio::net::TcpListener::bind(options.addr)
            .await
            .map_err(|source| TelemetryError::Bind {
                addr: options.addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| TelemetryError::Bind {
            addr: options.addr,
            source,
        })?;
        let state = AppState {
            handle: handle.clone(),
            stall_after: options.stall_after,
        };
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .with_state(state);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the metrics and health server stopped");
            }
        });
        tracing::info!(addr = %local_addr, "serving /metrics, /health/live and /health/ready");
        Ok(TelemetryServer {
            local_addr,
            handle,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The metrics as `/metrics` shows them.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

impl Drop for TelemetryServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.handle.render(),
    )
        .into_response()
}

async fn live(State(state): State<AppState>) -> Response {
    let report = health::report(state.stall_after);
    answer(report.live, &report)
}

async fn ready(State(state): State<AppState>) -> Response {
    let report = health::report(state.stall_after);
    answer(report.ready, &report)
}

fn answer(ok: bool, report: &health::HealthReport) -> Response {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_string(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
