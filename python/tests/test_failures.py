"""
What goes wrong in a Django service, and its defined fate: a receiver that
raises (retried, then dead-lettered with its reason, the stream goes on,
the receiver named in the log), a database connection the server killed
between two messages (the work cycle replaces it), a broker that dies
while the service sends (the request returns within the timeout and the
event is logged as JSON that can be re-sent).
"""
import json
import re
import subprocess
import time
import uuid

import pytest

from conftest import REDIS_URL, Service, manage, read_lines, unique, wait_for_lines

FAILING = "org.openedx.learning.course.enrollment.created.v1"
GOOD = "org.openedx.learning.auth.session.login.completed.v1"


def ours(**more):
    return {"EVENT_BUS_BACKEND": "redis", "EVENT_BUS_REDIS_CONNECTION_URL": REDIS_URL,
            "EVENT_BUS_PRODUCER": "openedx_event_bus.create_producer",
            "EVENT_BUS_CONSUMER": "openedx_event_bus.EventBusConsumer", "EVENT_BUS_CONSUMER_START": "earliest",
            "EVENT_BUS_CONSUMER_POLL_TIMEOUT": 0.2, **more}


def test_a_failing_receiver_is_retried_then_dead_lettered_and_the_stream_goes_on(tmp_path, redis_client):
    topic = unique("fail")
    redis_client[1].extend([topic, f"{topic}-dlq"])
    settings = ours(EVENT_BUS_RETRY_MAX_ATTEMPTS=3, EVENT_BUS_RETRY_INITIAL_DELAY=0.05,
                    EVENT_BUS_RETRY_MAX_DELAY=0.1)
    sent_file, got_file = tmp_path / "sent.jsonl", tmp_path / "got.jsonl"
    manage(["send_samples", "--out", str(sent_file), "--topic", topic, "--per-type", "1",
            "--types", f"{FAILING},{GOOD}"], settings)
    sent = read_lines(sent_file)
    failing = next(r for r in sent if r["event_type"] == FAILING)
    good = next(r for r in sent if r["event_type"] == GOOD)
    consumer = Service(["consume_events", "-t", topic, "-g", "g1"], settings, tmp_path / "consumer.log",
                       TESTAPP_RECORD=got_file, TESTAPP_FAIL_TYPE=FAILING)
    try:
        got = wait_for_lines(got_file, 1, consumer)
        deadline = time.monotonic() + 60
        letters = []
        while not letters and time.monotonic() < deadline:
            p = manage(["event_bus_dlq", "list", "-t", topic, "--json"], settings)
            letters = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
            time.sleep(0.2)
    finally:
        assert consumer.stop() == 0
    log = consumer.output()
    assert [r["metadata"]["id"] for r in got] == [good["metadata"]["id"]], "the good event is handled"
    assert len(letters) == 1, letters
    assert letters[0]["id"] == failing["metadata"]["id"]
    assert letters[0]["event_type"] == FAILING
    assert letters[0]["reason"] == "receiver_failed", letters
    assert letters[0]["attempts"] == "3", letters
    assert log.count("Receiver testapp.receivers.record failed on event " + failing["metadata"]["id"]) == 3, log
    shown = json.loads(manage(["event_bus_dlq", "show", "-t", topic, letters[0]["position"]], settings).stdout)
    assert "testapp.receivers.record raised Refused" in json.dumps(shown["headers"]), shown
    # Requeued, it is handled again by the group (and fails again: the receiver still refuses).
    requeued = manage(["event_bus_dlq", "requeue", "-t", topic, "-g", "ops"], settings)
    assert "requeued 1 dead letters" in requeued.stdout


