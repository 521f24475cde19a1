//! `openedx_event_bus._core`: the Rust side of the Python package
//! `openedx_event_bus` (see `python/`). It holds one configured
//! [`openedx_events::bus::EventBus`] per settings, with every backend of
//! the workspace, and exposes what the package's producer, consumer and
//! management commands need: describe a signal, send, flush, consume,
//! dead letters. Nothing here is meant to be called by services directly;
//! they use the package's classes, which are openedx-events' own.

use std::sync::OnceLock;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

mod bus;
mod consume;
mod convert;
mod dlq;
mod schema;

create_exception!(
    _core,
    ConfigError,
    PyException,
    "An event bus setting is invalid: `key` is the setting's name, `reason` what is wrong."
);
create_exception!(
    _core,
    SendError,
    PyException,
    "An event was not sent; `args[0]` says why, `args[1]` is the event data as JSON (or None)."
);
create_exception!(
    _core,
    BusError,
    PyException,
    "The event bus failed (the message says how)."
);

/// The runtime every bus of the process runs on. Python threads call into
/// it with `block_on` (the GIL released meanwhile); it is never one of its
/// own threads that calls Python, except through the consumer's hand-off
/// to the thread that runs `consume` (see `consume.rs`).
pub(crate) fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .thread_name("openedx-event-bus")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| BusError::new_err(format!("cannot start the event bus runtime: {e}")))
}

/// Log lines of the Rust side go to standard error, filtered by
/// `EVENT_BUS_LOG` (default `info`), once per process; a subscriber set by
/// the embedding application wins.
fn init_logging() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("EVENT_BUS_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    });
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    init_logging();
    m.add_class::<bus::Bus>()?;
    m.add_function(pyo3::wrap_pyfunction!(schema::derive_schema, m)?)?;
    m.add("ConfigError", m.py().get_type::<ConfigError>())?;
    m.add("SendError", m.py().get_type::<SendError>())?;
    m.add("BusError", m.py().get_type::<BusError>())?;
    m.add("BACKENDS", bus::backends().names())?;
    m.add(
        "KNOWN_UNSERIALIZABLE",
        openedx_events::catalog::KNOWN_UNSERIALIZABLE.to_vec(),
    )?;
    Ok(())
}
