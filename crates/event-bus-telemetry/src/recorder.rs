//! The process's Prometheus recorder, installed once.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::TelemetryError;

/// Buckets of the `_seconds` histograms: 100 µs to 60 s, enough to tell a
/// fast receiver from a slow one and a fresh event from a stale one.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often histograms and idle series are tidied.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the Prometheus recorder as the process's `metrics` recorder (once;
/// later calls return the same handle) and describe the bus's metrics.
/// Metrics recorded before this call are not kept: install it before
/// building producers and consumers.
///
/// ```
/// let handle = event_bus_telemetry::install_recorder().unwrap();
/// metrics::counter!("example_total").increment(1);
/// assert!(handle.render().contains("example_total 1"));
/// ```
pub fn install_recorder() -> Result<PrometheusHandle, TelemetryError> {
    // One installer at a time: two servers started at once in one process
    // would otherwise both try to set the global recorder.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), SECONDS_BUCKETS)
        .map_err(|e| TelemetryError::Recorder(e.to_string()))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| TelemetryError::Recorder(e.to_string()))?;
    let handle = HANDLE.get_or_init(|| handle).clone();
    openedx_events::bus::consumer::describe_metrics();
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("event-bus-metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        })
        .map_err(|e| TelemetryError::Recorder(format!("cannot start the upkeep thread: {e}")))?;
    Ok(handle)
}
