"""
Rust -> Python: run the unmodified KafkaEventConsumer on a topic, with a
receiver on every signal writing what it got, one JSON line per event:
{"event_type", "metadata": <EventsMetadata.to_json()>, "data": <AvroSignalSerializer.to_dict()>}.

Usage: consume_samples.py BASE_TOPIC GROUP OUTPUT_JSONL

Runs until killed (the Rust test stops it once every event arrived and the
group's committed offsets reached the end of each partition).
"""
import json
import sys

from interop_common import OpenEdxPublicSignal

from edx_event_bus_kafka import KafkaEventConsumer
from openedx_events.event_bus.avro.serializer import AvroSignalSerializer


def main():
    topic, group, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
    out = open(out_path, "a", encoding="utf-8")

    def receiver(sender, signal, **kwargs):  # pylint: disable=unused-argument
        metadata = kwargs["metadata"]
        data = {name: kwargs[name] for name in signal.init_data}
        out.write(json.dumps({
            "event_type": signal.event_type,
            "metadata": json.loads(metadata.to_json()),
            "data": AvroSignalSerializer(signal).to_dict(data),
            "from_event_bus": kwargs.get("from_event_bus"),
        }) + "\n")
        out.flush()

    signals = OpenEdxPublicSignal.all_events()
    for signal in signals:
        signal.connect(receiver, weak=False, dispatch_uid=f"interop-{signal.event_type}")
    print(f"listening on {len(signals)} signals", file=sys.stderr, flush=True)
    KafkaEventConsumer(topic=topic, group_id=group).consume_indefinitely()


if __name__ == "__main__":
    main()
