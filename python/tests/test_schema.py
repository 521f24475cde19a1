"""Every signal of openedx-events, and one defined at run time, derive the schema openedx-events derives."""
import json
import os
import sys

import django
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "testproject"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
django.setup()

from openedx_events.event_bus.avro.serializer import AvroSignalSerializer  # noqa: E402
from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals  # noqa: E402

from openedx_event_bus import _core  # noqa: E402
from openedx_event_bus.signals import describe_signal  # noqa: E402

load_all_signals()
SIGNALS = sorted(OpenEdxPublicSignal.all_events(), key=lambda s: s.event_type)


def test_every_signal_is_there():
    assert len(SIGNALS) >= 73, [s.event_type for s in SIGNALS]
    assert "org.example.testapp.badge.awarded.v1" in {s.event_type for s in SIGNALS}


@pytest.mark.parametrize("signal", SIGNALS, ids=lambda s: s.event_type)
def test_derived_schema_equals_openedx_events(signal):
    try:
        expected = AvroSignalSerializer(signal).schema_string()
    except TypeError:
        # openedx-events cannot put it on the bus (a BinaryIO field): nor can the core.
        with pytest.raises(_core.BusError):
            _core.derive_schema(json.dumps(describe_signal(signal)))
        return
    got = _core.derive_schema(json.dumps(describe_signal(signal)))
    assert json.loads(got) == json.loads(expected)
    assert got == expected


def test_settings_errors_name_the_key():
    with pytest.raises(_core.ConfigError) as e:
        _core.Bus(json.dumps({"EVENT_BUS_BACKEND": "redis", "EVENT_BUS_REDIS_CONNECTION_URL": "http://nowhere"}))
    assert e.value.key == "EVENT_BUS_REDIS_CONNECTION_URL"
    with pytest.raises(_core.ConfigError) as e:
        _core.Bus(json.dumps({"EVENT_BUS_BACKEND": "carrier-pigeon"}))
    assert e.value.key == "EVENT_BUS_BACKEND"
    assert "redis" in str(e.value)
    with pytest.raises(_core.ConfigError) as e:
        _core.Bus(json.dumps({"EVENT_BUS_BACKEND": "memory", "EVENT_BUS_RETRY_MAX_ATTEMPTS": "many"}))
    assert e.value.key == "EVENT_BUS_RETRY_MAX_ATTEMPTS"
