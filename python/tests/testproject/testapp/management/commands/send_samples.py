"""
``manage.py send_samples --out FILE [--per-type N] [--seed S] [--types a,b]
[--topic T]``: send N generated events of every signal through the
configured producer (``openedx_events.event_bus.get_producer()``, whichever
implementation the settings name), each to topic T (default: the event
type), keyed by nothing; write what was sent as JSON lines.
"""
import json

from django.core.management.base import BaseCommand
from openedx_events.data import EventsMetadata
from openedx_events.event_bus import get_producer
from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals

from testapp import receivers, samples


class Command(BaseCommand):
    def add_arguments(self, parser):
        parser.add_argument("--out", required=True)
        parser.add_argument("--per-type", type=int, default=2)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--types", default=None)
        parser.add_argument("--topic", default=None)

    def handle(self, *args, **options):
        load_all_signals()
        producer = get_producer()
        rng = samples.rng_for(options["seed"])
        wanted = set(options["types"].split(",")) if options["types"] else None
        sent = 0
        with open(options["out"], "w", encoding="utf-8") as out:
            for signal in sorted(OpenEdxPublicSignal.all_events(), key=lambda s: s.event_type):
                if wanted is not None and signal.event_type not in wanted:
                    continue
                for _ in range(options["per_type"]):
                    try:
                        data = samples.event_data(signal, rng)
                    except samples.CannotGenerate as e:
                        self.stderr.write(f"skipped {signal.event_type}: {e}")
                        break
                    metadata = EventsMetadata(event_type=signal.event_type, minorversion=signal.minor_version)
                    producer.send(signal=signal, topic=options["topic"] or signal.event_type,
                                  event_key_field=None, event_data=data, event_metadata=metadata)
                    out.write(json.dumps(receivers.as_record(signal, data, metadata)) + "\n")
                    sent += 1
        if hasattr(producer, "prepare_for_shutdown"):
            producer.prepare_for_shutdown()
        self.stdout.write(f"sent {sent}")
