"""
Minimal Django settings for driving the unmodified edx-event-bus-kafka
package from the cross-language tests (tests/python_interop.rs).

Everything comes from the environment set by the Rust test:
KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, EVENT_BUS_TOPIC_PREFIX.
"""
import os

SECRET_KEY = "not-secret-test-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "openedx_events",
    "edx_event_bus_kafka",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
    }
}
LOGGING_CONFIG = None

EVENTS_SERVICE_NAME = "python-interop"
EVENT_BUS_PRODUCER = "edx_event_bus_kafka.create_producer"
EVENT_BUS_CONSUMER = "edx_event_bus_kafka.KafkaEventConsumer"
EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = os.environ["SCHEMA_REGISTRY_URL"]
EVENT_BUS_TOPIC_PREFIX = os.environ.get("EVENT_BUS_TOPIC_PREFIX", "")
EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT = 0.5
