#!/usr/bin/env python3
"""Side-by-side benchmark in one run, on the same broker and the same event
(course enrollment created): this project's producer and consumer, the Python
peer package, and the raw broker ceiling. Prints a markdown table.

    bench/compare.py redis [--events N] [--python-events M]
    bench/compare.py kafka [...]      # needs tansu; starts it and the registry double
    bench/compare.py pulsar [...]     # starts pulsar-lite and the test proxy (no Python peer exists)
    bench/compare.py nats [...]       # the machine's NATS JetStream (4222) vs raw async-nats
    bench/compare.py rabbitmq [...]   # the machine's RabbitMQ (5672) vs raw lapin
    bench/compare.py local            # memory and sqlite (no broker, no peer)
    bench/compare.py django [--backend redis|kafka] [--python-events N]
                                      # a Django service on the Python package vs on the Python peer
    bench/compare.py redis --repeat 5 # medians and ranges of five runs

Kafka and Pulsar start their brokers through fixture programs (example
binaries of event-bus-kafka and event-bus-pulsar), a fresh broker per row,
and stop them when done, on failure too. --repeat K runs everything K times
and prints medians with the range.
"""
import argparse
import json
import os
import pathlib
import platform
import re
import signal
import subprocess
import sys
import tempfile
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "event-bus"
EVENT = "org.openedx.learning.course.enrollment.created.v1"
KEY = "enrollment.course.course_key"


def vectors():
    for d in [ROOT, *ROOT.parents]:
        p = d / "shared" / "vectors" / "openedx-events-11.2.0" / "events.jsonl"
        if p.exists():
            return p
    sys.exit("compare.py: shared/vectors not found beside the checkout")


def build():
    subprocess.run(["cargo", "build", "--release", "-p", "event-bus-cli", "--all-features"], cwd=ROOT, check=True)


def ours(backend, settings, events, producers, extra=()):
    cmd = [str(BIN), "--backend", backend]
    for k, v in settings.items():
        cmd += ["--set", f"{k}={v}"]
    cmd += ["bench", "--events", str(events), "--producers", str(producers), "--key-field", KEY, "--json", *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def python_peer(backend, env, events, topic=None):
    py = subprocess.run([str(ROOT / "scripts" / "python-env.sh")], check=True, capture_output=True, text=True).stdout.strip()
    env = {**os.environ, **env, "BENCH_BACKEND": backend, "BENCH_EVENTS_JSONL": str(vectors())}
    topic = topic or f"bench-peer-{uuid.uuid4().hex[:8]}"
    out = subprocess.run([py, str(ROOT / "bench" / "python" / "peer.py"), "run", str(events), topic],
                         check=True, capture_output=True, text=True, env=env).stdout
    if backend == "redis":
        redis_del(topic)
    return json.loads(out.strip().splitlines()[-1])


def redis_del(*keys):
    """Delete the streams a run wrote (100 000 entries of an enrollment are
    some 60 MB that nothing reads again)."""
    subprocess.run(["redis-cli", "-p", "6379", "UNLINK", *keys], check=False, capture_output=True)


def redis_raw(events):
    """redis-benchmark: XADD with the same eight fields and sizes as an
    enrollment entry, MAXLEN ~ 10000, pipelined 16 deep over 4 connections."""
    fields = ["type", EVENT, "id", str(uuid.uuid1()), "source", "openedx/lms/web",
              "time", "2024-05-06T07:08:09.123456+00:00", "minorversion", "0",
              "sourcehost", "bench-host", "sourcelib", "11.2.0", "event_data", "x" * 180]
    stream = f"bench-raw-{uuid.uuid4().hex[:8]}"
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", "6379", "-n", str(events), "-P", "16", "-c", "4", "-q",
           "XADD", stream, "MAXLEN", "~", "10000", "*", *fields]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    redis_del(stream)
    m = re.findall(r"([\d.]+) requests per second", out)
    return float(m[-1])


# --------------------------------------------------------------------------
# Kafka (tansu) and Pulsar (pulsar-lite): brokers started by the harness.

EXAMPLES = ROOT / "target" / "release" / "examples"
KAFKA_PARTITIONS = 3


def build_examples(crate):
    subprocess.run(["cargo", "build", "--release", "-p", crate, "--all-features", "--examples"], cwd=ROOT, check=True)


