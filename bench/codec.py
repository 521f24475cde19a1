#!/usr/bin/env python3
"""Codec benchmark, side by side in one run: the Rust codec (criterion) and
the Python openedx-events serializer on the same samples. Prints a markdown
table with the ratios.

    bench/codec.py            # from the repository root
"""
import json
import os
import pathlib
import platform
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
EVENTS = [
    ("enrollment", "org.openedx.learning.course.enrollment.created.v1"),
    ("largest_schema", "org.openedx.enterprise.learner_credit_course_enrollment.revoked.v1"),
    ("largest_sample", "org.openedx.learning.ora.submission.created.v1"),
]


def vectors():
    for d in [ROOT, *ROOT.parents]:
        p = d / "shared" / "vectors" / "openedx-events-11.2.0" / "events.jsonl"
        if p.exists():
            return p
    sys.exit("bench/codec.py: shared/vectors not found beside the checkout")


def criterion_ns(group, name):
    # criterion names the directory after the benchmark id, "/" replaced by "_".
    est = ROOT / "target" / "criterion" / f"{group}_{name}" / "new" / "estimates.json"
    return json.loads(est.read_text())["median"]["point_estimate"]


def main():
    subprocess.run(
        ["cargo", "bench", "-p", "openedx-events", "--bench", "codec", "--",
         "--warm-up-time", "1", "--measurement-time", "3", "--noplot"],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
    )
    py = subprocess.run([str(ROOT / "scripts" / "python-env.sh")], check=True, capture_output=True, text=True).stdout.strip()
    res = subprocess.run([py, str(ROOT / "bench" / "codec_python.py"), str(vectors()), json.dumps(EVENTS)],
                         check=True, capture_output=True, text=True)
    python = json.loads(res.stdout)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print()
    print("| event | op | Rust (median) | Python openedx-events | Python / Rust |")
    print("|---|---|---|---|---|")
    for name, event_type in EVENTS:
        for op in ("encode", "decode"):
            r = criterion_ns(op, name)
            p = python[name][f"{op}_ns"]
            print(f"| {name} (`{event_type}`) | {op} | {r:,.0f} ns | {p:,.0f} ns | {p / r:,.0f}x |")
    for group, name in [("decode_validated", "enrollment"), ("encode_typed", "enrollment"), ("decode_typed", "enrollment")]:
        print(f"| enrollment | {group} (Rust only) | {criterion_ns(group, name):,.0f} ns | | |")


main()
