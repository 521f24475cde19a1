"""
Rust -> Python: run the unmodified edx-event-bus-redis RedisEventConsumer
until it has received EXPECTED events, recording each one.

Usage: consume.py TOPIC GROUP CONSUMER_NAME EXPECTED TIMEOUT_SECONDS

Prints "READY" once the consumer exists (its group is created and, as
Python does by default, moved to "$"), so the caller produces only then.
Then prints one JSON line per event received: {"event_type", "metadata"
(EventsMetadata.to_json()), "data" (AvroSignalSerializer.to_dict of the
signal's kwargs), "from_event_bus"}, and at the end a summary line
{"done": true, "received": n, "pending": XPENDING count of the group}.

The loop runs in the main thread: the consumer's SIGALRM timeouts only work
there.
"""
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from edx_event_bus_redis import RedisEventConsumer  # noqa: E402
from openedx_events.event_bus.avro.serializer import AvroSignalSerializer  # noqa: E402
from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals  # noqa: E402


def main():
    topic, group, consumer_name = sys.argv[1], sys.argv[2], sys.argv[3]
    expected, timeout = int(sys.argv[4]), float(sys.argv[5])
    load_all_signals()
    consumer = RedisEventConsumer(topic=topic, group_id=group, consumer_name=consumer_name)
    received = []

    def receiver(sender, signal, **kwargs):  # pylint: disable=unused-argument
        metadata = kwargs["metadata"]
        event_data = {key: kwargs[key] for key in signal.init_data}
        print(json.dumps({
            "event_type": signal.event_type,
            "metadata": metadata.to_json(),
            "data": AvroSignalSerializer(signal).to_dict(event_data),
            "from_event_bus": kwargs.get("from_event_bus"),
        }), flush=True)
        received.append(metadata.id)
        if len(received) >= expected:
            consumer._shut_down()  # pylint: disable=protected-access

    for signal in OpenEdxPublicSignal.all_events():
        signal.connect(receiver, weak=False, dispatch_uid=f"cross-language-{signal.event_type}")

    timer = threading.Timer(timeout, consumer._shut_down)  # pylint: disable=protected-access
    timer.daemon = True
    timer.start()
    print("READY", flush=True)
    consumer.consume_indefinitely()
    timer.cancel()

    full_topic = consumer.full_topic
    pending = redis.Redis.from_url(settings.EVENT_BUS_REDIS_CONNECTION_URL).xpending(full_topic, group)
    print(json.dumps({"done": True, "received": len(received), "pending": pending["pending"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
