"""
A mixed deployment on Redis: a service using this package and a service
using the unmodified edx-event-bus-redis exchange every signal both ways,
with equal data and metadata.
"""
from conftest import REDIS_URL, manage, read_lines, receive_and_compare, unique

COMMON = {"EVENT_BUS_REDIS_CONNECTION_URL": REDIS_URL, "EVENT_BUS_TOPIC_PREFIX": "mixed",
          # The peer blocks this long per read; its socket times out after 5 s.
          "EVENT_BUS_REDIS_CONSUMER_POLL_TIMEOUT": 1}
OURS = {**COMMON, "EVENT_BUS_BACKEND": "redis", "EVENT_BUS_PRODUCER": "openedx_event_bus.create_producer",
        "EVENT_BUS_CONSUMER": "openedx_event_bus.EventBusConsumer", "EVENT_BUS_CONSUMER_START": "earliest",
        "EVENT_BUS_CONSUMER_POLL_TIMEOUT": 0.2}
PEER = {**COMMON, "EVENT_BUS_PRODUCER": "edx_event_bus_redis.create_producer",
        "EVENT_BUS_CONSUMER": "edx_event_bus_redis.RedisEventConsumer"}


def exchange(producer_settings, consumer_settings, tmp_path, redis_client):
    client, created = redis_client
    topic = unique("mixed")
    stream = f"mixed-{topic}"
    created.extend([stream, f"{stream}-dlq"])
    # The group reads from the stream's start, whichever consumer joins it.
    client.xgroup_create(stream, "g1", id="0", mkstream=True)
    sent_file = tmp_path / "sent.jsonl"
    manage(["send_samples", "--out", str(sent_file), "--topic", topic, "--seed", "7"], producer_settings)
    types = receive_and_compare(read_lines(sent_file), topic, consumer_settings, tmp_path,
                                ["--extra", '{"consumer_name": "c1", "check_backlog": true}'],
                                peer_sent=producer_settings is PEER)
    assert len(types) >= 72, sorted(types)


def test_ours_to_edx_event_bus_redis(tmp_path, redis_client):
    exchange(OURS, PEER, tmp_path, redis_client)


def test_edx_event_bus_redis_to_ours(tmp_path, redis_client):
    exchange(PEER, OURS, tmp_path, redis_client)
