"""The bench service's app config: connects the counting receiver."""
from django.apps import AppConfig


class BenchDjangoConfig(AppConfig):
    """``bench_django`` in ``INSTALLED_APPS``."""

    name = "bench_django"

    def ready(self):
        from openedx_events.learning.signals import COURSE_ENROLLMENT_CREATED  # pylint: disable=import-outside-toplevel

        from bench_django import receivers  # pylint: disable=import-outside-toplevel
        COURSE_ENROLLMENT_CREATED.connect(receivers.count, dispatch_uid="bench_django.count")
