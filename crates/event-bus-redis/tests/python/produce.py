"""
Python -> Rust: send every sample of events.jsonl with the unmodified
edx-event-bus-redis producer (through openedx-events' get_producer()).

Usage: produce.py EVENTS_JSONL TOPIC

Prints one JSON line per event sent: {"event_type", "id", "metadata"} where
metadata is EventsMetadata.to_json() as Python wrote it. Exits non-zero if
the producer logged an error (it swallows them) or no producer is configured.
"""
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django  # noqa: E402

django.setup()

from edx_event_bus_redis.internal.producer import RedisEventProducer  # noqa: E402
from openedx_events.data import EventsMetadata  # noqa: E402
from openedx_events.event_bus import get_producer  # noqa: E402
from openedx_events.event_bus.avro.deserializer import AvroSignalDeserializer  # noqa: E402
from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals  # noqa: E402


class CountErrors(logging.Handler):
    """Count the errors the producer logs instead of raising."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.count = 0

    def emit(self, record):
        self.count += 1


def main():
    samples_path, topic = sys.argv[1], sys.argv[2]
    errors = CountErrors()
    logging.getLogger().addHandler(errors)
    load_all_signals()
    producer = get_producer()
    if not isinstance(producer, RedisEventProducer):
        print(f"no Redis producer configured: {producer!r}", file=sys.stderr)
        return 2
    with open(samples_path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            signal = OpenEdxPublicSignal.get_signal_by_type(record["event_type"])
            event_data = AvroSignalDeserializer(signal).from_dict(record["data"])
            metadata = EventsMetadata(event_type=record["event_type"], minorversion=0)
            producer.send(
                signal=signal,
                topic=topic,
                event_key_field=None,
                event_data=event_data,
                event_metadata=metadata,
            )
            print(json.dumps({"event_type": record["event_type"], "id": str(metadata.id),
                              "metadata": metadata.to_json()}), flush=True)
    if errors.count:
        print(f"the producer logged {errors.count} error(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
