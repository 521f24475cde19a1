"""``manage.py event_bus_dlq list|show|requeue``: the dead letters of a topic, as the CLI's ``event-bus dlq``."""
import json

from django.core.management.base import BaseCommand, CommandError

from openedx_event_bus import BusError, get_bus


class Command(BaseCommand):
    """List, show and requeue dead letters."""

    help = "Dead letters: list -t TOPIC [--limit N] | show -t TOPIC POSITION | requeue -t TOPIC -g GROUP [--limit N]"

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="one line per dead letter")
        listing.add_argument("-t", "--topic", required=True)
        listing.add_argument("--limit", type=int, default=None)
        listing.add_argument("--json", action="store_true", help="one JSON object per line")
        show = sub.add_parser("show", help="one dead letter with its headers and data")
        show.add_argument("-t", "--topic", required=True)
        show.add_argument("position")
        requeue = sub.add_parser("requeue", help="send dead letters back to their topic")
        requeue.add_argument("-t", "--topic", required=True)
        requeue.add_argument("-g", "--group", default="event-bus-requeue")
        requeue.add_argument("--limit", type=int, default=None)

    def handle(self, *args, **options):
        bus = get_bus()
        try:
            if options["action"] == "list":
                letters = bus.dlq_list(options["topic"], options["limit"])
                for d in letters:
                    if options["json"]:
                        self.stdout.write(json.dumps(d))
                    else:
                        self.stdout.write("\t".join(str(d[k] or "-") for k in
                                                    ("position", "reason", "attempts", "failed_at", "event_type", "id")))
                self.stderr.write(f"{len(letters)} dead letters in {bus.dead_letter_topic(options['topic'])}")
            elif options["action"] == "show":
                self.stdout.write(json.dumps(bus.dlq_show(options["topic"], options["position"]), indent=2))
            else:
                done = bus.dlq_requeue(options["topic"], options["group"], options["limit"])
                self.stdout.write(f"requeued {done['requeued']} dead letters from "
                                  f"{bus.dead_letter_topic(options['topic'])}")
                if done["skipped"]:
                    self.stderr.write(f"skipped {done['skipped']} messages that are not dead letters")
        except BusError as e:
            raise CommandError(str(e)) from e
