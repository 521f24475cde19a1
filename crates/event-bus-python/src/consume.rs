//! Consuming from Python: the core's consume loop runs on the runtime,
//! and everything that must run in Python (the Django work cycle before
//! each message, rebuilding the event and sending the signal) is handed
//! to the thread that called `consume`, which waits with the GIL released.
//! So receivers run on the caller's thread, as Django expects (database
//! connections and caches are per thread), the loop's background work
//! (lease renewals, acks) goes on while a receiver runs, and signals
//! (SIGTERM, Ctrl-C) are seen within 100 ms: the loop is then asked to
//! stop, finishes the message in hand and returns.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use async_trait::async_trait;
use openedx_events::bus::hooks::{HookError, WorkCycleHook};
use openedx_events::bus::{ConsumerStats, EventBusConsumer};
use openedx_events::signal::{Event, Registry};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value as Json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::bus::{to_py_err, Bus};
use crate::{convert, runtime, BusError};

/// How often the waiting thread looks at Python's signal handlers.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// What the loop asks the Python thread to do.
enum Call {
    /// The work cycle before a message.
    Prepare,
    /// Rebuild the event and send the signal.
    Dispatch(Event),
}

struct Request {
    call: Call,
    reply: oneshot::Sender<Result<(), String>>,
}

async fn ask(tx: &mpsc::Sender<Request>, call: Call) -> Result<(), String> {
    let (reply, answer) = oneshot::channel();
    tx.send(Request { call, reply })
        .map_err(|_| "the Python consumer thread is not waiting any more".to_string())?;
    answer
        .await
        .map_err(|_| "the Python consumer thread stopped before answering".to_string())?
}

/// The Django work cycle, run in Python before each message.
struct PythonWorkCycle {
    tx: mpsc::Sender<Request>,
}

#[async_trait]
impl WorkCycleHook for PythonWorkCycle {
    fn name(&self) -> &str {
        "django_work_cycle"
    }

    async fn prepare(&self) -> Result<(), HookError> {
        ask(&self.tx, Call::Prepare).await.map_err(HookError::from)
    }
}

/// The text of a Python exception, for the core's logs and dead letters
/// (the Python side logs the exception itself).
fn describe(e: PyErr) -> String {
    e.to_string()
}

fn serve(py: Python<'_>, call: Call, dispatch: &PyObject, prepare: &PyObject) -> Result<(), String> {
    match call {
        Call::Prepare => prepare.call0(py).map(drop).map_err(describe),
        Call::Dispatch(event) => {
            let data = convert::record_to_python(py, &event.data).map_err(describe)?;
            dispatch
                .call1(py, (event.event_type.name(), data, event.metadata.to_json()))
                .map(drop)
                .map_err(describe)
        }
    }
}

fn stats_dict<'py>(py: Python<'py>, s: &ConsumerStats, stopped_by: Option<String>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("received", s.received)?;
    d.set_item("processed", s.processed)?;
    d.set_item("retried", s.retried)?;
    d.set_item("dead_lettered", s.dead_lettered)?;
    d.set_item("hook_failures", s.hook_failures)?;
    d.set_item("poll_failures", s.poll_failures)?;
    d.set_item("duplicates_skipped", s.duplicates_skipped)?;
    d.set_item("elapsed", s.elapsed.as_secs_f64())?;
    d.set_item("stopped_by", stopped_by)?;
    Ok(d)
}

#[pymethods]
impl Bus {
    /// Consume `topic` in `group` until a signal handler raises (SIGTERM,
    /// Ctrl-C), the limit, or a fatal error. `dispatch(event_type, data,
    /// metadata_json)` rebuilds and sends one event (raising fails it: the
    /// core retries, then dead-letters); `prepare()` runs before each
    /// message. `extra_json` holds the backend's options (`--extra`).
    /// Returns the counts as a dict.
    #[pyo3(signature = (topic, group, extra_json, dispatch, prepare, limit=None))]
    // The arguments of the Python call, one by one.
    #[allow(clippy::too_many_arguments)]
    fn consume<'py>(
        &self,
        py: Python<'py>,
        topic: &str,
        group: &str,
        extra_json: &str,
        dispatch: PyObject,
        prepare: PyObject,
        limit: Option<u64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let extras = match serde_json::from_str::<Json>(extra_json) {
            Ok(Json::Object(m)) => m,
            Ok(other) => return Err(BusError::new_err(format!("--extra must be a JSON object, not {other}"))),
            Err(e) => return Err(BusError::new_err(format!("--extra is not JSON: {e}"))),
        };
        let mut options = self.bus.consumer_options(topic, group).map_err(to_py_err)?;
        if let Some(name) = extras.get("consumer_name").and_then(Json::as_str) {
            options.consumer_name = name.to_string();
        }
        options.extras = extras;
        options.limit = limit;
        let transport = self.bus.transport().cloned().ok_or_else(|| {
            BusError::new_err("Cannot consume events; no consumer configured (set EVENT_BUS_BACKEND)")
        })?;

        // The consumer's own registry: the same event types, one receiver
        // each, that hands the event to this thread.
        let registry = Arc::new(Registry::new());
        let (tx, rx) = mpsc::channel::<Request>();
        // Locked by the waiting thread only; the lock makes it shareable
        // with the GIL released.
        let rx = std::sync::Mutex::new(rx);
        for signal in self.registry().all() {
            let s = registry
                .register(signal.event_type().clone())
                .map_err(|e| BusError::new_err(e.to_string()))?;
            let tx = tx.clone();
            s.connect_async("openedx_event_bus.send_signal", move |event| {
                let tx = tx.clone();
                async move { ask(&tx, Call::Dispatch(event)).await.map_err(Into::into) }
            });
        }
        let consumer =
            EventBusConsumer::new(transport, registry, options).with_hook(Arc::new(PythonWorkCycle { tx: tx.clone() }));
        drop(tx);

        let rt = runtime()?;
        let token = CancellationToken::new();
        let run = rt.spawn({
            let token = token.clone();
            async move { consumer.consume(token).await }
        });
        let mut stopped_by: Option<String> = None;
        while !run.is_finished() {
            match py.allow_threads(|| match rx.lock() {
                Ok(rx) => rx.recv_timeout(SIGNAL_CHECK),
                Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
            }) {
                Ok(request) => {
                    let result = serve(py, request.call, &dispatch, &prepare);
                    let _ = request.reply.send(result);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // The loop ended and dropped its receivers; `run` finishes.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    py.allow_threads(|| std::thread::sleep(Duration::from_millis(1)))
                }
            }
            if stopped_by.is_none() {
                if let Err(e) = py.check_signals() {
                    let why = e.to_string();
                    tracing::info!(reason = %why, topic, group, "stopping the consumer: the message in hand finishes first");
                    stopped_by = Some(why);
                    token.cancel();
                }
            }
        }
        let outcome = py.allow_threads(|| rt.block_on(run));
        match outcome {
            Ok(Ok(stats)) => stats_dict(py, &stats, stopped_by),
            Ok(Err(e)) => Err(BusError::new_err(e.to_string())),
            Err(e) => Err(BusError::new_err(format!("the consume loop failed: {e}"))),
        }
    }
}
