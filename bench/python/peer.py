"""The Python peers' produce and end-to-end rates, on the same event the Rust
benchmark uses (course enrollment created, the events.jsonl sample).

    peer.py run N TOPIC       # consumer in this process, producer in a child
    peer.py produce N TOPIC   # (the child) produce N events, print the rate

Prints one JSON object: {"produce_rate": .., "e2e_rate": .., "events": N}.
BENCH_BACKEND=redis|kafka picks edx-event-bus-redis or edx-event-bus-kafka.
The consumer runs in the main thread: its timeouts use SIGALRM.

Kafka: the topic must exist (tansu creates none). The unmodified
KafkaEventConsumer sets no auto.offset.reset, so a new group would start at
the end and miss what the producer sent before the group's first
assignment; its group is given a committed offset 0 on every partition
first (consumer configuration is untouched)."""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django  # noqa: E402

django.setup()

from openedx_events.data import EventsMetadata  # noqa: E402
from openedx_events.event_bus import get_producer, make_single_consumer  # noqa: E402
from openedx_events.event_bus.avro.deserializer import AvroSignalDeserializer  # noqa: E402
from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals  # noqa: E402

EVENT_TYPE = "org.openedx.learning.course.enrollment.created.v1"


def sample():
    path = os.environ["BENCH_EVENTS_JSONL"]
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if rec["event_type"] == EVENT_TYPE:
                return rec["data"]
    raise SystemExit("no enrollment sample")


def produce(n, topic):
    load_all_signals()
    signal = OpenEdxPublicSignal.get_signal_by_type(EVENT_TYPE)
    data = AvroSignalDeserializer(signal).from_dict(sample())
    producer = get_producer()
    start = time.perf_counter()
    for _ in range(n):
        producer.send(signal=signal, topic=topic, event_key_field="enrollment.course.course_key",
                      event_data=data, event_metadata=EventsMetadata(event_type=EVENT_TYPE))
    if hasattr(producer, "prepare_for_shutdown"):
        producer.prepare_for_shutdown()
    elapsed = time.perf_counter() - start
    print(json.dumps({"produce_rate": n / elapsed}), flush=True)


def kafka_start_group_at_zero(topic, group):
    """Commit offset 0 on every partition of the topic for `group`, so the
    Python consumer (no auto.offset.reset) reads from the start."""
    from confluent_kafka import Consumer, TopicPartition  # pylint: disable=import-outside-toplevel
    from django.conf import settings  # pylint: disable=import-outside-toplevel
    from edx_event_bus_kafka.internal.config import get_full_topic  # pylint: disable=import-outside-toplevel

    full_topic = get_full_topic(topic)
    c = Consumer({"bootstrap.servers": settings.EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, "group.id": group,
                  "enable.auto.commit": False})
    try:
        meta = c.list_topics(full_topic, timeout=10).topics[full_topic]
        if meta.error is not None or not meta.partitions:
            raise SystemExit(f"topic {full_topic} is not there ({meta.error}): create it first")
        offsets = [TopicPartition(full_topic, p, 0) for p in sorted(meta.partitions)]
        c.assign(offsets)
        c.commit(offsets=offsets, asynchronous=False)
    finally:
        c.close()


def die_with_parent():
    """In the producer child (Linux): end when this process ends, so a killed
    benchmark leaves no producer behind waiting for a broker that is gone."""
    try:
        import ctypes  # pylint: disable=import-outside-toplevel
        import signal  # pylint: disable=import-outside-toplevel
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run(n, topic):
    load_all_signals()
    signal = OpenEdxPublicSignal.get_signal_by_type(EVENT_TYPE)
    backend = os.environ.get("BENCH_BACKEND", "redis")
    extra = {"consumer_name": "bench-peer"} if backend == "redis" else {}
    group = f"bench-peer-{topic}"
    if backend == "kafka":
        kafka_start_group_at_zero(topic, group)
    consumer = make_single_consumer(topic=topic, group_id=group, **extra)
    seen = {"n": 0, "done": None}

    def receiver(**kwargs):
        seen["n"] += 1
        if seen["n"] >= n:
            seen["done"] = time.perf_counter()
            consumer._shut_down()  # pylint: disable=protected-access

    signal.connect(receiver, weak=False, dispatch_uid="bench-peer")
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "produce", str(n), topic], stdout=subprocess.PIPE, text=True,
                             preexec_fn=die_with_parent)
    timer = threading.Timer(600, consumer._shut_down)  # pylint: disable=protected-access
    timer.daemon = True
    timer.start()
    consumer.consume_indefinitely()
    timer.cancel()
    out, _ = child.communicate()
    produced = json.loads(out.strip().splitlines()[-1])
    if seen["done"] is None:
        raise SystemExit(f"the Python consumer received {seen['n']} of {n}")
    print(json.dumps({"events": n, "produce_rate": produced["produce_rate"],
                      "e2e_rate": n / (seen["done"] - start)}))


if __name__ == "__main__":
    mode, count, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "produce":
        produce(count, name)
    else:
        run(count, name)
