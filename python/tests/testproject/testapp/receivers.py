"""
The test receiver: appends what it got (the event's data in openedx-events'
dict form, its metadata) to the JSON-lines file ``TESTAPP_RECORD``. With
``TESTAPP_FAIL_TYPE`` set, it raises for that event type. With
``TESTAPP_ORM`` set, it runs an ORM query first and records the database
backend's process id.
"""
import json
import os

from datetime import datetime
from uuid import UUID

import attr


class Refused(Exception):
    """The failure the test asked for."""


def as_record(signal, kwargs, metadata):
    data = {k: v for k, v in kwargs.items() if k in signal.init_data}
    return {"event_type": signal.event_type,
            "data": plain(data),
            "metadata": json.loads(metadata.to_json())}


def plain(v):
    """A value as JSON-able data that tells its type: attrs classes by name, bytes in hex."""
    if attr.has(type(v)):
        return {"__class__": type(v).__name__, **{a.name: plain(getattr(v, a.name)) for a in attr.fields(type(v))}}
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, datetime):
        return {"datetime": v.isoformat()}
    if isinstance(v, UUID):
        return {"uuid": str(v)}
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return {type(v).__name__: str(v)}


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
