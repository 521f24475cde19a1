"""
The Open edX event bus for Django services, on a Rust core.

A service switches to it with two settings (and ``EVENT_BUS_BACKEND``)::

    EVENT_BUS_PRODUCER = "openedx_event_bus.create_producer"
    EVENT_BUS_CONSUMER = "openedx_event_bus.EventBusConsumer"

``create_producer`` returns the one shared producer, a subclass of
``openedx_events.event_bus.EventBusProducer``; ``EventBusConsumer`` is a
subclass of ``openedx_events.event_bus.EventBusConsumer`` that
``make_single_consumer`` (and ``manage.py consume_events``) builds.
"""
from openedx_event_bus._core import BACKENDS, BusError, ConfigError, SendError
from openedx_event_bus.bus import get_bus, reset
from openedx_event_bus.consumer import EventBusConsumer
from openedx_event_bus.producer import EventBusProducer, create_producer

__all__ = [
    "BACKENDS",
    "BusError",
    "ConfigError",
    "EventBusConsumer",
    "EventBusProducer",
    "SendError",
    "create_producer",
    "get_bus",
    "reset",
]
