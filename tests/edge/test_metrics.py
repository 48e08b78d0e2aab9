"""The edge's metrics: every worker's counts summed across processes, exposed in a format Prometheus parses."""

from __future__ import annotations

import itertools
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from floodwall.edge.metrics import BANNED, BUCKETS_S, HIT, MISS, OUTCOMES, Metrics, MetricsBoard

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{((?:{_NAME}=\"(?:[^\"\\\n]|\\.)*\",?)*)\}})? (\S+)$")
_LABEL = re.compile(rf"({_NAME})=\"((?:[^\"\\\n]|\\.)*)\"")


def parse_exposition(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """A strict reader of the text format 0.0.4: samples by metric name and labels; raises on anything amiss.

    Checks what a scraper relies on: one TYPE per family, given before its samples; sample names belong to the
    declared family (histograms: _bucket, _sum, _count); values are floats; buckets are cumulative, end at +Inf,
    and +Inf equals _count.
    """
    assert text.endswith("\n"), "the exposition ends with a line feed"
    types: dict[str, str] = {}
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("# HELP "):
            assert re.match(rf"^# HELP {_NAME} .+$", line), f"line {number}: {line!r}"
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), f"line {number}"
            assert name not in types, f"line {number}: second TYPE for {name}"
            types[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"line {number} is not a sample: {line!r}"
        name, labels, value = match.groups()
        family = next((f for f in types if name == f or name in (f"{f}_bucket", f"{f}_sum", f"{f}_count")), None)
        assert family is not None, f"line {number}: {name} before its TYPE"
        if name != family:
            assert types[family] == "histogram", f"line {number}: {name} in a {types[family]}"
        key = tuple(sorted(_LABEL.findall(labels or "")))
        assert key not in samples.setdefault(name, {}), f"line {number}: duplicate sample"
        samples[name][key] = float(value)
    for family, kind in types.items():
        if kind != "histogram":
            continue
        buckets = sorted(((float(dict(k)["le"]), v) for k, v in samples[f"{family}_bucket"].items()))
        assert buckets[-1][0] == math.inf
        assert all(a[1] <= b[1] for a, b in itertools.pairwise(buckets)), "buckets are cumulative"
        assert buckets[-1][1] == samples[f"{family}_count"][()]
    return samples


def requests_by_outcome(samples: dict[str, dict[tuple[tuple[str, str], ...], float]]) -> dict[str, float]:
    return {dict(key)["outcome"]: value for key, value in samples["floodwall_requests_total"].items()}


def test_a_single_process_counts_parse() -> None:
    metrics = Metrics()
    metrics.request(HIT, 0.0002)
    metrics.request(HIT, 0.003)
    metrics.request(MISS, 0.2)
    metrics.request(BANNED, 99.0)  # beyond the last bucket: counted in +Inf only
    metrics.origin_started()
    samples = parse_exposition(metrics.render().decode())
    outcomes = requests_by_outcome(samples)
    assert set(outcomes) == set(OUTCOMES)
    assert outcomes["hit"] == 2 and outcomes["miss"] == 1 and outcomes["banned"] == 1 and outcomes["served"] == 0
    assert samples["floodwall_origin_inflight"][()] == 1
    buckets = {dict(k)["le"]: v for k, v in samples["floodwall_request_duration_seconds_bucket"].items()}
    assert buckets["0.0005"] == 1 and buckets["0.005"] == 2 and buckets["0.25"] == 3
    assert buckets["10.0"] == 3 and buckets["+Inf"] == 4
    assert len(buckets) == len(BUCKETS_S) + 1
    assert samples["floodwall_request_duration_seconds_sum"][()] == pytest.approx(99.2032, abs=1e-5)


_CHILD = """
import sys
from floodwall.edge.metrics import HIT, MetricsBoard
board = MetricsBoard.open(sys.argv[1], slots=int(sys.argv[2]))
slot = board.slot(int(sys.argv[3]))
for _ in range(int(sys.argv[4])):
    slot.request(HIT, 0.001)
slot.origin_started()
board.under_attack = True
board.close()
"""


def test_every_worker_process_counts_and_the_totals_are_summed() -> None:
    board = MetricsBoard(3)
    # Nothing to leave behind however the supervisor ends: the file is unlinked at once, reached through our fd.
    assert str(board.path.readlink()).endswith("(deleted)")
    try:
        children = [
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(board.path), "3", str(worker), str(1000 * (worker + 1))]
            )
            for worker in range(2)
        ]
        assert all(child.wait(timeout=60) == 0 for child in children)
        board.slot(2).request(MISS, 0.5)  # the supervisor's own row
        samples = parse_exposition(board.render().decode())
        outcomes = requests_by_outcome(samples)
        assert outcomes["hit"] == 3000 and outcomes["miss"] == 1
        assert samples["floodwall_origin_inflight"][()] == 2
        assert samples["floodwall_request_duration_seconds_count"][()] == 3001
        assert board.under_attack  # a switch flipped in one process is seen by the others
    finally:
        board.close()
    assert not Path(board.path).exists()


def test_a_board_of_the_wrong_size_is_refused() -> None:
    board = MetricsBoard(2)
    try:
        with pytest.raises(ValueError, match="size does not match"):
            MetricsBoard.open(board.path, slots=3)
        with pytest.raises(IndexError):
            board.slot(2)
    finally:
        board.close()


def test_decisions_active_is_the_largest_count_not_a_sum() -> None:
    board = MetricsBoard(2)
    try:
        board.slot(0).set_decisions_active(40)
        board.slot(1).set_decisions_active(41)  # every process holds (nearly) the same decisions
        assert parse_exposition(board.render().decode())["floodwall_decisions_active"][()] == 41
    finally:
        board.close()


def test_the_parser_catches_a_broken_exposition() -> None:
    with pytest.raises(AssertionError):
        parse_exposition('floodwall_requests_total{outcome="hit"} 1\n')  # no TYPE
    with pytest.raises(AssertionError):
        parse_exposition(
            '# TYPE x_seconds histogram\nx_seconds_bucket{le="1"} 2\nx_seconds_bucket{le="+Inf"} 1\nx_seconds_count 1\n'
        )
