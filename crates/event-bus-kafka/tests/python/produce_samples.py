"""
Python -> Rust: send every sample of events.jsonl through the unmodified
edx-event-bus-kafka producer (openedx-events' get_producer()), then flush.

Usage: produce_samples.py EVENTS_JSONL BASE_TOPIC

Prints one JSON line per event sent:
{"event_type", "event_key_field", "metadata": <EventsMetadata.to_json()>}.
"""
import json
import sys

from interop_common import key_field_of, samples, signal_of

from openedx_events.data import EventsMetadata
from openedx_events.event_bus import get_producer
from openedx_events.event_bus.avro.deserializer import AvroSignalDeserializer


def main():
    events_path, topic = sys.argv[1], sys.argv[2]
    producer = get_producer()
    if producer.__class__.__name__ != "KafkaEventProducer":
        raise SystemExit(f"EVENT_BUS_PRODUCER did not give a Kafka producer: {producer!r}")
    for sample in samples(events_path):
        signal = signal_of(sample["event_type"])
        data = AvroSignalDeserializer(signal).from_dict(sample["data"])
        key = key_field_of(signal)
        metadata = EventsMetadata(event_type=signal.event_type, minorversion=0)
        producer.send(signal=signal, topic=topic, event_key_field=key, event_data=data, event_metadata=metadata)
        print(json.dumps({
            "event_type": signal.event_type,
            "event_key_field": key,
            "metadata": json.loads(metadata.to_json()),
        }), flush=True)
    producer.prepare_for_shutdown()


if __name__ == "__main__":
    main()
