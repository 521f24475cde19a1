"""Django settings for running the Python peers (openedx-events,
edx-event-bus-redis, edx-event-bus-kafka) in the benchmarks."""
import os

SECRET_KEY = "benchmarks-only"
USE_TZ = True
INSTALLED_APPS = ["openedx_events", "edx_event_bus_redis", "edx_event_bus_kafka"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

BACKEND = os.environ.get("BENCH_BACKEND", "redis")
if BACKEND == "redis":
    EVENT_BUS_PRODUCER = "edx_event_bus_redis.create_producer"
    EVENT_BUS_CONSUMER = "edx_event_bus_redis.RedisEventConsumer"
else:
    EVENT_BUS_PRODUCER = "edx_event_bus_kafka.create_producer"
    EVENT_BUS_CONSUMER = "edx_event_bus_kafka.KafkaEventConsumer"
EVENT_BUS_REDIS_CONNECTION_URL = os.environ.get("EVENT_BUS_REDIS_CONNECTION_URL", "redis://127.0.0.1:6379")
EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = os.environ.get("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS")
EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = os.environ.get("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL")
EVENT_BUS_TOPIC_PREFIX = os.environ.get("EVENT_BUS_TOPIC_PREFIX") or None
EVENT_BUS_REDIS_STREAM_MAX_LEN = int(os.environ.get("EVENT_BUS_REDIS_STREAM_MAX_LEN", "10000"))
EVENT_BUS_REDIS_CONSUMER_POLL_TIMEOUT = 1
EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT = 0.25
EVENT_BUS_REDIS_AUDIT_LOGGING_ENABLED = False
EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