def run_json(cmd, env=None, what=None):
    """Run a command, return the JSON object on its last output line; on
    failure, exit with the end of its error output."""
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"compare.py: {what or cmd[0]} failed ({p.returncode}):\n{tail}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def proc_cpu(pid):
    """CPU seconds (user + system) of a live process, from /proc."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, TypeError):
        return None


def children_cpu():
    import resource
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


class Fixture:
    """A fixture program (an example binary of this workspace) that prints
    KEY=VALUE lines, then READY, answers commands on its standard input and
    stops with everything it started when that input closes. It runs in its
    own process group, which is killed on close if anything of it is left,
    so no broker outlives the harness, on failure too."""

    def __init__(self, argv, name):
        self.name = name
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([str(x) for x in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1, start_new_session=True)
        self.info = {}
        try:
            for line in self.proc.stdout:
                line = line.strip()
                if line == "READY":
                    break
                key, _, value = line.partition("=")
                self.info[key] = value
            else:
                raise SystemExit(f"compare.py: the {name} fixture stopped before it was ready:\n{self.stderr()}")
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def stderr(self):
        self.log.seek(0)
        return self.log.read()

    def command(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer != "OK":
            raise SystemExit(f"compare.py: the {self.name} fixture answered {answer!r} to {text!r}:\n{self.stderr()}")

    def descendants(self):
        """(pid, command name) of every process under the fixture."""
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    for child in open(f"/proc/{pid}/task/{task}/children").read().split():
                        todo.append(int(child))
                        out.append((int(child), open(f"/proc/{child}/comm").read().strip()))
            except OSError:
                pass
        return out

    def pid_of(self, comm):
        return next((pid for pid, c in self.descendants() if c == comm), None)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


class Meter:
    """CPU seconds of this harness's children (the client under test) and of
    broker processes, between start and stop."""

    def __init__(self, **pids):
        self.pids = {k: v for k, v in pids.items() if v}
        self.start_children = children_cpu()
        self.start = {k: proc_cpu(v) for k, v in self.pids.items()}

    def stop(self):
        out = {"client": children_cpu() - self.start_children}
        for k, pid in self.pids.items():
            now = proc_cpu(pid)
            if now is not None and self.start[k] is not None:
                out[k] = now - self.start[k]
        return out


def venv_python():
    return subprocess.run([str(ROOT / "scripts" / "python-env.sh")], check=True, capture_output=True,
                          text=True).stdout.strip()


def package_versions(*names):
    code = ("import importlib.metadata as m, sys\n"
            "print(' '.join(m.version(n) for n in sys.argv[1:]))")
    out = subprocess.run([venv_python(), "-c", code, *names], capture_output=True, text=True).stdout.split()
    return dict(zip(names, out)) if len(out) == len(names) else {n: "?" for n in names}


def tansu_binary():
    for p in [os.environ.get("TANSU_SQLITE_BIN"), os.environ.get("TANSU_BIN"),
              os.path.join(os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo")), "bin", "tansu")]:
        if p and os.path.isfile(p):
            return p
    return "tansu"


def cli_has(flag):
    out = subprocess.run([str(BIN), "bench", "--help"], capture_output=True, text=True).stdout
    return flag in out


def other_benchmarks():
    """Other benchmark processes on the machine (they would skew the numbers)."""
    out = subprocess.run(["pgrep", "-af", "event-bus .*bench|redis-benchmark|peer.py|raw_rdkafka_bench|raw_pulsar_bench|raw_nats_bench|raw_rabbitmq_bench|compare.py"],
                         capture_output=True, text=True).stdout.splitlines()
    return [line for line in out if line.split()[0] not in own_lineage() and "pgrep" not in line]


def own_lineage():
    """This process and its ancestors (a `timeout` or shell that started this
    run matches the pattern too, but is not another benchmark)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and str(pid) not in pids:
        pids.add(str(pid))
        try:
            with open(f"/proc/{pid}/stat") as f:
                # The parent pid is the second field after the command name in parentheses.
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def spread(values, fmt="{:,.0f}"):
    """`median` alone, or `median (min-max)` for several runs."""
    v = sorted(values)
    med = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
    if len(v) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(v[0])}-{fmt.format(v[-1])})"


