#!/usr/bin/env python3
"""Side-by-side benchmark in one run, on the same broker and the same event
(course enrollment created): this project's producer and consumer, the Python
peer package, and the raw broker ceiling. Prints a markdown table.

    bench/compare.py redis [--events N] [--python-events M]
    bench/compare.py kafka [...]      # needs tansu; starts it and the registry double
    bench/compare.py local            # memory and sqlite (no broker, no peer)
"""
import argparse
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
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


def ours(backend, settings, events, producers):
    cmd = [str(BIN), "--backend", backend]
    for k, v in settings.items():
        cmd += ["--set", f"{k}={v}"]
    cmd += ["bench", "--events", str(events), "--producers", str(producers), "--key-field", KEY, "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def python_peer(backend, env, events):
    py = subprocess.run([str(ROOT / "scripts" / "python-env.sh")], check=True, capture_output=True, text=True).stdout.strip()
    env = {**os.environ, **env, "BENCH_BACKEND": backend, "BENCH_EVENTS_JSONL": str(vectors())}
    topic = f"bench-peer-{uuid.uuid4().hex[:8]}"
    out = subprocess.run([py, str(ROOT / "bench" / "python" / "peer.py"), "run", str(events), topic],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


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
    subprocess.run(["redis-cli", "-p", "6379", "DEL", stream], check=False, capture_output=True)
    m = re.findall(r"([\d.]+) requests per second", out)
    return float(m[-1])


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("target", choices=["redis", "local"])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--python-events", type=int, default=5_000)
    ap.add_argument("--producers", type=int, default=64)
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    if not a.no_build:
        build()
    print(f"machine: {machine()}")
    print()
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
    url = "redis://127.0.0.1:6379"
    r = ours("redis", {"EVENT_BUS_REDIS_CONNECTION_URL": url}, a.events, a.producers)
    p = python_peer("redis", {"EVENT_BUS_REDIS_CONNECTION_URL": url}, a.python_events)
    raw = redis_raw(a.events)
    print("| | events | produce rate | end-to-end rate |")
    print("|---|---|---|---|")
    print(f"| openedx-event-bus (Rust, {a.producers} producer tasks) | {r['events']} | {r['produce_rate']:,.0f}/s | {r['e2e_rate']:,.0f}/s |")
    print(f"| edx-event-bus-redis 1.1.2 (Python) | {p['events']} | {p['produce_rate']:,.0f}/s | {p['e2e_rate']:,.0f}/s |")
    print(f"| raw `redis-benchmark` XADD, pipelined 16 x 4 connections | {a.events} | {raw:,.0f}/s | |")
    print()
    print(f"- end to end, Rust / Python: {r['e2e_rate'] / p['e2e_rate']:,.1f}x (goal: 50x)")
    print(f"- produce, Rust / raw XADD: {r['produce_rate'] / raw:.2f} (goal: 0.5)")
    print(f"- produce, Rust / Python: {r['produce_rate'] / p['produce_rate']:,.1f}x")
    print(f"- Rust latency p50 {r['latency_p50_ms']:.1f} ms, p99 {r['latency_p99_ms']:.1f} ms, peak RSS {r['peak_rss_kib'] / 1024:.0f} MiB")


main()
