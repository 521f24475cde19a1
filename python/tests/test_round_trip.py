"""
Two Django services of the test project: one sends generated events of
every signal (all of openedx-events' and the project's own runtime signal)
through this package's producer, the other receives them under
openedx-events' own ``manage.py consume_events`` with this package's
consumer; every event arrives with equal data and metadata, and SIGTERM
stops the consumer cleanly.
"""
import pytest

from conftest import REDIS_URL, Service, by_id, expected_by_id, manage, read_lines, unique, wait_for_lines

OURS = {
    "EVENT_BUS_PRODUCER": "openedx_event_bus.create_producer",
    "EVENT_BUS_CONSUMER": "openedx_event_bus.EventBusConsumer",
    "EVENT_BUS_CONSUMER_START": "earliest",
    "EVENT_BUS_CONSUMER_POLL_TIMEOUT": 0.2,
}


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
    raise ValueError(name)


def round_trip(settings, tmp_path, topic, per_type=2):
    sent_file, got_file = tmp_path / "sent.jsonl", tmp_path / "got.jsonl"
    out = manage(["send_samples", "--out", str(sent_file), "--per-type", str(per_type), "--topic", topic, "--seed",
                  str(hash(topic) % 1000)], settings)
    sent = read_lines(sent_file)
    assert f"sent {len(sent)}" in out.stdout
    consumer = Service(["consume_events", "-t", topic, "-g", "g1"], settings, tmp_path / "consumer.log",
                       TESTAPP_RECORD=got_file)
    try:
        got = wait_for_lines(got_file, len(sent), consumer)
    finally:
        code = consumer.stop()
    assert code == 0, consumer.output()
    return sent, got, consumer.output()


@pytest.mark.parametrize("backend", ["sqlite", "redis", "kafka", "pulsar"])
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