def add_tansu_header_index(fx):
    """tansu 0.6.0's SQLite schema has no index on header(topition,
    offset_id), and every fetched record looks its headers up by those: each
    fetch scans all headers ever written (ten per event here), so rates fall
    with everything stored before (measured: 455/s for the first 2,000
    events, 130/s for the next 2,000, 68/s over 20,000). The index makes
    fetches logarithmic; nothing else changes."""
    import sqlite3
    db = pathlib.Path(fx.info["TANSU_LOG"]).parent / "tansu.db"
    with sqlite3.connect(db, timeout=30) as c:
        c.execute("create index if not exists bench_header_topition_offset on header (topition, offset_id)")


def kafka_target(a):
    if not a.no_build:
        build_examples("event-bus-kafka")
    producers = a.producers or 128
    index = a.tansu_storage == "sqlite" and not a.no_header_index
    versions = package_versions("edx-event-bus-kafka", "confluent-kafka")
    tansu_version = subprocess.run([tansu_binary(), "--version"], capture_output=True, text=True).stdout.strip()
    has_topic = cli_has("--topic")

    def fixture():
        fx = Fixture([EXAMPLES / "tansu_bench_fixture", "--storage", a.tansu_storage], "tansu")
        if index:
            add_tansu_header_index(fx)
        return fx

    def settings(fx):
        return {"EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS": fx.info["BOOTSTRAP_SERVERS"],
                "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL": fx.info["REGISTRY_URL"]}

    runs = []
    for _ in range(a.repeat):
        run = {}
        # Each row on a fresh broker (same build and storage), so none pays
        # for what another stored.
        with fixture() as fx:
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            if has_topic:
                fx.command(f"create {KAFKA_PARTITIONS} {topic}")
                extra = ["--topic", topic]
            else:
                # An event-bus without `bench --topic`: the fixture creates the
                # topic when its first schema is registered (adds ~0.1-0.5 s).
                fx.command(f"watch bench- {KAFKA_PARTITIONS}")
                extra = []
            m = Meter(broker=fx.pid_of("tansu"))
            try:
                run["ours"] = ours("kafka", settings(fx), a.events, producers, extra)
            except subprocess.CalledProcessError as e:
                raise SystemExit(f"compare.py: event-bus bench failed:\n{e.stderr[-3000:]}")
            run["ours"]["cpu"] = m.stop()
        with fixture() as fx:
            topic = f"peer-{uuid.uuid4().hex[:8]}"
            fx.command(f"create {KAFKA_PARTITIONS} {topic}")
            m = Meter(broker=fx.pid_of("tansu"))
            run["python"] = python_peer("kafka", settings(fx), a.python_events, topic=topic)
            run["python"]["cpu"] = m.stop()
        with fixture() as fx:
            topic = f"raw-{uuid.uuid4().hex[:8]}"
            fx.command(f"create {KAFKA_PARTITIONS} {topic}")
            m = Meter(broker=fx.pid_of("tansu"))
            run["raw"] = run_json([EXAMPLES / "raw_rdkafka_bench", "--bootstrap", fx.info["BOOTSTRAP_SERVERS"],
                                   "--registry", fx.info["REGISTRY_URL"], "--topic", topic, "--events", a.events,
                                   "--producers", producers, "--key-field", KEY], what="raw_rdkafka_bench")
            run["raw"]["cpu"] = m.stop()
        runs.append(run)

    storage = {"sqlite": "SQLite storage" + (" + an index on header(topition, offset_id) that tansu's schema lacks"
                                             if index else ", tansu's schema as is"),
               "memory": "in-memory storage"}[a.tansu_storage]
    print(f"broker: {tansu_version} (Kafka protocol), {storage}; a fresh broker per row, "
          f"topics of {KAFKA_PARTITIONS} partitions created beforehand; schema registry: in-memory test double "
          f"(RegistryDouble); runs: {a.repeat}" + ("" if has_topic else "; topic of our row created on its first "
                                                    "schema registration (no `bench --topic` in this CLI)"))
    print()
    col = lambda who, k: spread([r[who][k] for r in runs])  # noqa: E731
    raw_client = runs[0]["raw"]["client"]
    print("| | events | produce rate | end-to-end rate |")
    print("|---|---|---|---|")
    print(f"| openedx-event-bus (Rust, {producers} producer tasks) | {a.events} | {col('ours', 'produce_rate')}/s | "
          f"{col('ours', 'e2e_rate')}/s |")
    print(f"| edx-event-bus-kafka {versions['edx-event-bus-kafka']} (Python, confluent-kafka "
          f"{versions['confluent-kafka']}) | {a.python_events} | {col('python', 'produce_rate')}/s | "
          f"{col('python', 'e2e_rate')}/s |")
    print(f"| raw {raw_client}: same framed messages and headers, {producers} tasks awaiting delivery reports, "
          f"group consumer with manual commits | {a.events} | {col('raw', 'produce_rate')}/s | {col('raw', 'e2e_rate')}/s |")
    print()
    ratio = lambda f, fmt: spread([f(r) for r in runs], fmt)  # noqa: E731
    print(f"- end to end, Rust / Python: {ratio(lambda r: r['ours']['e2e_rate'] / r['python']['e2e_rate'], '{:.1f}x')} "
          f"(goal: at least 20x)")
    print(f"- produce, Rust / raw rdkafka: {ratio(lambda r: r['ours']['produce_rate'] / r['raw']['produce_rate'], '{:.2f}')} "
          f"(goal: at least 0.7)")
    print(f"- end to end, Rust / raw rdkafka: {ratio(lambda r: r['ours']['e2e_rate'] / r['raw']['e2e_rate'], '{:.2f}')} "
          f"(goal: at least 0.7)")
    print(f"- produce, Rust / Python: {ratio(lambda r: r['ours']['produce_rate'] / r['python']['produce_rate'], '{:.1f}x')}")
    print(f"- Rust latency p50 {spread([r['ours']['latency_p50_ms'] for r in runs], '{:.0f}')} ms, "
          f"p99 {spread([r['ours']['latency_p99_ms'] for r in runs], '{:.0f}')} ms, "
          f"peak RSS {spread([r['ours']['peak_rss_kib'] / 1024 for r in runs], '{:.0f}')} MiB")
    print_cpu(runs, {"ours": ("Rust", a.events), "python": ("Python", a.python_events),
                     "raw": ("raw rdkafka", a.events)}, "tansu")


