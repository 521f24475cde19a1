"""Time the Python openedx-events serializer on the samples the Rust codec
benchmark uses. Prints one JSON object: {name: {"encode_ns": .., "decode_ns": ..}}.

Run with the project's venv (scripts/python-env.sh) via bench/codec.py."""
import json
import sys
import timeit

from django.conf import settings

settings.configure()

from openedx_events.event_bus.avro.deserializer import (  # noqa: E402
    AvroSignalDeserializer,
    deserialize_bytes_to_event_data,
)
from openedx_events.event_bus.avro.serializer import serialize_event_data_to_bytes  # noqa: E402
from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals  # noqa: E402

EVENTS = json.loads(sys.argv[2])


def longest_sample(path, event_type):
    best = None
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            if d["event_type"] == event_type and (best is None or len(d["avro_hex"]) > len(best["avro_hex"])):
                best = d
    return best


def per_op_ns(fn, number):
    # Best of 5 repeats, like timeit's command line.
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e9


def main():
    load_all_signals()
    out = {}
    for name, event_type in EVENTS:
        sample = longest_sample(sys.argv[1], event_type)
        signal = OpenEdxPublicSignal.get_signal_by_type(event_type)
        data = AvroSignalDeserializer(signal).from_dict(sample["data"])
        raw = bytes.fromhex(sample["avro_hex"])
        assert serialize_event_data_to_bytes(data, signal) == raw
        out[name] = {
            "encode_ns": per_op_ns(lambda: serialize_event_data_to_bytes(data, signal), 2000),
            "decode_ns": per_op_ns(lambda: deserialize_bytes_to_event_data(raw, signal), 2000),
        }
    print(json.dumps(out))


main()
