"""The Django app: start-up validation of the settings and the management commands."""
import logging

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


class OpenedxEventBusConfig(AppConfig):
    """``openedx_event_bus`` in ``INSTALLED_APPS``."""

    name = "openedx_event_bus"
    verbose_name = "Open edX event bus"

    def ready(self):
        """An invalid setting stops the start-up, naming the key; a broker that is down does not."""
        from openedx_event_bus import BusError, ConfigError, get_bus  # pylint: disable=import-outside-toplevel
        from django.conf import settings  # pylint: disable=import-outside-toplevel
        if not getattr(settings, "EVENT_BUS_BACKEND", None):
            return
        try:
            get_bus()
        except ConfigError as e:
            raise ImproperlyConfigured(str(e)) from e
        except BusError as e:
            logger.warning("The event bus is not reachable at start-up (events are retried when sent): %s", e)