def print_cpu(runs, rows, broker):
    parts = []
    for key, (label, n) in rows.items():
        client = spread([r[key]["cpu"]["client"] * 1e6 / n for r in runs], "{:.0f}")
        text = f"{label}: client {client} µs"
        if all("broker" in r[key]["cpu"] for r in runs):
            text += f", {broker} {spread([r[key]['cpu']['broker'] * 1e6 / n for r in runs], '{:.0f}')} µs"
        if all("proxy" in r[key]["cpu"] for r in runs):
            text += f", proxy {spread([r[key]['cpu']['proxy'] * 1e6 / n for r in runs], '{:.0f}')} µs"
        parts.append(text)
    print(f"- CPU per event (produce + consume): {'; '.join(parts)} "
          f"({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end)")


def pulsar_target(a):
    if not a.no_build:
        build_examples("event-bus-pulsar")
    # 64, not 128: pulsar-rs 6.9 answers SlowDown once more than 100 sends
    # wait in a connection's outbound channel, and the backend then drops its
    # producer, failing every send in flight (see the report).
    producers = a.producers or 64
    version = package_versions("pulsar-lite")["pulsar-lite"]
    runs = []
    for _ in range(a.repeat):
        run = {}
        for who in ["ours", "raw", "raw_rt"]:
            with Fixture([EXAMPLES / "pulsar_lite_fixture"], "pulsar-lite") as fx:
                url = fx.info["PROXY_URL"]
                m = Meter(broker=fx.pid_of("pulsar-lite"), proxy=fx.proc.pid)
                if who == "ours":
                    try:
                        run[who] = ours("pulsar", {"EVENT_BUS_PULSAR_URL": url}, a.events, producers)
                    except subprocess.CalledProcessError as e:
                        raise SystemExit(f"compare.py: event-bus bench failed:\n{e.stderr[-3000:]}")
                else:
                    # raw_rt: with the round trip the backend's flush_acks
                    # makes after each batch of the consume loop (64).
                    rt = ["--ack-round-trip-every", 64] if who == "raw_rt" else []
                    run[who] = run_json([EXAMPLES / "raw_pulsar_bench", "--url", url,
                                         "--topic", f"raw-{uuid.uuid4().hex[:8]}", "--events", a.events,
                                         "--producers", producers, "--key-field", KEY, *rt], what="raw_pulsar_bench")
                run[who]["cpu"] = m.stop()
        runs.append(run)
    print(f"broker: pulsar-lite {version} (native Pulsar-protocol broker from PyPI, not Apache Pulsar), a fresh "
          f"broker per row; both rows reach it through the test-only checksum-restoring proxy "
          f"(crates/event-bus-pulsar/tests/support/proxy.rs), without which pulsar-rs cannot consume from "
          f"pulsar-lite; Shared subscription, no batching, no compression; runs: {a.repeat}")
    print()
    col = lambda who, k: spread([r[who][k] for r in runs])  # noqa: E731
    print("| | events | produce rate | end-to-end rate |")
    print("|---|---|---|---|")
    print(f"| openedx-event-bus (Rust, {producers} producer tasks) | {a.events} | {col('ours', 'produce_rate')}/s | "
          f"{col('ours', 'e2e_rate')}/s |")
    print(f"| raw pulsar-rs 6.9: same messages, {producers} tasks awaiting receipts, one producer, Shared "
          f"subscription acking each message | {a.events} | {col('raw', 'produce_rate')}/s | {col('raw', 'e2e_rate')}/s |")
    print(f"| the same, plus a broker round trip after every 64 acks (what the backend's `flush_acks` does after "
          f"each batch) | {a.events} | {col('raw_rt', 'produce_rate')}/s | {col('raw_rt', 'e2e_rate')}/s |")
    print()
    ratio = lambda f: spread([f(r) for r in runs], "{:.2f}")  # noqa: E731
    print(f"- produce, Rust / raw pulsar-rs: {ratio(lambda r: r['ours']['produce_rate'] / r['raw']['produce_rate'])}")
    print(f"- end to end, Rust / raw pulsar-rs: {ratio(lambda r: r['ours']['e2e_rate'] / r['raw']['e2e_rate'])}")
    print(f"- end to end, Rust / raw pulsar-rs with the ack round trips: "
          f"{ratio(lambda r: r['ours']['e2e_rate'] / r['raw_rt']['e2e_rate'])}")
    print(f"- Rust latency p50 {spread([r['ours']['latency_p50_ms'] for r in runs], '{:.0f}')} ms, "
          f"p99 {spread([r['ours']['latency_p99_ms'] for r in runs], '{:.0f}')} ms, "
          f"peak RSS {spread([r['ours']['peak_rss_kib'] / 1024 for r in runs], '{:.0f}')} MiB")
    print_cpu(runs, {"ours": ("Rust", a.events), "raw": ("raw pulsar-rs", a.events),
                     "raw_rt": ("raw pulsar-rs with ack round trips", a.events)}, "pulsar-lite")


