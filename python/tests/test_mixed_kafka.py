"""
A mixed deployment on Kafka (tansu, with the schema registry double): a
service using this package and a service using the unmodified
edx-event-bus-kafka exchange every keyable signal both ways, with equal data
and metadata. Both sides register their schemas in the same registry.
"""
from conftest import manage, read_lines, receive_and_compare, unique


def settings(kafka):
    broker, registry = kafka
    common = {"EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL": registry.url,
              "EVENT_BUS_TOPIC_PREFIX": "mixed", "EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT": 0.5}
    ours = {**common, "EVENT_BUS_BACKEND": "kafka", "EVENT_BUS_PRODUCER": "openedx_event_bus.create_producer",
            "EVENT_BUS_CONSUMER": "openedx_event_bus.EventBusConsumer", "EVENT_BUS_CONSUMER_START": "earliest"}
    peer = {**common, "EVENT_BUS_PRODUCER": "edx_event_bus_kafka.create_producer",
            "EVENT_BUS_CONSUMER": "edx_event_bus_kafka.KafkaEventConsumer"}
    return ours, peer


def exchange(kafka, producer_is_peer, tmp_path):
    ours, peer = settings(kafka)
    producer_settings, consumer_settings = (peer, ours) if producer_is_peer else (ours, peer)
    topic = unique("mixed")
    full_topic = f"mixed-{topic}"
    kafka[0].create_topics(full_topic, f"{full_topic}-dlq")
    kafka[0].start_group_at_zero(full_topic, "g1")
    sent_file = tmp_path / "sent.jsonl"
    manage(["send_samples", "--out", str(sent_file), "--topic", topic, "--seed", "11", "--keyed"], producer_settings)
    types = receive_and_compare(read_lines(sent_file), topic, consumer_settings, tmp_path, peer_sent=producer_is_peer)
    assert len(types) >= 72, sorted(types)


def test_ours_to_edx_event_bus_kafka(kafka, tmp_path):
    exchange(kafka, False, tmp_path)


def test_edx_event_bus_kafka_to_ours(kafka, tmp_path):
    exchange(kafka, True, tmp_path)