def test_a_killed_database_connection_is_replaced_before_the_next_message(tmp_path, redis_client):
    psycopg = pytest.importorskip("psycopg", reason="the project venv installs psycopg (scripts/python-env.sh)")
    try:
        admin = psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True)
    except psycopg.OperationalError as e:
        pytest.fail(f"this test needs the machine's PostgreSQL on 127.0.0.1:5432 (database test): {e}")
    topic = unique("workcycle")
    redis_client[1].extend([topic, f"{topic}-dlq"])
    settings = ours(EVENT_BUS_RETRY_MAX_ATTEMPTS=1)
    env = {"TEST_DATABASE": "postgres"}
    manage(["migrate", "contenttypes"], settings, **env)
    got_file = tmp_path / "got.jsonl"
    consumer = Service(["consume_events", "-t", topic, "-g", "g1"], settings, tmp_path / "consumer.log",
                       TESTAPP_RECORD=got_file, TESTAPP_ORM=1, **env)
    try:
        manage(["send_samples", "--out", str(tmp_path / "s1.jsonl"), "--topic", topic, "--per-type", "1",
                "--types", GOOD], settings)
        first = wait_for_lines(got_file, 1, consumer)[0]
        assert "orm_error" not in first, first
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (first["backend_pid"],))
            assert cur.fetchone()[0] is True
        manage(["send_samples", "--out", str(tmp_path / "s2.jsonl"), "--topic", topic, "--per-type", "1",
                "--types", GOOD, "--seed", "2"], settings)
        second = wait_for_lines(got_file, 2, consumer)[1]
    finally:
        consumer.stop()
        admin.close()
    assert "orm_error" not in second, second
    assert second["backend_pid"] != first["backend_pid"], "a new connection"
    assert second["orm_count"] == first["orm_count"]
    assert "is not usable; it is replaced" in consumer.output()


SEND_WHILE_DOWN = """
import json, time
from openedx_events.data import EventsMetadata
from openedx_events.event_bus import get_producer
from openedx_events.tooling import OpenEdxPublicSignal, load_all_signals
from testapp import samples
load_all_signals()
signal = OpenEdxPublicSignal.get_signal_by_type("{GOOD}")
producer = get_producer()
data = samples.event_data(signal, samples.rng_for(3))
producer.send(signal=signal, topic="{topic}", event_key_field="user.id", event_data=data,
              event_metadata=EventsMetadata(event_type=signal.event_type))
print("FIRST", producer.sent, producer.failed, flush=True)
input()  # the test kills the broker now
started = time.monotonic()
producer.send(signal=signal, topic="{topic}", event_key_field="user.id", event_data=data,
              event_metadata=EventsMetadata(event_type=signal.event_type, id=__import__("uuid").UUID("{event_id}")))
print("SECOND", producer.sent, producer.failed, round(time.monotonic() - started, 3), flush=True)
from testapp.receivers import plain
from openedx_event_bus.producer import _data_as_json
print("DATA", json.dumps(json.loads(_data_as_json(signal, data))), flush=True)
"""


def test_a_broker_down_during_send_returns_within_the_timeout_and_logs_the_event(tmp_path):
    port = 20000 + uuid.uuid4().int % 20000
    server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],  # pylint: disable=consider-using-with
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        settings = ours(EVENT_BUS_REDIS_CONNECTION_URL=f"redis://127.0.0.1:{port}/0",
                        EVENT_BUS_PRODUCER_SEND_TIMEOUT=1)
        event_id = str(uuid.uuid4())
        from conftest import PROJECT, service_env  # pylint: disable=import-outside-toplevel
        import sys  # pylint: disable=import-outside-toplevel
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, str(PROJECT / "manage.py"), "shell", "-c",
             SEND_WHILE_DOWN.format(GOOD=GOOD, topic="down", event_id=event_id)],
            env=service_env(settings), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        first = proc.stdout.readline()
        while first and not first.startswith("FIRST"):  # the shell's own banner
            first = proc.stdout.readline()
        assert first.split() == ["FIRST", "1", "0"], first + proc.stderr.read()
        server.kill()
        server.wait()
        out, err = proc.communicate("\n", timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    second = next(line for line in out.splitlines() if line.startswith("SECOND")).split()
    assert second[1:3] == ["1", "1"], out + err
    # The request path is back within the send timeout (1 s), plus the reconnect attempt's.
    assert float(second[3]) < 10, second
    logged = next(line for line in err.splitlines() if "Error sending an event to the event bus" in line)
    assert event_id in logged
    data_json = re.search(r"event_data_as_json=(\{.*\}); event_metadata_as_json=", logged).group(1)
    expected = next(line for line in out.splitlines() if line.startswith("DATA")).split(" ", 1)[1]
    assert json.loads(data_json) == json.loads(expected), "the logged data is the event's, as JSON"
    metadata_json = logged.split("event_metadata_as_json=", 1)[1]
    assert json.loads(metadata_json)["id"] == event_id
