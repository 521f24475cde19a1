"""
Shared helpers of the cross-language scripts: Django set-up, the samples,
and the event_key_field chosen for each event type.
"""
import json
import logging
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kafka_test_settings")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import django  # noqa: E402

django.setup()
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

from openedx_events.event_bus.avro.serializer import AvroSignalSerializer  # noqa: E402
from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals  # noqa: E402

load_all_signals()

PRIMITIVES = ("string", "long", "boolean")


def key_field(schema):
    """
    The first non-optional primitive leaf of an Avro record schema (depth
    first, in field order), reachable through non-optional records only:
    the dotted path, or None. The Rust test picks the same way.
    """
    for field in schema["fields"]:
        t = field["type"]
        if isinstance(t, str) and t in PRIMITIVES:
            return field["name"]
        if isinstance(t, dict) and t.get("type") == "record":
            inner = key_field(t)
            if inner:
                return f"{field['name']}.{inner}"
    return None


def signal_of(event_type):
    return OpenEdxPublicSignal.get_signal_by_type(event_type)


def key_field_of(signal):
    path = key_field(AvroSignalSerializer(signal).schema)
    if path is None:
        raise SystemExit(f"no key field for {signal.event_type}")
    return path


def samples(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
