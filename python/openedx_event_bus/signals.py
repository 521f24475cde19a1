"""
Signals described to the Rust core.

The core's catalog knows every event type of openedx-events; a signal a
plugin defines at run time is described from its ``init_data`` by the
rules openedx-events derives Avro schemas with, and the core derives the
same schema from the description.
"""
import json
from datetime import datetime
from typing import get_args, get_origin

from openedx_events.event_bus.avro.custom_serializers import DEFAULT_CUSTOM_SERIALIZERS

_SIMPLE = {bool: "bool", int: "int", float: "float", bytes: "bytes", str: "str"}
_CUSTOM = {s.cls: s.cls.__name__ for s in DEFAULT_CUSTOM_SERIALIZERS}
_CUSTOM[datetime] = "datetime"


def describe_type(data_type):
    """The description of one type (see ``crates/event-bus-python/src/schema.rs``)."""
    if data_type in _CUSTOM:
        return {"custom": _CUSTOM[data_type]}
    if data_type in _SIMPLE:
        return _SIMPLE[data_type]
    origin, args = get_origin(data_type), get_args(data_type)
    if origin is list and args:
        return {"list": describe_type(args[0])}
    if origin is dict and len(args) == 2:
        return {"dict": describe_type(args[1])}
    if hasattr(data_type, "__attrs_attrs__"):
        return {
            "record": data_type.__name__,
            "fields": [
                {"name": a.name, "type": describe_type(a.type), "optional": a.default is None}
                for a in data_type.__attrs_attrs__
            ],
        }
    return {"unsupported": repr(data_type)}


def describe_signal(signal):
    """The description of an ``OpenEdxPublicSignal``."""
    return {
        "event_type": signal.event_type,
        "minor_version": signal.minor_version,
        "fields": [{"name": k, "type": describe_type(t)} for k, t in signal.init_data.items()],
    }


def ensure_described(bus, signal):
    """Make sure the bus knows the signal's event type."""
    if not bus.knows(signal.event_type):
        bus.describe(json.dumps(describe_signal(signal)))
