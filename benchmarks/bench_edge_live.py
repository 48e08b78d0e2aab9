"""The edge's live parts: their cost per request on a worker, and the detector's cost per second in the supervisor.

    .venv/bin/python benchmarks/bench_edge_live.py [--rounds 9] [--calls 100000] [--rates 400,4000,20000]
                                                   [--flood-s 20] [--json FILE]

1. Per request: `Metrics.request` (a shared-memory row) and `LiveRecorder.record` (preallocated lists), each next
   to a baseline that is a no-op Python call with the same arguments, timed in alternation so the machine's noise
   hits both, in CPU time of the thread (preemption on a shared machine is not counted); the table gives medians
   over `--rounds` rounds and the cost above the baseline.
2. Per second: the `LiveDetector` fed one-second batches on a fake clock: a minute of readers, then a
   cache-busting flood at each rate of `--rates` (requests per second, from 1,750 addresses) for `--flood-s`
   seconds. It reports the median (wall and CPU) and largest step (it must stay under a second to keep up), when the
   first ban was written after the onset, and the process's peak RSS. Nothing here touches the network.
"""

# ruff: noqa: E501
from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from floodwall.config import DetectSettings, Settings
from floodwall.edge.decisions import LiveDetector
from floodwall.edge.live import LiveRecorder
from floodwall.edge.metrics import HIT, MetricsBoard
from floodwall.store import MemoryStore
from floodwall.testing import FakeClock, record_reader_second

START = datetime(2024, 11, 4, 8, 0, tzinfo=UTC)


def _noop(*_args: object) -> None:
    return None


def per_request(rounds: int, calls: int) -> dict[str, float]:
    board = MetricsBoard(2)
    metrics = board.slot(0)
    recorder = LiveRecorder(capacity=calls + 1)
    row = (1.7e9, "192.0.2.1", "GET", "/p", None, "HTTP/1.1", 200, 512, None, "ua", "h", 0.001, 0.001, 200, "HIT", None)
    timed: dict[str, Callable[[], None]] = {
        "noop(2 args)": lambda: _noop(HIT, 0.0007),
        "Metrics.request": lambda: metrics.request(HIT, 0.0007),
        "noop(16 args)": lambda: _noop(*row),
        "LiveRecorder.record": lambda: recorder.record(*row),
    }
    samples: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(rounds):
        for name, call in timed.items():
            recorder.take()
            start = time.thread_time()  # CPU time of this thread: a shared machine's preemption is not counted
            for _ in range(calls):
                call()
            samples[name].append((time.thread_time() - start) / calls * 1e9)
    board.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def _readers(rng: random.Random, recorder: LiveRecorder, second: int) -> None:
    record_reader_second(rng, recorder, START.timestamp() + second)


def per_second(rate: int, flood_s: int) -> dict[str, float | int | None]:
    rng = random.Random(1)
    clock = FakeClock(START)
    settings = Settings(detect=DetectSettings(signatures=False))
    detector = LiveDetector("example-news", MemoryStore(clock=clock), settings=settings, clock=clock)
    recorder = LiveRecorder(capacity=rate + 10_000)
    quiet_s = 60
    steps: list[float] = []
    cpu_steps: list[float] = []  # CPU seconds of all threads (Polars runs its own)
    first_ban: int | None = None
    for second in range(quiet_s + flood_s):
        _readers(rng, recorder, second)
        if second >= quiet_s:
            at0 = START.timestamp() + second
            for k in range(rate):
                client = f"203.0.{113 + k % 7}.{k % 250 + 1}"
                query = f"k{rng.randrange(10**5)}={rng.randrange(10**9)}"
                agent = f"Mozilla/5.0 (Windows NT 6.1) Chrome/{100 + k % 8}.0"
                recorder.record(at0 + k / rate, client, "GET", "/", query, "HTTP/1.1", 200, 5120, None, agent)
        clock.set(START + timedelta(seconds=second + 1))
        detector.add(recorder.take())
        start, cpu = time.perf_counter(), time.process_time()
        stored = detector.step()
        if second >= quiet_s:
            steps.append(time.perf_counter() - start)
            cpu_steps.append(time.process_time() - cpu)
        if stored and first_ban is None:
            first_ban = second + 1 - quiet_s
    return {
        "rate_rps": rate,
        "step_median_ms": statistics.median(steps) * 1000,
        "step_max_ms": max(steps) * 1000,
        "step_cpu_median_ms": statistics.median(cpu_steps) * 1000,
        "first_ban_after_onset_s": first_ban,
        "decisions": detector.decided,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rates", default="400,4000,20000")
    parser.add_argument("--flood-s", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    hot = per_request(args.rounds, args.calls)
    print(
        f"per request, median of {args.rounds} rounds of {args.calls} calls ({platform.python_implementation()} {platform.python_version()}):"
    )
    for name, baseline in (("Metrics.request", "noop(2 args)"), ("LiveRecorder.record", "noop(16 args)")):
        print(
            f"  {name:22s} {hot[name]:7.0f} ns   baseline {baseline} {hot[baseline]:5.0f} ns   +{hot[name] - hot[baseline]:.0f} ns ({hot[name] / hot[baseline]:.2f}x)"
        )
    detector = []
    print(f"detector, one step per second, {args.flood_s} s of flood after 60 s of readers:")
    for rate in (int(r) for r in args.rates.split(",")):
        result = per_second(rate, args.flood_s)
        detector.append(result)
        print(
            f"  {rate:6d} req/s: step median {result['step_median_ms']:6.0f} ms wall ({result['step_cpu_median_ms']:.0f} ms CPU), max {result['step_max_ms']:6.0f} ms; "
            f"first ban {result['first_ban_after_onset_s']} s after onset; {result['decisions']} decisions; peak RSS {result['peak_rss_mib']:.0f} MiB"
        )
    if args.json:
        args.json.write_text(json.dumps({"per_request_ns": hot, "detector": detector}, indent=2))


if __name__ == "__main__":
    main()
