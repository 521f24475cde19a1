"""
``manage.py send_samples --out FILE [--per-type N] [--seed S] [--types a,b]
[--topic T] [--keyed]``: send N generated events of every signal through the
configured producer (``openedx_events.event_bus.get_producer()``, whichever
implementation the settings name), each to topic T (default: the event
type), keyed by nothing, or with ``--keyed`` by the first non-optional
primitive field of the event (signals without one are left out: the Kafka
peer needs a key); write what was sent as JSON lines.
"""
import json
from datetime import datetime

import attr

from django.core.management.base import BaseCommand
from openedx_events.data import EventsMetadata
from openedx_events.event_bus import get_producer
from openedx_events.event_bus.avro.deserializer import AvroSignalDeserializer, deserialize_bytes_to_event_data
from openedx_events.event_bus.avro.serializer import AvroSignalSerializer, serialize_event_data_to_bytes
from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals

from openedx_event_bus._core import KNOWN_UNSERIALIZABLE
from testapp import receivers, samples


def openedx_round_trip(signal, data):
    """The data as openedx-events' own serializer and deserializer give it back (the Python peers' path):
    its deserializer turns falsy optional values (False, 0, "", []) into None, for every implementation."""
    try:
        return deserialize_bytes_to_event_data(serialize_event_data_to_bytes(data, signal), signal)
    except Exception:  # pylint: disable=broad-except
        # Its serializer cannot (bytes fields: it checks the dict with json.dumps);
        # its deserializer's rule still applies, on the Avro dict form.
        return AvroSignalDeserializer(signal).from_dict(avro_dict(data))


def python_serializable(signal, data):
    """Whether openedx-events' own serializer (the Python peers' producers) can encode it."""
    try:
        serialize_event_data_to_bytes(data, signal)
        return True
    except Exception:  # pylint: disable=broad-except
        return False


def avro_dict(v):
    """The Avro dict form of a value (what fastavro decodes): attrs as dicts, custom types as text."""
    if attr.has(type(v)):
        return {a.name: avro_dict(getattr(v, a.name)) for a in attr.fields(type(v))}
    if isinstance(v, dict):
        return {k: avro_dict(x) for k, x in v.items()}
    if isinstance(v, list):
        return [avro_dict(x) for x in v]
    if isinstance(v, datetime):
        return v.isoformat()
    if v is None or isinstance(v, (bool, int, float, str, bytes)):
        return v
    return str(v)


def key_field(schema):
    """The dotted path of the first non-optional primitive leaf of an Avro record schema (depth first,
    through non-optional records only), or None."""
    for field in schema["fields"]:
        t = field["type"]
        if t in ("string", "long", "boolean"):
            return field["name"]
        if isinstance(t, dict) and t.get("type") == "record":
            inner = key_field(t)
            if inner:
                return f"{field['name']}.{inner}"
    return None


class Command(BaseCommand):
    def add_arguments(self, parser):
        parser.add_argument("--out", required=True)
        parser.add_argument("--per-type", type=int, default=2)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--types", default=None)
        parser.add_argument("--topic", default=None)
        parser.add_argument("--keyed", action="store_true")

    def handle(self, *args, **options):
        load_all_signals()
        producer = get_producer()
        rng = samples.rng_for(options["seed"])
        wanted = set(options["types"].split(",")) if options["types"] else None
        sent = 0
        with open(options["out"], "w", encoding="utf-8") as out:
            for signal in sorted(OpenEdxPublicSignal.all_events(), key=lambda s: s.event_type):
                if wanted is not None and signal.event_type not in wanted:
                    continue
                if signal.event_type in KNOWN_UNSERIALIZABLE:
                    # openedx-events keeps these off the bus (a file handle, an in-process event).
                    continue
                key = key_field(AvroSignalSerializer(signal).schema) if options["keyed"] else None
                if options["keyed"] and key is None:
                    self.stderr.write(f"skipped {signal.event_type}: no field can be its key")
                    continue
                for _ in range(options["per_type"]):
                    try:
                        data = samples.event_data(signal, rng)
                    except samples.CannotGenerate as e:
                        self.stderr.write(f"skipped {signal.event_type}: {e}")
                        break
                    metadata = EventsMetadata(event_type=signal.event_type, minorversion=signal.minor_version)
                    producer.send(signal=signal, topic=options["topic"] or signal.event_type,
                                  event_key_field=key, event_data=data, event_metadata=metadata)
                    line = receivers.as_record(signal, data, metadata)
                    line["expected"] = receivers.plain(openedx_round_trip(signal, data))
                    line["python_serializable"] = python_serializable(signal, data)
                    out.write(json.dumps(line) + "\n")
                    sent += 1
        if hasattr(producer, "prepare_for_shutdown"):
            producer.prepare_for_shutdown()
        self.stdout.write(f"sent {sent}")
