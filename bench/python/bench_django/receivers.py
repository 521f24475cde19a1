"""The counting receiver of the consume benchmark.

With BENCH_DJANGO_COUNT=N and BENCH_DJANGO_RESULT=PATH in the environment,
it counts the events the event bus delivers; at the N-th it writes one JSON
object to PATH and ends the process at once (``os._exit(0)``):

- ``seconds``: wall time from the first event received to the N-th;
- ``cpu``: CPU seconds (user + system, every thread) of the process over
  the same span;
- ``startup_seconds``: from the settings being read (process start) to the
  first event: Django set-up, connecting, joining the group;
- ``total_seconds`` and ``total_cpu``: from the process start to the N-th.

The span from the first to the N-th event covers N - 1 events.
"""
import json
import os
import resource
import time

_state = {"n": 0, "t0": None, "cpu0": None}


def _cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def count(sender, signal=None, from_event_bus=False, **kwargs):  # pylint: disable=unused-argument
    """Count one event from the bus; at the N-th, write the result and exit."""
    if not from_event_bus:
        return
    target = int(os.environ.get("BENCH_DJANGO_COUNT") or 0)
    if not target:
        return
    _state["n"] += 1
    if _state["n"] == 1:
        _state["t0"] = time.perf_counter()
        _state["cpu0"] = _cpu()
    if _state["n"] < target:
        return
    now, cpu = time.perf_counter(), _cpu()
    from django.conf import settings  # pylint: disable=import-outside-toplevel
    result = {
        "events": target,
        "seconds": now - _state["t0"],
        "cpu": cpu - _state["cpu0"],
        "startup_seconds": _state["t0"] - settings.STARTED_AT,
        "total_seconds": now - settings.STARTED_AT,
        "total_cpu": cpu,
    }
    with open(os.environ["BENCH_DJANGO_RESULT"], "w", encoding="utf-8") as f:
        json.dump(result, f)
    os._exit(0)  # pylint: disable=protected-access
