"""Site level: baseline, onset and end to the second, phases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from floodwall.detect import Engine
from floodwall.detect.baseline import minute_baseline
from floodwall.detect.onset import Surge, find_surges, phases_of
from floodwall.detect.settings import DetectSettings
from floodwall.logs import LogReader
from floodwall.model import IncidentKind
from floodwall.simulate import load_scenario, simulate

START = datetime(2024, 11, 4, 0, 0, tzinfo=UTC)


def _seconds(rates: np.ndarray, seed: int = 3) -> pl.DataFrame:
    counts = np.random.default_rng(seed).poisson(rates)
    ts = pl.datetime_range(START, START + timedelta(seconds=len(rates) - 1), "1s", eager=True, time_zone="UTC")
    return pl.DataFrame({"ts": ts, "requests": counts.astype(np.uint32)}).filter(pl.col("requests") > 0)


def test_flat_traffic_has_no_surge():
    seconds = _seconds(np.full(6 * 3600, 3.0))
    settings = DetectSettings()
    assert find_surges(seconds, minute_baseline(seconds, settings), settings) == []


def test_onset_end_and_phases_of_a_flood():
    rates = np.full(8 * 3600, 3.0)
    onset = 4 * 3600 + 17  # 04:00:17
    rates[onset : onset + 300] += 20  # a test flood of five minutes
    waves = onset + 300 + 900  # a quarter-hour pause, then waves stepping up and a milder tail
    rates[waves : waves + 1200] += 60
    rates[waves + 1200 : waves + 3600] += 120
    end = waves + 4800
    rates[waves + 3600 : end] += 30
    seconds = _seconds(rates)
    settings = DetectSettings()
    baseline = minute_baseline(seconds, settings)
    assert baseline.method == "rolling"
    surges = find_surges(seconds, baseline, settings)
    assert len(surges) == 1
    surge = surges[0]
    assert abs((surge.start - (START + timedelta(seconds=onset))).total_seconds()) <= 30
    assert abs((surge.end - (START + timedelta(seconds=end))).total_seconds()) <= 120
    assert surge.peak_rps > 100
    labels = [p.label for p in phases_of(seconds, surge)]
    assert labels[0] == "test-flood" and labels[-1] == "tail" and "wave-1" in labels


def test_seasonal_baseline_with_days_of_history():
    hours = np.arange(4 * 86400) // 3600 % 24
    rates = 1.0 + 4.0 * (hours >= 8)  # busier by day
    seconds = _seconds(rates)
    settings = DetectSettings()
    baseline = minute_baseline(seconds, settings)
    assert baseline.method == "hour-of-day"
    assert find_surges(seconds, baseline, settings) == []


def _flood_rates(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """Per-second rates of a day-long flood over 2 rps of readers: a test flood, a pause, two waves doubling, a
    sustained flood that breathes (a four-hour swell, two half-hour lulls) and a tail at a third; its planned
    phases in seconds from START."""
    minute_level = np.zeros(36 * 60)
    plan = {
        "test-flood": (60, 66),
        "wave-1": (96, 106),
        "wave-2": (106, 116),
        "sustained": (116, 1316),
        "tail": (1316, 1436),
    }
    levels = {"test-flood": 10.0, "wave-1": 8.0, "wave-2": 16.0, "sustained": 32.0, "tail": 10.0}
    for label, (a, b) in plan.items():
        minute_level[a:b] = levels[label]
    a, b = plan["sustained"]
    x = np.arange(b - a)
    minute_level[a:b] *= 0.8 + 0.2 * np.cos(2 * np.pi * x / 240)
    for lull in (400, 900):
        minute_level[a + lull : a + lull + 30] *= 0.15
    minute_level *= rng.lognormal(0.0, 0.12, minute_level.size)
    rates = 2.0 + np.repeat(minute_level, 60)
    return rates, {k: (a * 60, b * 60) for k, (a, b) in plan.items()}


def _surge(start_s: int, end_s: int) -> Surge:
    return Surge(
        start=START + timedelta(seconds=start_s),
        end=START + timedelta(seconds=end_s),
        peak_rps=40.0,
        requests=0,
        expected_rps=2.0,
        threshold_rps=4.0,
    )


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_phases_are_what_a_reader_of_the_chart_would_call_them(seed):
    """Lulls and the swell of a long flood stay inside one sustained phase; steps, the pause and the tail split."""
    rates, plan = _flood_rates(np.random.default_rng(seed))
    seconds = _seconds(rates, seed=seed)
    phases = phases_of(seconds, _surge(plan["test-flood"][0], plan["tail"][1] - 1))
    assert [p.label for p in phases] == ["test-flood", "wave-1", "wave-2", "sustained", "tail"]
    for phase in phases:
        start, end = plan[phase.label]
        assert abs((phase.start - (START + timedelta(seconds=start))).total_seconds()) <= 30
        assert abs((phase.end - (START + timedelta(seconds=end))).total_seconds()) <= 120


def test_a_flat_flood_is_one_phase():
    rates = np.full(4 * 3600, 2.0)
    rates[3600 : 3 * 3600] += 30 * np.random.default_rng(5).lognormal(0.0, 0.12, 2 * 3600)
    phases = phases_of(_seconds(rates), _surge(3600, 3 * 3600 - 1))
    assert [p.label for p in phases] == ["wave-1"]


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("seed", [101])  # one seed not tuned on (tuned on 1-3); benchmarks/bench_detect.py runs more
def test_hano_like_flood_has_a_handful_of_phases(tmp_path, seed):
    """The three-day flood of the hano-like scenario (truth: a test flood, five waves, a sustained flood with lulls
    and a tail) comes out as a few phases a person would name, not a hundred slivers."""
    simulate(load_scenario("hano-like"), tmp_path, seed=seed, scale=0.05)
    truth = json.loads((tmp_path / "truth.json").read_text())
    site = truth["sites"][0]
    engine = Engine(site["name"])
    for frame in LogReader([tmp_path / site["log"]], site=site["name"]):
        engine.feed(frame)
    flood = next(i for i in engine.finish().incidents if i.kind is IncidentKind.FLOOD)
    told = {p["label"]: p for p in site["incidents"][0]["phases"]}
    labels = [p.label for p in flood.phases]
    assert 4 <= len(labels) <= len(told)
    assert labels[0] == "test-flood" and labels[-1] == "tail" and "sustained" in labels
    test, tail = flood.phases[0], flood.phases[-1]
    assert abs((test.start - _iso(told["test-flood"]["start"])).total_seconds()) <= 30
    assert abs((test.end - _iso(told["test-flood"]["end"])).total_seconds()) <= 120
    assert abs((tail.start - _iso(told["tail"]["start"])).total_seconds()) <= 120
    sustained = next(p for p in flood.phases if p.label == "sustained")
    assert sustained.start <= _iso(told["sustained"]["start"]) and sustained.end >= _iso(
        told["tail"]["start"]
    ) - timedelta(minutes=2)


def test_a_tail_under_the_threshold_is_still_the_surge():
    """A flood's milder tail, under the alarm's threshold but well above the readers, keeps the surge going until the
    rate is back at the readers' level: the attackers of the tail are then looked for, and found, too."""
    rates = np.full(8 * 3600, 3.0)
    onset = 3 * 3600 + 17
    rates[onset : onset + 1200] += 40  # twenty minutes of flood
    end = onset + 1200 + 3600
    rates[onset + 1200 : end] += 2.0  # an hour's tail at 5 requests per second: under twice the readers' 3
    seconds = _seconds(rates)
    settings = DetectSettings()
    baseline = minute_baseline(seconds, settings)
    minute = (onset + 1800) // 60  # a minute of the tail: not anomalous
    assert baseline.rate_rps[minute] < baseline.threshold_rps[minute]
    (surge,) = find_surges(seconds, baseline, settings)
    assert abs((surge.start - (START + timedelta(seconds=onset))).total_seconds()) <= 30
    assert abs((surge.end - (START + timedelta(seconds=end))).total_seconds()) <= 300
