"""
The test receiver: appends what it got (the event's data in openedx-events'
dict form, its metadata) to the JSON-lines file ``TESTAPP_RECORD``. With
``TESTAPP_FAIL_TYPE`` set, it raises for that event type. With
``TESTAPP_ORM`` set, it runs an ORM query first and records the database
backend's process id.
"""
import json
import os

from openedx_events.event_bus.avro.serializer import AvroSignalSerializer


class Refused(Exception):
    """The failure the test asked for."""


def as_record(signal, kwargs, metadata):
    data = {k: v for k, v in kwargs.items() if k in signal.init_data}
    return {"event_type": signal.event_type,
            "data": json.loads(json.dumps(AvroSignalSerializer(signal).to_dict(data), default=repr)),
            "metadata": json.loads(metadata.to_json())}


def record(sender, signal, metadata=None, from_event_bus=False, **kwargs):  # pylint: disable=unused-argument
    path = os.environ.get("TESTAPP_RECORD")
    if not path or not from_event_bus:
        return
    line = as_record(signal, kwargs, metadata)
    if os.environ.get("TESTAPP_FAIL_TYPE") == signal.event_type:
        raise Refused(f"refusing {metadata.id}")
    if os.environ.get("TESTAPP_ORM"):
        from django.contrib.contenttypes.models import ContentType
        from django.db import connection
        try:
            line["orm_count"] = ContentType.objects.count()
            line["backend_pid"] = connection.connection.info.backend_pid
        except Exception as e:
            line["orm_error"] = repr(e)
            _append(path, line)
            raise
    _append(path, line)


def _append(path, line):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
