"""A Django service on this package vs the same service on the unmodified
Python peer (edx-event-bus-redis or edx-event-bus-kafka), on the same
broker and the same event (course enrollment created). Run with the venv's
interpreter (scripts/python-package.sh prints it); bench/compare.py django
drives it and prints the table.

    django_bench.py run [--backend redis|kafka] [--events N] [--buses ours,peer]
    django_bench.py produce N TOPIC    # (a child) in a Django process

`run` prints one JSON object, per bus: `produce` (N `producer.send` calls
from a Django process, then `prepare_for_shutdown`) and `consume`
(openedx-events' `manage.py consume_events` over the N events already in
the topic, from the start, until a receiver has counted them all), each
with its wall seconds, the CPU seconds of the process (getrusage) and of the
broker (/proc).

The topic gets `EVENT_BUS_TOPIC_PREFIX` ("bench"); Redis streams are
deleted at the end. Kafka starts tansu (in-memory storage) and an in-memory
schema registry double, fresh for each bus, with the topic created
beforehand (3 partitions).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
EVENT_TYPE = "org.openedx.learning.course.enrollment.created.v1"
KEY_FIELD = "enrollment.course.course_key"
PREFIX = "bench"
GROUP = "g1"
KAFKA_PARTITIONS = 3
CONSUME_PATIENCE = 600


def rusage_cpu(who):
    u = resource.getrusage(who)
    return u.ru_utime + u.ru_stime


def proc_cpu(pid):
    """CPU seconds (user + system) of a live process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, TypeError):
        return None


# --------------------------------------------------------------------------
# The producer side: runs in a child process with the bus's settings.

def enrollment():
    """The event data of one enrollment, as the signal's attrs objects."""
    from datetime import datetime, timezone  # pylint: disable=import-outside-toplevel

    from opaque_keys.edx.keys import CourseKey  # pylint: disable=import-outside-toplevel
    from openedx_events.learning.data import (  # pylint: disable=import-outside-toplevel
        CourseData, CourseEnrollmentData, UserData, UserPersonalData,
    )
    user = UserData(id=42, is_active=True,
                    pii=UserPersonalData(username="bench-learner", email="learner@example.com", name="Bench Learner"))
    course = CourseData(course_key=CourseKey.from_string("course-v1:BenchX+DJ101+2026"),
                        display_name="Benchmarks with Django",
                        start=datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc),
                        end=datetime(2026, 6, 30, 17, 0, tzinfo=timezone.utc))
    return CourseEnrollmentData(user=user, course=course, mode="audit", is_active=True,
                                creation_date=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), created_by=None)


