"""
The one configured bus of the process, built from ``django.conf.settings``.

Every setting whose name starts with ``EVENT_BUS_`` (plus
``EVENTS_SERVICE_NAME`` and ``SERVICE_VARIANT``) is handed to the Rust
core under its own name, so the settings are those of the Rust side and of
the Python peers: ``EVENT_BUS_BACKEND``, ``EVENT_BUS_TOPIC_PREFIX``,
``EVENT_BUS_REDIS_CONNECTION_URL``, ``EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS``...
An invalid one raises ``ConfigError(key, message)``.
"""
import json
import threading

from django.conf import settings as django_settings

from openedx_event_bus._core import BACKENDS, Bus, ConfigError

# Settings that belong to openedx-events, not to the bus: the loaders of the
# producer and consumer classes, and the producer configuration, which
# openedx-events' own auto-producing receiver reads.
# The package's own settings are read by the package.
_NOT_OURS = {"EVENT_BUS_PRODUCER", "EVENT_BUS_CONSUMER", "EVENT_BUS_PRODUCER_CONFIG",
             "EVENT_BUS_PRODUCER_SEND_TIMEOUT", "EVENT_BUS_PRODUCER_FLUSH_TIMEOUT"}

_lock = threading.Lock()
_bus = None


def config_error(key, reason):
    """A ``ConfigError`` naming the setting, as the Rust side raises them."""
    error = ConfigError(f"{key}: {reason}")
    error.key = key
    error.reason = reason
    return error


def bus_settings(settings=None):
    """The event bus settings of ``settings`` (Django's by default), as a dict."""
    settings = settings if settings is not None else django_settings
    out = {}
    for name in dir(settings):
        if name in _NOT_OURS:
            continue
        if name.startswith("EVENT_BUS_") or name in ("EVENTS_SERVICE_NAME", "SERVICE_VARIANT"):
            value = getattr(settings, name)
            if value is not None:
                out[name] = value
    return out


def with_kafka_defaults(values):
    """The settings with the package's Kafka default: ``linger.ms`` 0 in
    ``EVENT_BUS_KAFKA_CLIENT_CONFIG`` unless the settings set it. A Django
    ``send`` waits for its own event's confirmation, one event per request,
    so librdkafka must not hold the event back to batch it (its default
    waits 5 ms, a delay on every request that sends). A value that is not a
    table is left for the core to report, naming the key."""
    if values.get("EVENT_BUS_BACKEND") != "kafka":
        return values
    config = values.get("EVENT_BUS_KAFKA_CLIENT_CONFIG")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            return values
    if config is None:
        config = {}
    if isinstance(config, dict) and "linger.ms" not in config:
        values = {**values, "EVENT_BUS_KAFKA_CLIENT_CONFIG": {**config, "linger.ms": 0}}
    return values


def build_bus(settings=None):
    """A new bus from the settings (connects to the backend)."""
    values = with_kafka_defaults(bus_settings(settings))
    if not values.get("EVENT_BUS_BACKEND"):
        raise config_error("EVENT_BUS_BACKEND", "not set; name one of the backends: " + ", ".join(BACKENDS))
    try:
        text = json.dumps(values, default=str)
    except (TypeError, ValueError) as e:
        raise config_error("(settings)", f"an event bus setting cannot be read: {e}") from e
    return Bus(text)


def get_bus():
    """The process's bus, built on first use."""
    global _bus  # pylint: disable=global-statement
    with _lock:
        if _bus is None:
            _bus = build_bus()
        return _bus


def reset():
    """Forget the process's bus (tests that change settings)."""
    global _bus  # pylint: disable=global-statement
    with _lock:
        _bus = None
