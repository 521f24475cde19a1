"""
A mixed deployment on Kafka (tansu, with the schema registry double): a
service using this package and a service using the unmodified
edx-event-bus-kafka exchange every keyable signal both ways, with equal data
and metadata. Both sides register their schemas in the same registry.
"""
import pytest

from brokers import Registry, Tansu
from conftest import Service, by_id, expected_by_id, manage, read_lines, unique, wait_for_lines


@pytest.fixture(scope="module")
def kafka():
    broker, registry = Tansu(), Registry()
    yield broker, registry
    broker.stop()
    registry.stop()


def settings(kafka):
    broker, registry = kafka
    common = {"EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL": registry.url,
              "EVENT_BUS_TOPIC_PREFIX": "mixed", "EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT": 0.5}
    ours = {**common, "EVENT_BUS_BACKEND": "kafka", "EVENT_BUS_PRODUCER": "openedx_event_bus.create_producer",
            "EVENT_BUS_CONSUMER": "openedx_event_bus.EventBusConsumer", "EVENT_BUS_CONSUMER_START": "earliest"}
    peer = {**common, "EVENT_BUS_PRODUCER": "edx_event_bus_kafka.create_producer",
            "EVENT_BUS_CONSUMER": "edx_event_bus_kafka.KafkaEventConsumer"}
    return ours, peer


def start_group_at_zero(bootstrap, topic, group):
    """The peer's consumer sets no auto.offset.reset (librdkafka's default is the end): the group starts
    at the topic's first offset, as a deployment whose consumer ran before the events were sent would."""
    from confluent_kafka import Consumer, TopicPartition  # pylint: disable=import-outside-toplevel
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        c.close()


def exchange(kafka, producer_is_peer, tmp_path):
    ours, peer = settings(kafka)
    producer_settings, consumer_settings = (peer, ours) if producer_is_peer else (ours, peer)
    topic = unique("mixed")
    full_topic = f"mixed-{topic}"
    kafka[0].create_topics(full_topic, f"{full_topic}-dlq")
    start_group_at_zero(kafka[0].bootstrap, full_topic, "g1")
    sent_file, got_file = tmp_path / "sent.jsonl", tmp_path / "got.jsonl"
    manage(["send_samples", "--out", str(sent_file), "--topic", topic, "--seed", "11", "--keyed"], producer_settings)
    sent = read_lines(sent_file)
    if producer_is_peer:
        # What openedx-events' serializer cannot encode (bytes fields) the peer logs and drops.
        sent = [r for r in sent if r["python_serializable"]]
    consumer = Service(["consume_events", "-t", topic, "-g", "g1"], consumer_settings, tmp_path / "consumer.log",
                       TESTAPP_RECORD=got_file)
    try:
        got = wait_for_lines(got_file, len(sent), consumer)
    finally:
        consumer.kill()
    types = {r["event_type"] for r in sent}
    assert len(types) >= 72, sorted(types)
    assert len(got) == len(sent)
    assert by_id(got) == expected_by_id(sent)


def test_ours_to_edx_event_bus_kafka(kafka, tmp_path):
    exchange(kafka, False, tmp_path)


def test_edx_event_bus_kafka_to_ours(kafka, tmp_path):
    exchange(kafka, True, tmp_path)