def produce(n, topic):
    """Send N enrollments with the configured producer; print the JSON result."""
    sys.path.insert(0, HERE)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")
    import django  # pylint: disable=import-outside-toplevel
    django.setup()
    from openedx_events.data import EventsMetadata  # pylint: disable=import-outside-toplevel
    from openedx_events.event_bus import get_producer  # pylint: disable=import-outside-toplevel
    from openedx_events.learning.signals import COURSE_ENROLLMENT_CREATED  # pylint: disable=import-outside-toplevel

    producer = get_producer()
    if producer is None:
        raise SystemExit("no producer: check EVENT_BUS_PRODUCER and the broker settings")
    data = {"enrollment": enrollment()}
    cpu0, children0 = rusage_cpu(resource.RUSAGE_SELF), rusage_cpu(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for _ in range(n):
        producer.send(signal=COURSE_ENROLLMENT_CREATED, topic=topic, event_key_field=KEY_FIELD, event_data=data,
                      event_metadata=EventsMetadata(event_type=EVENT_TYPE, minorversion=0))
    shutdown = getattr(producer, "prepare_for_shutdown", None)
    if shutdown is not None:
        shutdown()
    seconds = time.perf_counter() - start
    cpu = rusage_cpu(resource.RUSAGE_SELF) - cpu0 + rusage_cpu(resource.RUSAGE_CHILDREN) - children0
    result = {"events": n, "seconds": seconds, "cpu": cpu, "class": f"{type(producer).__module__}.{type(producer).__name__}"}
    for name in ("sent", "failed"):
        if hasattr(producer, name):
            result[name] = getattr(producer, name)
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------
# Kafka: tansu and the schema registry double of the package's tests.

sys.path.insert(0, os.path.join(HERE, "..", "..", "python", "tests"))
from brokers import Registry, Tansu  # noqa: E402  pylint: disable=wrong-import-position


class Kafka:
    """tansu with in-memory storage on a free port, and a registry double."""

    def __init__(self):
        self.broker = Tansu()
        self.registry = Registry()
        self.proc = self.broker.proc

    def settings(self):
        return {"EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
                "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL": self.registry.url}

    def create_topic(self, name):
        self.broker.create_topics(name, partitions=KAFKA_PARTITIONS)

    def start_group_at_zero(self, topic, group):
        self.broker.start_group_at_zero(topic, group, partitions=KAFKA_PARTITIONS)

    def stop(self):
        self.registry.stop()
        self.broker.stop()


# --------------------------------------------------------------------------
# The driver.

def redis_client(url):
    import redis  # pylint: disable=import-outside-toplevel
    return redis.Redis.from_url(url)


def redis_server_pid(url):
    try:
        pid = redis_client(url).info("server").get("process_id")
    except Exception:  # pylint: disable=broad-except
        return None
    return pid if pid and os.path.exists(f"/proc/{pid}") else None


def child_env(bus, backend, broker):
    env = {**os.environ, **broker, "BENCH_BUS": bus, "BENCH_BACKEND": backend, "EVENT_BUS_TOPIC_PREFIX": PREFIX,
           "DJANGO_SETTINGS_MODULE": "django_settings"}
    env["PYTHONPATH"] = HERE + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_child(cmd, env, what, timeout):
    """Run a child; return its stdout, or exit with the end of its error output."""
    try:
        p = subprocess.run(cmd, env=env, cwd=HERE, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        tail = "\n".join((e.stderr or "").strip().splitlines()[-15:]) if isinstance(e.stderr, str) else ""
        raise SystemExit(f"django_bench.py: {what} did not finish within {timeout} s:\n{tail}") from e
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"django_bench.py: {what} failed ({p.returncode}):\n{tail}")
    return p


def broker_meter(pid):
    start = proc_cpu(pid) if pid else None

    def stop():
        now = proc_cpu(pid) if pid else None
        return None if start is None or now is None else now - start
    return stop


def bench_bus(bus, backend, n, broker, broker_pid, kafka=None):
    topic = f"dj-{bus}-{uuid.uuid4().hex[:8]}"
    full_topic = f"{PREFIX}-{topic}"
    env = child_env(bus, backend, broker)
    if kafka is not None:
        kafka.create_topic(full_topic)

    meter = broker_meter(broker_pid)
    p = run_child([sys.executable, os.path.abspath(__file__), "produce", str(n), topic], env, f"{bus} produce",
                  CONSUME_PATIENCE)
    produced = json.loads(p.stdout.strip().splitlines()[-1])
    produced["broker_cpu"] = meter()
    if produced.get("failed"):
        raise SystemExit(f"django_bench.py: {bus} producer failed {produced['failed']} sends:\n{p.stderr[-3000:]}")

    if backend == "redis":
        extra = {"consumer_name": "c1", "check_backlog": True}
        if bus == "peer":
            redis_client(broker["EVENT_BUS_REDIS_CONNECTION_URL"]).xgroup_create(full_topic, GROUP, id="0",
                                                                                 mkstream=True)
    else:
        extra = {}
        if bus == "peer":
            kafka.start_group_at_zero(full_topic, GROUP)

    with tempfile.TemporaryDirectory() as d:
        result = os.path.join(d, "result.json")
        env = {**env, "BENCH_DJANGO_COUNT": str(n), "BENCH_DJANGO_RESULT": result}
        meter = broker_meter(broker_pid)
        cmd = [sys.executable, os.path.join(HERE, "manage.py"), "consume_events", "-t", topic, "-g", GROUP]
        if extra:
            cmd += ["--extra", json.dumps(extra)]
        p = run_child(cmd, env, f"{bus} consume_events", CONSUME_PATIENCE)
        broker_cpu = meter()
        if not os.path.exists(result):
            tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-15:])
            raise SystemExit(f"django_bench.py: {bus} consume_events stopped before {n} events:\n{tail}")
        with open(result, encoding="utf-8") as f:
            consumed = json.load(f)
    consumed["broker_cpu"] = broker_cpu

    if backend == "redis":
        redis_client(broker["EVENT_BUS_REDIS_CONNECTION_URL"]).unlink(full_topic, f"{full_topic}-dlq")
    return {"topic": full_topic, "produce": produced, "consume": consumed}


def versions():
    import importlib.metadata as m  # pylint: disable=import-outside-toplevel
    out = {}
    for name in ["openedx-event-bus", "openedx-events", "edx-event-bus-redis", "edx-event-bus-kafka",
                 "confluent-kafka", "Django"]:
        try:
            out[name] = m.version(name)
        except m.PackageNotFoundError:
            out[name] = None
    return out


def run(backend, n, buses):
    out = {"backend": backend, "events": n, "versions": versions()}
    for bus in buses:
        if backend == "redis":
            url = os.environ.get("EVENT_BUS_REDIS_CONNECTION_URL", "redis://127.0.0.1:6379")
            out[bus] = bench_bus(bus, backend, n, {"EVENT_BUS_REDIS_CONNECTION_URL": url}, redis_server_pid(url))
        else:
            # A fresh broker per bus, so neither pays for what the other stored.
            kafka = Kafka()
            try:
                out[bus] = bench_bus(bus, backend, n, kafka.settings(), kafka.proc.pid, kafka)
            finally:
                kafka.stop()
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("run")
    r.add_argument("--backend", choices=["redis", "kafka"], default="redis")
    r.add_argument("--events", type=int, default=5000)
    r.add_argument("--buses", default="ours,peer")
    p = sub.add_parser("produce")
    p.add_argument("events", type=int)
    p.add_argument("topic")
    a = ap.parse_args()
    if a.mode == "produce":
        produce(a.events, a.topic)
    else:
        run(a.backend, a.events, [b for b in a.buses.split(",") if b])


if __name__ == "__main__":
    main()
