"""
The consumer: ``EventBusConsumer(topic=, group_id=, **extra)``, built by
openedx-events' ``make_single_consumer`` (``manage.py consume_events -t
TOPIC -g GROUP --extra JSON``). ``consume_indefinitely()`` runs the Rust
core's consume loop: retries with backoff, dead letters with their reason,
the error budget and the audit log are the core's, for every backend. Per
message the Django work cycle runs first; the event is rebuilt as the
signal's attrs classes by openedx-events' deserializer and sent with
``send_event_with_custom_metadata``; a receiver that raises fails the
message, which the core retries and then dead-letters. SIGTERM and Ctrl-C
stop it cleanly: the message in hand finishes, the rest stay for the next
run.
"""
import json
import logging
import signal as os_signal
import threading
from uuid import UUID

from openedx_events.data import EventsMetadata
from openedx_events.event_bus import EventBusConsumer as BaseEventBusConsumer
from openedx_events.event_bus.avro.deserializer import AvroSignalDeserializer
from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals

from openedx_event_bus.bus import get_bus
from openedx_event_bus.signals import ensure_described
from openedx_event_bus.work_cycle import prepare_for_new_work_cycle

logger = logging.getLogger(__name__)


class ReceiverFailed(Exception):
    """One or more receivers raised; the message is retried, then dead-lettered."""


class StopConsuming(BaseException):
    """Raised by the SIGTERM handler to stop the loop cleanly."""


def _receiver_name(receiver):
    return getattr(receiver, "__qualname__", None) and f"{receiver.__module__}.{receiver.__qualname__}" or repr(receiver)


def metadata_from_json(text):
    """``EventsMetadata`` from the core's JSON form (``minorversion`` kept)."""
    from datetime import datetime  # pylint: disable=import-outside-toplevel
    d = json.loads(text)
    return EventsMetadata(
        event_type=d["event_type"], id=UUID(d["id"]), minorversion=d["minorversion"], source=d["source"],
        sourcehost=d["sourcehost"], time=datetime.fromisoformat(d["time"]), sourcelib=tuple(d["sourcelib"]),
    )


class EventBusConsumer(BaseEventBusConsumer):
    """Consumes one topic in one group (``EVENT_BUS_CONSUMER = "openedx_event_bus.EventBusConsumer"``)."""

    def __init__(self, topic, group_id, signal=None, **extra):  # pylint: disable=unused-argument
        self.topic = topic
        self.group_id = group_id
        self.extra = extra
        self._bus = get_bus()
        self._deserializers = {}
        self.stats = None

    def _deserializer(self, signal):
        d = self._deserializers.get(signal.event_type)
        if d is None:
            d = self._deserializers[signal.event_type] = AvroSignalDeserializer(signal)
        return d

    def _dispatch(self, event_type, data, metadata_json):
        signal = OpenEdxPublicSignal.get_signal_by_type(event_type)
        event_data = self._deserializer(signal).from_dict(data)
        metadata = metadata_from_json(metadata_json)
        results = signal.send_event_with_custom_metadata(metadata, **event_data)
        failures = [(r, response) for r, response in results if isinstance(response, Exception)]
        for receiver, error in failures:
            logger.error(
                "Receiver %s failed on event %s (%s): %r", _receiver_name(receiver), metadata.id, event_type, error,
                exc_info=(type(error), error, error.__traceback__),
            )
        if failures:
            raise ReceiverFailed("; ".join(f"{_receiver_name(r)} raised {e!r}" for r, e in failures))

    def consume_indefinitely(self, limit=None):
        """Consume until SIGTERM, Ctrl-C, ``limit`` messages or a fatal error; returns the counts."""
        load_all_signals()
        for signal in OpenEdxPublicSignal.all_events():
            try:
                ensure_described(self._bus, signal)
            except Exception as e:  # pylint: disable=broad-except
                logger.warning("Signal %s cannot be consumed from the event bus: %s", signal.event_type, e)
        previous = None
        if threading.current_thread() is threading.main_thread():
            def stop(signum, frame):  # pylint: disable=unused-argument
                raise StopConsuming("SIGTERM")
            previous = os_signal.signal(os_signal.SIGTERM, stop)
        try:
            self.stats = self._bus.consume(
                self.topic, self.group_id, json.dumps(self.extra, default=str), self._dispatch,
                prepare_for_new_work_cycle, limit,
            )
        finally:
            if previous is not None:
                os_signal.signal(os_signal.SIGTERM, previous)
        logger.info("Consumer of %s (group %s) stopped: %s", self.topic, self.group_id, self.stats)
        return self.stats
