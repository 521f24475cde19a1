"""
The Python side of tests/python_interop.rs: a minimal Pulsar consumer and
producer of Open edX events, with the official `pulsar-client` and
openedx-events' own Avro serializer, following this backend's mapping:

- properties = the CloudEvents headers of the Kafka event bus, built and
  parsed with edx-event-bus-kafka's own helpers (`_get_headers_from_metadata`,
  `_get_metadata_from_headers`), as text;
- payload = the schemaless Avro body (`serialize_event_data_to_bytes`);
- partition key = the event_key_field value as text (strings as is, other
  primitives as JSON);
- event time = the metadata time in milliseconds.

Usage:
  pulsar_peer.py consume URL TOPIC SUBSCRIPTION COUNT TIMEOUT_SECONDS > out.jsonl
      one JSON line per message: event_type, metadata (EventsMetadata.to_json),
      data (AvroSignalSerializer.to_dict), key, property names, event time.
  pulsar_peer.py produce URL TOPIC INPUT_JSONL > sent.jsonl
      INPUT_JSONL lines: {"event_type", "avro_hex", "key_field"}; writes what
      it sent, in the same form as `consume`.
"""
import calendar
import json
import logging
import sys
import time

import django
from django.conf import settings

settings.configure(
    SECRET_KEY="not-secret-test-only",
    USE_TZ=True,
    INSTALLED_APPS=["openedx_events"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    LOGGING_CONFIG=None,
    EVENTS_SERVICE_NAME="python-pulsar-peer",
)
django.setup()
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

import pulsar  # noqa: E402
from edx_event_bus_kafka.internal.utils import (  # noqa: E402
    _get_headers_from_metadata,
    _get_metadata_from_headers,
)
from openedx_events.data import EventsMetadata  # noqa: E402
from openedx_events.event_bus.avro.deserializer import deserialize_bytes_to_event_data  # noqa: E402
from openedx_events.event_bus.avro.serializer import (  # noqa: E402
    AvroSignalSerializer,
    serialize_event_data_to_bytes,
)
from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals  # noqa: E402

load_all_signals()


def new_client(url):
    # The C++ client's own logger: with a Python logger, the client can abort
    # at interpreter exit ("terminate called without an active exception").
    # Our stdout carries JSON lines only; the reader skips anything else.
    return pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))


def record(signal, metadata, data, key, properties, event_time):
    return {
        "event_type": signal.event_type,
        "metadata": json.loads(metadata.to_json()),
        "data": AvroSignalSerializer(signal).to_dict(data),
        "key": key,
        "properties": properties,
        "event_time": event_time,
    }


def consume(url, topic, subscription, count, timeout):
    client = new_client(url)
    consumer = client.subscribe(
        topic,
        subscription,
        consumer_type=pulsar.ConsumerType.Shared,
        initial_position=pulsar.InitialPosition.Earliest,
    )
    deadline = time.time() + timeout
    seen = 0
    while seen < count and time.time() < deadline:
        try:
            msg = consumer.receive(timeout_millis=1000)
        except pulsar.Timeout:
            continue
        props = msg.properties()
        metadata = _get_metadata_from_headers([(k, v.encode("utf-8")) for k, v in props.items()])
        signal = OpenEdxPublicSignal.get_signal_by_type(metadata.event_type)
        data = deserialize_bytes_to_event_data(msg.data(), signal)
        line = record(signal, metadata, data, msg.partition_key(), sorted(props), msg.event_timestamp())
        print(json.dumps(line), flush=True)
        consumer.acknowledge(msg)
        seen += 1
    consumer.close()
    client.close()
    print(f"python consumer read {seen} of {count}", file=sys.stderr)


def key_text(data, path):
    value = data[path.split(".")[0]]
    for part in path.split(".")[1:]:
        value = getattr(value, part)
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return str(value)


def produce(url, topic, input_path):
    client = new_client(url)
    # The client's defaults: batching on, so several events share an entry.
    producer = client.create_producer(topic, batching_enabled=True, batching_max_publish_delay_ms=10)
    failures = []

    def sent(result, _msg_id):
        if result != pulsar.Result.Ok:
            failures.append(result)

    with open(input_path, encoding="utf-8") as f:
        samples = [json.loads(line) for line in f if line.strip()]
    for sample in samples:
        signal = OpenEdxPublicSignal.get_signal_by_type(sample["event_type"])
        data = deserialize_bytes_to_event_data(bytes.fromhex(sample["avro_hex"]), signal)
        payload = serialize_event_data_to_bytes(data, signal)
        metadata = EventsMetadata(event_type=signal.event_type, minorversion=0)
        props = {k: v.decode("utf-8") for k, v in _get_headers_from_metadata(metadata).items()}
        key = key_text(data, sample["key_field"])
        event_time = calendar.timegm(metadata.time.utctimetuple()) * 1000 + metadata.time.microsecond // 1000
        producer.send_async(payload, sent, properties=props, partition_key=key, event_timestamp=event_time)
        print(json.dumps(record(signal, metadata, data, key, sorted(props), event_time)), flush=True)
    producer.flush()
    producer.close()
    client.close()
    if failures:
        raise SystemExit(f"{len(failures)} sends failed: {failures[:3]}")
    print(f"python producer sent {len(samples)}", file=sys.stderr)


def main():
    command = sys.argv[1]
    if command == "consume":
        consume(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6]))
    elif command == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
