"""
Minimal Django settings for driving the unmodified edx-event-bus-redis 1.1.2
and openedx-events 11.2.0 from the cross-language tests.

The Rust test passes EVENT_BUS_REDIS_CONNECTION_URL and EVENT_BUS_TOPIC_PREFIX
in the environment.
"""
import os

SECRET_KEY = "cross-language-tests-only"
USE_TZ = True
INSTALLED_APPS = ["openedx_events", "edx_event_bus_redis"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

EVENT_BUS_PRODUCER = "edx_event_bus_redis.create_producer"
EVENT_BUS_CONSUMER = "edx_event_bus_redis.RedisEventConsumer"
EVENT_BUS_REDIS_CONNECTION_URL = os.environ["EVENT_BUS_REDIS_CONNECTION_URL"]
EVENT_BUS_TOPIC_PREFIX = os.environ.get("EVENT_BUS_TOPIC_PREFIX") or None
# Seconds; the consumer blocks this long per XREADGROUP, so a stop request is
# seen within a second.
EVENT_BUS_REDIS_CONSUMER_POLL_TIMEOUT = 1
EVENT_BUS_REDIS_CONSUMER_POLL_FAILURE_SLEEP = 0.2
EVENT_BUS_REDIS_AUDIT_LOGGING_ENABLED = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
