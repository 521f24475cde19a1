"""Django settings of the bench service of `django_bench.py`: the same
service on this package (BENCH_BUS=ours) or on the unmodified Python peer
(BENCH_BUS=peer), on Redis or Kafka (BENCH_BACKEND=redis|kafka). The broker
addresses come from the environment (EVENT_BUS_REDIS_CONNECTION_URL,
EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS, EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL);
BENCH_DJANGO_SETTINGS, a JSON object of setting names and values, adds or
overrides settings (to try a configuration)."""
import json
import os
import time

#: When this process read its settings (close to its start).
STARTED_AT = time.perf_counter()

SECRET_KEY = "benchmarks-only"
DEBUG = False
USE_TZ = True
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

BUS = os.environ.get("BENCH_BUS", "ours")
BACKEND = os.environ.get("BENCH_BACKEND", "redis")
if BUS not in ("ours", "peer") or BACKEND not in ("redis", "kafka"):
    raise ValueError(f"BENCH_BUS={BUS!r}, BENCH_BACKEND={BACKEND!r}: expected ours|peer and redis|kafka")

if BUS == "ours":
    INSTALLED_APPS = ["openedx_events", "openedx_event_bus", "bench_django"]
    EVENT_BUS_PRODUCER = "openedx_event_bus.create_producer"
    EVENT_BUS_CONSUMER = "openedx_event_bus.EventBusConsumer"
    EVENT_BUS_BACKEND = BACKEND
    EVENT_BUS_CONSUMER_START = "earliest"
elif BACKEND == "redis":
    INSTALLED_APPS = ["openedx_events", "edx_event_bus_redis", "bench_django"]
    EVENT_BUS_PRODUCER = "edx_event_bus_redis.create_producer"
    EVENT_BUS_CONSUMER = "edx_event_bus_redis.RedisEventConsumer"
else:
    INSTALLED_APPS = ["openedx_events", "edx_event_bus_kafka", "bench_django"]
    EVENT_BUS_PRODUCER = "edx_event_bus_kafka.create_producer"
    EVENT_BUS_CONSUMER = "edx_event_bus_kafka.KafkaEventConsumer"

EVENT_BUS_TOPIC_PREFIX = os.environ.get("EVENT_BUS_TOPIC_PREFIX", "bench")
EVENT_BUS_REDIS_CONNECTION_URL = os.environ.get("EVENT_BUS_REDIS_CONNECTION_URL", "redis://127.0.0.1:6379")
# Above the run size, so no entry is trimmed before it is read.
EVENT_BUS_REDIS_STREAM_MAX_LEN = int(os.environ.get("EVENT_BUS_REDIS_STREAM_MAX_LEN", "1000000"))
EVENT_BUS_REDIS_CONSUMER_POLL_TIMEOUT = 1
if BACKEND == "kafka":
    EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS = os.environ["EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS"]
    EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL = os.environ["EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL"]
    EVENT_BUS_KAFKA_CONSUMER_POLL_TIMEOUT = 0.25
# The peers' per-message audit log lines, off as in bench/python/settings.py.
EVENT_BUS_REDIS_AUDIT_LOGGING_ENABLED = False
EVENT_BUS_KAFKA_AUDIT_LOGGING_ENABLED = False

globals().update(json.loads(os.environ.get("BENCH_DJANGO_SETTINGS") or "{}"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
