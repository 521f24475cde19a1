"""
The producer: ``create_producer()`` returns the one shared
``EventBusProducer``, whose ``send`` has the semantics of the Python peers'
(``edx-event-bus-kafka``, ``edx-event-bus-redis``): it never raises into
the web request; an event that cannot be sent is logged with its data and
metadata as JSON, the recovery path those peers use, and counted.

The event data is encoded by the Rust core straight from the attrs
objects. A request waits for the broker at most
``EVENT_BUS_PRODUCER_SEND_TIMEOUT`` seconds (default 5). At exit the
producer waits up to ``EVENT_BUS_PRODUCER_FLUSH_TIMEOUT`` seconds (default
10) for every event to be confirmed (``prepare_for_shutdown``).
"""
import atexit
import json
import logging
import threading
import time

from django.conf import settings
from openedx_events.event_bus import EventBusProducer as BaseEventBusProducer

from openedx_event_bus._core import BusError, ConfigError, SendError
from openedx_event_bus.bus import config_error, get_bus
from openedx_event_bus.signals import ensure_described

logger = logging.getLogger(__name__)


def _seconds(name, default):
    value = getattr(settings, name, None)
    if value is None:
        return float(default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0:
        raise config_error(name, f"expected a positive number of seconds, found {value!r}")
    return seconds


class EventBusProducer(BaseEventBusProducer):
    """Sends events through the Rust core to the configured backend."""

    #: Seconds between two tries to connect while the broker is unreachable.
    RECONNECT_EVERY = 5.0

    def __init__(self, bus=None):
        self._bus = bus
        self._connect_error = None
        self._next_connect = 0.0
        if bus is None:
            # An invalid setting raises now, naming the key; a broker that
            # is down does not: sends are logged for recovery until it is back.
            self._connect()
        self.send_timeout = _seconds("EVENT_BUS_PRODUCER_SEND_TIMEOUT", 5)
        self.flush_timeout = _seconds("EVENT_BUS_PRODUCER_FLUSH_TIMEOUT", 10)
        self._counts_lock = threading.Lock()
        self.sent = 0
        self.failed = 0

    def _connect(self):
        try:
            self._bus = get_bus()
        except ConfigError:
            raise
        except BusError as e:
            self._connect_error = str(e)
            self._next_connect = time.monotonic() + self.RECONNECT_EVERY
            logger.warning("The event bus is not reachable; events sent meanwhile are logged for recovery: %s", e)

    def _ready_bus(self):
        if self._bus is None and time.monotonic() >= self._next_connect:
            with self._counts_lock:
                if self._bus is None and time.monotonic() >= self._next_connect:
                    self._connect()
        if self._bus is None:
            raise SendError(f"the event bus is not connected: {self._connect_error}", None)
        return self._bus

    def send(self, *, signal, topic, event_key_field, event_data, event_metadata):
        """Send one event (see ``openedx_events.event_bus.EventBusProducer``)."""
        try:
            bus = self._ready_bus()
            ensure_described(bus, signal)
            bus.send(
                signal.event_type, topic, event_key_field, event_data, event_metadata.to_json(), self.send_timeout
            )
        except SendError as e:
            self._record_failure(e.args[0], e.args[1] if len(e.args) > 1 else None,
                                 signal, topic, event_key_field, event_data, event_metadata)
        except Exception as e:  # pylint: disable=broad-except
            # Never into the request: logged for recovery like a send failure.
            self._record_failure(repr(e), None, signal, topic, event_key_field, event_data, event_metadata)
        else:
            with self._counts_lock:
                self.sent += 1

    def _record_failure(self, error, data_json, signal, topic, event_key_field, event_data, event_metadata):
        with self._counts_lock:
            self.failed += 1
        if data_json is None:
            data_json = _data_as_json(signal, event_data)
        try:
            metadata_json = event_metadata.to_json()
        except Exception:  # pylint: disable=broad-except
            metadata_json = json.dumps(repr(event_metadata))
        logger.error(
            "Error sending an event to the event bus (it can be re-sent from this line): error=%s; "
            "event_type=%s; topic=%s; event_key_field=%s; event_data_as_json=%s; event_metadata_as_json=%s",
            error, getattr(signal, "event_type", None), topic, event_key_field, data_json, metadata_json,
        )

    def prepare_for_shutdown(self):
        """Wait for every event sent to be confirmed (called at exit)."""
        if self._bus is None:
            return
        try:
            self._bus.flush(self.flush_timeout)
        except Exception as e:  # pylint: disable=broad-except
            logger.error("Events sent may not all be confirmed by the broker at exit: %s", e)


def _data_as_json(signal, event_data):
    """The event data as JSON by openedx-events' own serializer, when the core could not."""
    try:
        from openedx_events.event_bus.avro.serializer import AvroSignalSerializer  # pylint: disable=import-outside-toplevel
        return json.dumps(AvroSignalSerializer(signal).to_dict(event_data), default=str)
    except Exception:  # pylint: disable=broad-except
        return json.dumps(repr(event_data))


_producer = None
_producer_lock = threading.Lock()


def create_producer():
    """The one shared producer (``EVENT_BUS_PRODUCER = "openedx_event_bus.create_producer"``)."""
    global _producer  # pylint: disable=global-statement
    with _producer_lock:
        if _producer is None:
            _producer = EventBusProducer()
            atexit.register(_producer.prepare_for_shutdown)
        return _producer


def reset_producer():
    """Forget the shared producer (tests that change settings)."""
    global _producer  # pylint: disable=global-statement
    with _producer_lock:
        _producer = None
