"""Site level: baseline, onset and end to the second, phases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from floodwall.detect.baseline import minute_baseline
from floodwall.detect.onset import find_surges, phases_of
from floodwall.detect.settings import DetectSettings

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
