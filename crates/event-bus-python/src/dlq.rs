//! Dead letters for the package's management commands: list, show and
//! requeue, through the core's [`dead_letter`] functions (the CLI's
//! `event-bus dlq` does the same).

use openedx_events::bus::dead_letter::{
    self, header_text, DLQ_ATTEMPTS, DLQ_FAILED_AT, DLQ_ORIGINAL_TOPIC, DLQ_REASON,
};
use openedx_events::bus::transport::{Delivery, StartPosition, SubscribeRequest, Transport};
use openedx_events::bus::wire::{CE_ID, CE_TYPE};
use openedx_events::config::full_topic;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::bus::{to_py_err, Bus};
use crate::{runtime, BusError};

/// Messages asked for per browse call.
const PAGE: usize = 500;

fn first(d: &Delivery, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| d.raw.header(n)).map(header_text)
}

impl Bus {
    fn transport_for(&self, what: &str) -> PyResult<&std::sync::Arc<dyn Transport>> {
        self.bus.transport().ok_or_else(|| {
            BusError::new_err(format!(
                "cannot {what}: no backend is configured (set EVENT_BUS_BACKEND)"
            ))
        })
    }

    fn dlq_topic(&self, topic: &str) -> PyResult<String> {
        let options = self.bus.consumer_options(topic, "-").map_err(to_py_err)?;
        Ok(full_topic(options.prefix.as_deref(), &options.dead_letter_topic()))
    }

    fn page(&self, py: Python<'_>, dlq: &str, after: Option<&str>, n: usize) -> PyResult<Vec<Delivery>> {
        let transport = self.transport_for("read dead letters")?;
        py.allow_threads(|| {
            runtime()?
                .block_on(transport.browse(dlq, after, n))
                .map_err(|e| BusError::new_err(format!("cannot read the dead-letter topic {dlq}: {e}")))
        })
    }
}

fn summary<'py>(py: Python<'py>, d: &Delivery) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("position", &d.position)?;
    out.set_item("reason", first(d, &[DLQ_REASON]))?;
    out.set_item("attempts", first(d, &[DLQ_ATTEMPTS]))?;
    out.set_item("failed_at", first(d, &[DLQ_FAILED_AT]))?;
    out.set_item("original_topic", first(d, &[DLQ_ORIGINAL_TOPIC]))?;
    out.set_item("event_type", first(d, &[CE_TYPE, "type"]))?;
    out.set_item("id", first(d, &[CE_ID, "id"]))?;
    Ok(out)
}

#[pymethods]
impl Bus {
    /// The full name of `topic`'s dead-letter topic.
    fn dead_letter_topic(&self, topic: &str) -> PyResult<String> {
        self.dlq_topic(topic)
    }

    /// The dead letters of `topic` (up to `limit`), oldest first, as dicts.
    #[pyo3(signature = (topic, limit=None))]
    fn dlq_list<'py>(&self, py: Python<'py>, topic: &str, limit: Option<usize>) -> PyResult<Bound<'py, PyList>> {
        let dlq = self.dlq_topic(topic)?;
        let limit = limit.unwrap_or(usize::MAX);
        let out = PyList::empty(py);
        let mut after: Option<String> = None;
        while out.len() < limit {
            let page = self.page(py, &dlq, after.as_deref(), PAGE.min(limit - out.len()))?;
            let Some(last) = page.last() else { break };
            after = Some(last.position.clone());
            for d in page.iter().take(limit - out.len()) {
                out.append(summary(py, d)?)?;
            }
        }
        Ok(out)
    }

    /// One dead letter: its headers as text and its data as JSON (or why
    /// it does not decode).
    fn dlq_show<'py>(&self, py: Python<'py>, topic: &str, position: &str) -> PyResult<Bound<'py, PyDict>> {
        let dlq = self.dlq_topic(topic)?;
        let transport = self.transport_for("show a dead letter")?;
        let found = py
            .allow_threads(|| {
                runtime()?
                    .block_on(dead_letter::find(transport.as_ref(), &dlq, position))
                    .map_err(|e| BusError::new_err(format!("cannot read the dead-letter topic {dlq}: {e}")))
            })?
            .ok_or_else(|| BusError::new_err(format!("no dead letter at position {position:?} in {dlq}")))?;
        let out = summary(py, &found)?;
        out.set_item("topic", &found.raw.topic)?;
        out.set_item("key", found.raw.key.as_deref().map(header_text))?;
        let headers = PyList::empty(py);
        for (name, value) in &found.raw.headers {
            headers.append((name, header_text(value)))?;
        }
        out.set_item("headers", headers)?;
        match dead_letter::decode_data(self.registry(), &found) {
            Ok(data) => out.set_item("data", data.to_json_string())?,
            Err(why) => out.set_item("data_error", why)?,
        }
        Ok(out)
    }

    /// Send the dead letters of `topic` back to their original topics,
    /// acknowledging each in `group` once republished. Returns
    /// `{"requeued": n, "skipped": n}`; raises after a failure (the counts
    /// so far are in the message).
    #[pyo3(signature = (topic, group, limit=None))]
    fn dlq_requeue<'py>(
        &self,
        py: Python<'py>,
        topic: &str,
        group: &str,
        limit: Option<u64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let transport = self.transport_for("requeue dead letters")?;
        let options = self.bus.consumer_options(topic, group).map_err(to_py_err)?;
        let request = SubscribeRequest {
            topic: self.dlq_topic(topic)?,
            group: group.to_string(),
            consumer_name: options.consumer_name.clone(),
            start: StartPosition::Earliest,
            extras: serde_json::Map::new(),
        };
        let done = py.allow_threads(|| {
            runtime()?
                .block_on(dead_letter::requeue(
                    transport.as_ref(),
                    &request,
                    limit,
                    options.poll_timeout,
                ))
                .map_err(|e| BusError::new_err(e.to_string()))
        })?;
        let out = PyDict::new(py);
        out.set_item("requeued", done.requeued)?;
        out.set_item("skipped", done.skipped)?;
        Ok(out)
    }
}