# --------------------------------------------------------------------------
# NATS JetStream and RabbitMQ: the machine's own brokers (no Python peer
# exists); ours against the raw client sending the same messages.

BROKERS = {
    # target: (backend settings, raw example, raw client label, broker process name, url)
    "nats": ("EVENT_BUS_NATS_URL", "raw_nats_bench", "raw async-nats: same messages, {p} tasks awaiting PubAcks, "
             "a durable pull consumer acking each message", "nats-server", "nats://127.0.0.1:4222"),
    "rabbitmq": ("EVENT_BUS_RABBITMQ_URL", "raw_rabbitmq_bench", "raw lapin: same messages, {p} tasks awaiting "
                 "publisher confirms, a quorum queue consumer acking each message", "beam.smp",
                 "amqp://guest:guest@127.0.0.1:5672/%2f"),
}


def pid_of_comm(comm):
    out = subprocess.run(["pgrep", "-o", "-x", comm], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def broker_version(target):
    cmd = ["nats-server", "--version"] if target == "nats" else ["rabbitmqctl", "version"]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[-1]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "?"


def machine_broker_target(a):
    key, example, label, comm, url = BROKERS[a.target]
    crate = "event-bus-nats" if a.target == "nats" else "event-bus-rabbitmq"
    if not a.no_build:
        build_examples(crate)
    producers = a.producers
    runs = []
    for _ in range(a.repeat):
        run = {}
        for who in ["ours", "raw"]:
            m = Meter(broker=pid_of_comm(comm))
            if who == "ours":
                try:
                    run[who] = ours(a.target, {key: url}, a.events, producers)
                except subprocess.CalledProcessError as e:
                    raise SystemExit(f"compare.py: event-bus bench failed:\n{e.stderr[-3000:]}")
            else:
                run[who] = run_json([EXAMPLES / example, "--url", url, "--topic", f"raw-{uuid.uuid4().hex[:8]}",
                                     "--events", a.events, "--producers", producers, "--key-field", KEY], what=example)
            run[who]["cpu"] = m.stop()
        runs.append(run)
    print(f"broker: the machine's {a.target} ({broker_version(a.target)}) at {url.split('@')[-1]}; runs: {a.repeat}")
    print()
    col = lambda who, k: spread([r[who][k] for r in runs])  # noqa: E731
    print("| | events | produce rate | end-to-end rate |")
    print("|---|---|---|---|")
    print(f"| openedx-event-bus (Rust, {producers} producer tasks) | {a.events} | {col('ours', 'produce_rate')}/s | "
          f"{col('ours', 'e2e_rate')}/s |")
    print(f"| {label.format(p=producers)} | {a.events} | {col('raw', 'produce_rate')}/s | {col('raw', 'e2e_rate')}/s |")
    print()
    ratio = lambda f: spread([f(r) for r in runs], "{:.2f}")  # noqa: E731
    raw = example.replace("_bench", "").replace("_", " ")
    print(f"- produce, Rust / {raw}: {ratio(lambda r: r['ours']['produce_rate'] / r['raw']['produce_rate'])}")
    print(f"- end to end, Rust / {raw}: {ratio(lambda r: r['ours']['e2e_rate'] / r['raw']['e2e_rate'])}")
    print(f"- Rust latency p50 {spread([r['ours']['latency_p50_ms'] for r in runs], '{:.0f}')} ms, "
          f"p99 {spread([r['ours']['latency_p99_ms'] for r in runs], '{:.0f}')} ms, "
          f"peak RSS {spread([r['ours']['peak_rss_kib'] / 1024 for r in runs], '{:.0f}')} MiB")
    print_cpu(runs, {"ours": ("Rust", a.events), "raw": (raw, a.events)}, a.target)


def machine():
    cpu = "unknown cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def print_header():
    """The machine, any other benchmark running, and the load: before every table."""
    print(f"machine: {machine()}")
    busy = other_benchmarks()
    if busy:
        print(f"WARNING: other benchmarks are running: {busy}")
    print(f"load average at the start: {os.getloadavg()[0]:.2f}")
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("target", choices=["redis", "kafka", "pulsar", "nats", "rabbitmq", "local",
                                             "django"])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--python-events", type=int, default=5_000,
                    help="events of the Python rows (django: of both rows)")
    ap.add_argument("--backend", choices=["redis", "kafka"], default="redis", help="django: the broker")
    ap.add_argument("--producers", type=int, default=None,
                    help="producer tasks of the Rust run (default 128: the best of 16-128 on the 2-core reference "
                         "machine; 64 for pulsar, whose client fails past 100 sends in flight)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="redis, kafka, pulsar, nats, rabbitmq: run everything this many times")
    ap.add_argument("--tansu-storage", choices=["sqlite", "memory"], default="sqlite",
                    help="kafka: tansu's storage engine (default sqlite)")
    ap.add_argument("--no-header-index", action="store_true",
                    help="kafka on sqlite: leave tansu's schema as is (fetches then slow down with every stored "
                         "record; see add_tansu_header_index)")
    a = ap.parse_args()
    if a.producers is None:
        a.producers = 64 if a.target == "pulsar" else 128
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-ups
    if a.target == "django":
        django_target(a)
        return
    if not a.no_build:
        build()
    print_header()
    if a.target == "kafka":
        kafka_target(a)
        return
    if a.target == "pulsar":
        pulsar_target(a)
        return
    if a.target in BROKERS:
        machine_broker_target(a)
        return
    if a.target == "local":
        import tempfile
        rows = []
        with tempfile.TemporaryDirectory() as d:
            for backend, settings in [("memory", {}), ("sqlite", {"EVENT_BUS_SQLITE_PATH": f"{d}/bench.db"})]:
                r = ours(backend, settings, a.events, a.producers)
                rows.append((backend, r))
        print("| backend | events | produce rate | end-to-end rate | latency p50 | latency p99 | peak RSS |")
        print("|---|---|---|---|---|---|---|")
        for backend, r in rows:
            print(f"| {backend} | {r['events']} | {r['produce_rate']:,.0f}/s | {r['e2e_rate']:,.0f}/s | "
                  f"{r['latency_p50_ms']:.1f} ms | {r['latency_p99_ms']:.1f} ms | {r['peak_rss_kib'] / 1024:.0f} MiB |")
        return
    redis_target(a)


def redis_target(a):
    url = "redis://127.0.0.1:6379"
    # MAXLEN is raised above the run size so no entry is trimmed before the
    # consumer reads it (with the default 10000, a lagging consumer loses
    # entries, in Python and Rust alike).
    maxlen = str(max(a.events, a.python_events) * 2)
    cfg = {"EVENT_BUS_REDIS_CONNECTION_URL": url, "EVENT_BUS_REDIS_STREAM_MAX_LEN": maxlen}
    pids = subprocess.run(["pgrep", "-x", "redis-server"], capture_output=True, text=True).stdout.split()
    runs = []
    for _ in range(a.repeat):
        run = {}
        meter = Meter(broker=pids[0] if pids else None)
        run["ours"] = ours("redis", cfg, a.events, a.producers)
        run["ours"]["cpu"] = meter.stop()
        redis_del(run["ours"]["topic"])
        run["produce_only"] = ours("redis", cfg, a.events, a.producers, ["--produce-only"])
        redis_del(run["produce_only"]["topic"])
        meter = Meter(broker=pids[0] if pids else None)
        run["python"] = python_peer("redis", cfg, a.python_events)
        run["python"]["cpu"] = meter.stop()
        run["raw"] = {"produce_rate": redis_raw(a.events)}
        runs.append(run)
    version = package_versions("edx-event-bus-redis")["edx-event-bus-redis"]
    print(f"broker: redis-server {redis_version()} on 127.0.0.1:6379; runs: {a.repeat}" +
          (" (median, then the range)" if a.repeat > 1 else ""))
    print()
    col = lambda who, k: spread([r[who][k] for r in runs])  # noqa: E731
    print("| | events | produce rate | end-to-end rate |")
    print("|---|---|---|---|")
    print(f"| openedx-event-bus (Rust, {a.producers} producer tasks, consumer running) | {a.events} | "
          f"{col('ours', 'produce_rate')}/s | {col('ours', 'e2e_rate')}/s |")
    print(f"| openedx-event-bus (Rust, {a.producers} producer tasks, produce only) | {a.events} | "
          f"{col('produce_only', 'produce_rate')}/s | |")
    print(f"| edx-event-bus-redis {version} (Python) | {a.python_events} | {col('python', 'produce_rate')}/s | "
          f"{col('python', 'e2e_rate')}/s |")
    print(f"| raw `redis-benchmark` XADD, pipelined 16 x 4 connections | {a.events} | {col('raw', 'produce_rate')}/s | |")
    print()
    ratio = lambda f, fmt: spread([f(r) for r in runs], fmt)  # noqa: E731
    print(f"- end to end, Rust / Python: {ratio(lambda r: r['ours']['e2e_rate'] / r['python']['e2e_rate'], '{:.1f}x')} "
          f"(goal: at least 50x)")
    print(f"- produce only, Rust / raw XADD: "
          f"{ratio(lambda r: r['produce_only']['produce_rate'] / r['raw']['produce_rate'], '{:.2f}')} (goal: at least 0.5)")
    print(f"- produce while consuming, Rust / raw XADD: "
          f"{ratio(lambda r: r['ours']['produce_rate'] / r['raw']['produce_rate'], '{:.2f}')}")
    print(f"- produce, Rust / Python: {ratio(lambda r: r['ours']['produce_rate'] / r['python']['produce_rate'], '{:.1f}x')}")
    print(f"- Rust latency p50 {spread([r['ours']['latency_p50_ms'] for r in runs], '{:.0f}')} ms, "
          f"p99 {spread([r['ours']['latency_p99_ms'] for r in runs], '{:.0f}')} ms, "
          f"peak RSS {spread([r['ours']['peak_rss_kib'] / 1024 for r in runs], '{:.0f}')} MiB")
    print_cpu(runs, {"ours": ("Rust", a.events), "python": ("Python", a.python_events)}, "redis-server")


def django_target(a):
    """A Django service on the Python package vs the same service on the
    Python peer: bench/python/django_bench.py, with the release wheel."""
    py = subprocess.run([str(ROOT / "scripts" / "python-package.sh")], env={**os.environ, "PROFILE": "release"},
                        cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    env = {**os.environ}
    if a.backend == "kafka":
        env["TANSU_BIN"] = tansu_binary()
    print_header()
    runs = [run_json([py, ROOT / "bench" / "python" / "django_bench.py", "run", "--backend", a.backend,
                      "--events", a.python_events], env=env, what="django_bench.py") for _ in range(a.repeat)]
    print_django(a, runs)


def print_django(a, runs):
    v = runs[0]["versions"]
    n = a.python_events
    if a.backend == "redis":
        peer = f"edx-event-bus-redis {v['edx-event-bus-redis']}"
        broker = f"redis-server {redis_version()} on 127.0.0.1:6379"
        broker_name = "redis-server"
    else:
        peer = f"edx-event-bus-kafka {v['edx-event-bus-kafka']} (confluent-kafka {v['confluent-kafka']})"
        tansu = subprocess.run([tansu_binary(), "--version"], capture_output=True, text=True).stdout.strip()
        broker = (f"{tansu} (Kafka protocol), in-memory storage, a fresh broker per row, topics of 3 partitions "
                  f"created beforehand; schema registry: in-memory test double")
        broker_name = "tansu"
    print(f"broker: {broker}; openedx-events {v['openedx-events']}, Django {v['Django']}; {n} events per row; "
          f"runs: {a.repeat}" + (" (median, then the range)" if a.repeat > 1 else ""))
    print()

    def rate(r, who, phase):
        p = r[who][phase]
        # consume: the span from the first event received to the last covers n - 1 events
        return (p["events"] - (phase == "consume")) / p["seconds"]

    def cpu_us(r, who, phase, key="cpu"):
        p = r[who][phase]
        return (p[key] or 0) * 1e6 / (p["events"] - (phase == "consume"))

    col = lambda f, fmt="{:,.0f}": spread([f(r) for r in runs], fmt)  # noqa: E731

    def ratio(f):
        values = [f(r) for r in runs]
        return spread(values, "{:.2f}x" if max(values) < 1 else "{:.1f}x")

    speed = {ph: ratio(lambda r, ph=ph: rate(r, "ours", ph) / rate(r, "peer", ph)) for ph in ("produce", "consume")}
    thrift = {ph: ratio(lambda r, ph=ph: cpu_us(r, "peer", ph) / cpu_us(r, "ours", ph)) for ph in ("produce", "consume")}
    print("| | events | produce rate | produce CPU per event | consume rate | consume CPU per event |")
    print("|---|---|---|---|---|---|")
    for who, label in [("ours", f"openedx-event-bus {v['openedx-event-bus']} (this package, Rust core)"),
                       ("peer", f"{peer} (Python)")]:
        print(f"| {label} | {n} | {col(lambda r: rate(r, who, 'produce'))}/s | "
              f"{col(lambda r: cpu_us(r, who, 'produce'))} µs | {col(lambda r: rate(r, who, 'consume'))}/s | "
              f"{col(lambda r: cpu_us(r, who, 'consume'))} µs |")
    print(f"| ratio (rates: ours / peer; CPU: peer / ours) | | {speed['produce']} | {thrift['produce']} | "
          f"{speed['consume']} | {thrift['consume']} |")
    print()
    print(f"- produce, ours / peer: {speed['produce']} (goal: at least 10x); "
          f"consume, ours / peer: {speed['consume']} (goal: at least 5x)")
    if all(r[w][ph]["broker_cpu"] is not None for r in runs for w in ("ours", "peer") for ph in ("produce", "consume")):
        parts = [f"{w} {col(lambda r: cpu_us(r, w, 'produce', 'broker_cpu'))} µs producing, "
                 f"{col(lambda r: cpu_us(r, w, 'consume', 'broker_cpu'))} µs consuming" for w in ("ours", "peer")]
        print(f"- {broker_name} CPU per event: {'; '.join(parts)}")
    print(f"- consume_events start-up (process start to the first event: Django set-up, connecting, joining "
          f"the group; not in the rates): ours {col(lambda r: r['ours']['consume']['startup_seconds'], '{:.2f}')} s, "
          f"peer {col(lambda r: r['peer']['consume']['startup_seconds'], '{:.2f}')} s")
    print(f"- {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end")


def redis_version():
    out = subprocess.run(["redis-cli", "-p", "6379", "INFO", "server"], capture_output=True, text=True).stdout
    m = re.search(r"redis_version:(\S+)", out)
    return m.group(1) if m else "?"

main()
