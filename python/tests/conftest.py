"""
Helpers of the package's tests: Django services of the test project
(`testproject/`) run as separate processes with the settings a test gives,
as two services of a deployment would.
"""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from brokers import PulsarLite, Registry, Tansu

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "testproject"
REDIS_URL = os.environ.get("EVENT_BUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unique(name):
    return f"{name}-{uuid.uuid4().hex[:10]}"


def service_env(settings, **extra):
    env = dict(os.environ)
    env["TEST_EVENT_BUS_SETTINGS"] = json.dumps(settings)
    env["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    env["PYTHONPATH"] = str(PROJECT)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def manage(args, settings, timeout=120, check=True, **extra):
    """Run one management command of a service to completion."""
    p = subprocess.run([sys.executable, str(PROJECT / "manage.py"), *args], env=service_env(settings, **extra),
                       capture_output=True, text=True, timeout=timeout, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


class Service:
    """A long-running management command (a consumer), its output in a file."""

    def __init__(self, args, settings, log_path, **extra):
        self.log_path = log_path
        self.log = open(log_path, "w", encoding="utf-8")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, str(PROJECT / "manage.py"), *args], env=service_env(settings, **extra),
            stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def output(self):
        if not self.log.closed:
            self.log.flush()
        return Path(self.log_path).read_text(encoding="utf-8")

    def stop(self, timeout=30):
        """SIGTERM; the service must exit by itself, with status 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"the service did not stop within {timeout} s of SIGTERM:\n{self.output()}")
        self.log.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def read_lines(path):
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def wait_for_lines(path, n, service=None, patience=90):
    """The records of `path` once there are at least `n` (fails after `patience` s)."""
    deadline = time.monotonic() + patience
    while True:
        lines = read_lines(path)
        if len(lines) >= n:
            return lines
        if service is not None and service.proc.poll() is not None:
            raise AssertionError(f"the service exited ({service.proc.returncode}) with {len(lines)} of {n}:\n"
                                 f"{service.output()}")
        if time.monotonic() > deadline:
            out = service.output() if service is not None else ""
            raise AssertionError(f"{len(lines)} of {n} records in {patience} s\n{out[-5000:]}")
        time.sleep(0.1)


def by_id(records):
    """Records by event id, each as (event type, data, metadata)."""
    return {r["metadata"]["id"]: (r["event_type"], r["data"], r["metadata"]) for r in records}


def expected_by_id(sent):
    """What the receivers must get for what was sent: the data as openedx-events' own
    round trip gives it back (see send_samples)."""
    return {r["metadata"]["id"]: (r["event_type"], r["expected"], r["metadata"]) for r in sent}


@pytest.fixture
def redis_client():
    import redis  # pylint: disable=import-outside-toplevel
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as e:
        pytest.fail(f"these tests need Redis at {REDIS_URL} (the machine runs one on 6379; "
                    f"or set EVENT_BUS_TEST_REDIS_URL): {e}")
    created = []
    yield client, created
    for key in created:
        client.delete(key)


@pytest.fixture(scope="module")
def kafka():
    """tansu and the schema registry double, for one test module."""
    broker, registry = Tansu(), Registry()
    yield broker, registry
    broker.stop()
    registry.stop()


@pytest.fixture(scope="module")
def pulsar():
    """pulsar-lite behind its checksum-restoring proxy, for one test module."""
    broker = PulsarLite()
    yield broker
    broker.stop()


def receive_and_compare(sent, topic, consumer_settings, tmp_path, consumer_args=(), peer_sent=False):
    """Run a consumer service on `topic` until it received as many events as were `sent`; every event
    arrives once, with the data and metadata expected. `peer_sent`: a Python peer sent them, which logs and
    drops what openedx-events' serializer cannot encode (bytes fields). Returns the types received."""
    if peer_sent:
        sent = [r for r in sent if r["python_serializable"]]
    got_file = tmp_path / "got.jsonl"
    consumer = Service(["consume_events", "-t", topic, "-g", "g1", *consumer_args], consumer_settings,
                       tmp_path / "consumer.log", TESTAPP_RECORD=got_file)
    try:
        got = wait_for_lines(got_file, len(sent), consumer)
    finally:
        consumer.kill()
    assert len(got) == len(sent)
    assert by_id(got) == expected_by_id(sent)
    return {r["event_type"] for r in sent}
