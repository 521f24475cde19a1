"""
Probes of two pulsar-lite defects, with the official Python client only (no
pulsar-rs, no proxy).

1. On a Key_Shared subscription a message is delivered at
most twice. After one redelivery (by a negative ack or by its consumer
closing), a further nack or close never brings it back. The same steps on a
Shared subscription redeliver every time.

2. (`concurrent` mode) Key_Shared dispatch stalls when several Key_Shared
topics are consumed at once: 6 topics, 10 producers x 100 messages each,
one consumer per topic; it prints how many of the 1000 messages each
consumer got within 15 s, how long a get_last_message_id took after the
50th, and how many of the 10 producers timed out sending. Shared
subscriptions in the same run get 1000 each at once.

Usage: key_shared_redelivery_probe.py URL [concurrent]
Prints one JSON line: {"Shared": [...], "KeyShared": [...]}, for each the
number of messages (of 3) each consumer received in turn while three
consumers, one after the other, receive without acknowledging and close,
then a fourth acknowledges. A correct broker gives [3, 3, 3, 3] for both.
Used by tests/conformance.rs (`pulsar_lite_key_shared_redelivers_at_most_once`).
"""
import json
import logging
import sys
import threading
import time
import uuid

import pulsar


def rounds(client, consumer_type):
    topic = f"persistent://public/default/probe-{uuid.uuid4().hex[:12]}"
    producer = client.create_producer(topic, batching_enabled=False)
    for i in range(3):
        producer.send(bytes([i]), partition_key=f"k{i}")
    producer.close()
    counts = []
    for r in range(4):
        consumer = client.subscribe(
            topic,
            "probe",
            consumer_type=consumer_type,
            initial_position=pulsar.InitialPosition.Earliest,
        )
        got = 0
        deadline = time.time() + 1.5
        while time.time() < deadline and got < 3:
            try:
                msg = consumer.receive(timeout_millis=200)
            except pulsar.Timeout:
                continue
            got += 1
            if r == 3:
                consumer.acknowledge(msg)
        counts.append(got)
        consumer.close()
    return counts


def concurrent(url, consumer_type, topics=6):
    results = {}

    def one(idx):
        client = pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
        topic = f"persistent://public/default/probe-concurrent-{uuid.uuid4().hex[:12]}"
        consumer = client.subscribe(
            topic, "probe", consumer_type=consumer_type, initial_position=pulsar.InitialPosition.Earliest
        )

        send_timeouts = []

        def publish():
            c = pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
            try:
                p = c.create_producer(topic, batching_enabled=False)
                for i in range(100):
                    p.send(b"x", partition_key=f"k{i % 10}")
                p.close()
            except pulsar.Timeout:
                send_timeouts.append(1)
            finally:
                try:
                    c.close()
                except pulsar.PulsarException:
                    pass

        producers = [threading.Thread(target=publish) for _ in range(10)]
        for t in producers:
            t.start()
        for t in producers:
            t.join()
        got, last_id = 0, None
        start = time.time()
        while got < 1000 and time.time() - start < 15:
            try:
                msg = consumer.receive(timeout_millis=500)
            except pulsar.Timeout:
                continue
            got += 1
            consumer.acknowledge(msg)
            if got == 50:
                t0 = time.time()
                try:
                    consumer.get_last_message_id()
                    last_id = round(time.time() - t0, 3)
                except Exception as e:  # pylint: disable=broad-except
                    last_id = f"error: {e}"
        results[idx] = {
            "received": got,
            "get_last_message_id_seconds": last_id,
            "producers_timed_out": len(send_timeouts),
        }
        try:
            client.close()
        except pulsar.PulsarException:
            pass

    threads = [threading.Thread(target=one, args=(i,)) for i in range(topics)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[i] for i in range(topics)]


def main():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if len(sys.argv) > 2 and sys.argv[2] == "concurrent":
        print(json.dumps({
            "Shared": concurrent(sys.argv[1], pulsar.ConsumerType.Shared),
            "KeyShared": concurrent(sys.argv[1], pulsar.ConsumerType.KeyShared),
        }), flush=True)
        return
    client = pulsar.Client(sys.argv[1], logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    result = {
        "Shared": rounds(client, pulsar.ConsumerType.Shared),
        "KeyShared": rounds(client, pulsar.ConsumerType.KeyShared),
    }
    client.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
