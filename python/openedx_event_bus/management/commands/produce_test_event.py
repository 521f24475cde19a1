"""``manage.py produce_test_event -t TOPIC -s SIGNAL -d DATA_JSON -k KEY_FIELD``, as the peers' ``produce_event``."""
import json

from django.core.management.base import BaseCommand, CommandError
from openedx_events.event_bus.avro.deserializer import AvroSignalDeserializer
from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals

from openedx_event_bus.producer import create_producer


class Command(BaseCommand):
    """Send one event of any signal to a topic."""

    help = "Produce one event to the event bus, e.g. -t user-login -s org.openedx.learning.auth.session.login.completed.v1 -d '{\"user\": {...}}' -k user.id"

    def add_arguments(self, parser):
        parser.add_argument("-t", "--topic", required=True, help="Topic (without prefix)")
        parser.add_argument("-s", "--signal", required=True, help="Event type, or the dotted path of a signal")
        parser.add_argument("-d", "--data", required=True, help="The event data as JSON, in its Avro dict form")
        parser.add_argument("-k", "--key-field", default=None, help="Period-delimited path of the key field")

    def handle(self, *args, **options):
        load_all_signals()
        try:
            signal = OpenEdxPublicSignal.get_signal_by_type(options["signal"])
        except KeyError:
            from django.utils.module_loading import import_string  # pylint: disable=import-outside-toplevel
            try:
                signal = import_string(options["signal"])
            except ImportError as e:
                raise CommandError(f"unknown signal {options['signal']!r}") from e
        try:
            data = AvroSignalDeserializer(signal).from_dict(json.loads(options["data"]))
        except Exception as e:  # pylint: disable=broad-except
            raise CommandError(f"the data does not fit {signal.event_type}: {e!r}") from e
        from openedx_events.data import EventsMetadata  # pylint: disable=import-outside-toplevel
        producer = create_producer()
        before = producer.failed
        producer.send(signal=signal, topic=options["topic"], event_key_field=options["key_field"], event_data=data,
                      event_metadata=EventsMetadata(event_type=signal.event_type, minorversion=signal.minor_version))
        producer.prepare_for_shutdown()
        if producer.failed != before:
            raise CommandError("the event was not sent (see the log line above)")
        self.stdout.write(f"sent one {signal.event_type} event to {options['topic']}")
