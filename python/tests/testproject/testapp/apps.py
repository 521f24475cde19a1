"""The test service's app: a receiver on every signal, and a signal of its own."""
from django.apps import AppConfig


class TestappConfig(AppConfig):
    name = "testapp"

    def ready(self):
        from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals
        from testapp import receivers, signals  # noqa: F401  (defines the plugin signal)
        load_all_signals()
        for signal in OpenEdxPublicSignal.all_events():
            signal.connect(receivers.record, dispatch_uid=f"testapp.record.{signal.event_type}")
