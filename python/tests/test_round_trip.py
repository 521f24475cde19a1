"""
Two Django services of the test project: one sends generated events of
every signal (all of openedx-events' and the project's own runtime signal)
through this package's producer (on each backend of the wheel), the other receives them under
openedx-events' own ``manage.py consume_events`` with this package's
consumer; every event arrives with equal data and metadata, and SIGTERM
stops the consumer cleanly.
"""
import os
import time

import pytest

from conftest import REDIS_URL, Service, by_id, expected_by_id, manage, read_lines, unique, wait_for_lines

OURS = {
    "EVENT_BUS_PRODUCER": "openedx_event_bus.create_producer",
    "EVENT_BUS_CONSUMER": "openedx_event_bus.EventBusConsumer",
    "EVENT_BUS_CONSUMER_START": "earliest",
    "EVENT_BUS_CONSUMER_POLL_TIMEOUT": 0.2,
}
NATS_URL = os.environ.get("EVENT_BUS_TEST_NATS_URL", "nats://127.0.0.1:4222")
RABBITMQ_URL = os.environ.get("EVENT_BUS_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")


def backend_settings(name, tmp_path, request, topic):
    if name == "kafka":
        broker, registry = request.getfixturevalue("kafka")
        broker.create_topics(topic, f"{topic}-dlq")
        return {"EVENT_BUS_BACKEND": "kafka", "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL": registry.url}
    if name == "pulsar":
        return {"EVENT_BUS_BACKEND": "pulsar", "EVENT_BUS_PULSAR_URL": request.getfixturevalue("pulsar").url}
    if name == "sqlite":
        return {"EVENT_BUS_BACKEND": "sqlite", "EVENT_BUS_SQLITE_PATH": str(tmp_path / "bus.db")}
    if name == "redis":
        return {"EVENT_BUS_BACKEND": "redis", "EVENT_BUS_REDIS_CONNECTION_URL": REDIS_URL}
    if name == "nats":
        return {"EVENT_BUS_BACKEND": "nats", "EVENT_BUS_NATS_URL": NATS_URL}
    if name == "rabbitmq":
        return {"EVENT_BUS_BACKEND": "rabbitmq", "EVENT_BUS_RABBITMQ_URL": RABBITMQ_URL}
    raise ValueError(name)


# RabbitMQ keeps a message only for the group queues bound when it is
# published (no replay): there the consumer subscribes first.
SUBSCRIBE_FIRST = {"rabbitmq"}


def round_trip(settings, tmp_path, topic, per_type=2):
    sent_file, got_file = tmp_path / "sent.jsonl", tmp_path / "got.jsonl"
    consumer = None
    try:
        if settings["EVENT_BUS_BACKEND"] in SUBSCRIBE_FIRST:
            consumer = start_consumer(settings, tmp_path, topic, got_file)
            wait_for_text(consumer, "subscribed")
        out = manage(["send_samples", "--out", str(sent_file), "--per-type", str(per_type), "--topic", topic,
                      "--seed", str(hash(topic) % 1000)], settings)
        sent = read_lines(sent_file)
        assert f"sent {len(sent)}" in out.stdout
        consumer = consumer or start_consumer(settings, tmp_path, topic, got_file)
        got = wait_for_lines(got_file, len(sent), consumer)
    finally:
        code = consumer.stop() if consumer is not None else 0
    assert code == 0, consumer.output()
    return sent, got, consumer.output()


def start_consumer(settings, tmp_path, topic, got_file):
    return Service(["consume_events", "-t", topic, "-g", "g1"], settings, tmp_path / "consumer.log",
                   TESTAPP_RECORD=got_file)


def wait_for_text(service, text, patience=60):
    deadline = time.monotonic() + patience
    while text not in service.output():
        if service.proc.poll() is not None or time.monotonic() > deadline:
            out = service.output()
            raise AssertionError(f"the consumer did not log {text!r}:\n{out[-3000:]}")
        time.sleep(0.1)


@pytest.mark.parametrize("backend", ["sqlite", "redis", "kafka", "pulsar", "nats", "rabbitmq"])
def test_every_signal_round_trips(backend, tmp_path, redis_client, request):
    topic = unique("rt")
    if backend == "redis":
        redis_client[1].extend([topic, f"{topic}-dlq"])
    settings = {**OURS, **backend_settings(backend, tmp_path, request, topic)}
    sent, got, log = round_trip(settings, tmp_path, topic)
    types = {r["event_type"] for r in sent}
    assert len(types) >= 72 and "org.example.testapp.badge.awarded.v1" in types, sorted(types)
    assert len(got) == len(sent), "no duplicates, nothing missing"
    assert by_id(got) == expected_by_id(sent), "data and metadata equal"
    assert "stopped" in log and "SIGTERM" in log, log[-2000:]
