"""Surges of the site's request rate: their onset and end to the second, and their phases.

Minutes above the baseline's threshold are grouped into stretches (gaps under `merge_gap_s` joined, so a test
flood, its pause and the waves are one surge). Onset and end are then refined on the per-second counts: the first
second from which the next ten seconds and the next minute average above the threshold, the last second up to which
the previous ones do.

The alarm's threshold is not where a surge ends, though: a flood's milder tail may run on for an hour under it
(hano-like seed 108: a tail at 0.7 requests per second, five times the readers' 0.15, under a morning threshold of
1.1 raised by a wide spread of that hour). So a surge lasts, past its last minute over the threshold, until the rate
has come back to the readers' level: until the next `_RELEASE_MIN` minutes average no more than the expected rate
plus `_RELEASE_SPREADS` spreads (of those minutes, or their counting noise if larger). This is the alarm with
hysteresis of control charts (raise on a high limit, clear on a lower one). The surge's end then bounds the span
in which its attackers are looked for; the flood incident runs to the attackers' last request.
Phases cut the surge's per-minute rate into level stretches: a short first burst followed by a pause is the test
flood, the stretches after it are waves, and a last stretch at under half the peak is the tail.

A surge is not yet an incident: a breaking-news crowd is a surge too. The engine makes it a flood incident only when
client and fleet judgement find its attackers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import polars as pl

from floodwall.detect.baseline import MinuteBaseline
from floodwall.detect.phases import hourly_expectation, phases_from_counts
from floodwall.detect.settings import DetectSettings
from floodwall.model import Phase

__all__ = ["Surge", "find_surges", "phases_of"]

_SMOOTH_S = 5
_RELEASE_MIN = 10  # minutes whose mean rate must be back at the readers' level for a surge to end
_RELEASE_SPREADS = 2.0  # ... within this many spreads of the expected rate
_MIN_PHASED_MIN = 6  # a surge shorter than this many minutes is one phase


@dataclass(frozen=True, slots=True)
class Surge:
    """A stretch of abnormal site rate."""

    start: datetime
    end: datetime
    peak_rps: float
    requests: int
    expected_rps: float  # the baseline at the onset
    threshold_rps: float


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs of `mask`."""
    if mask.size == 0:
        return []
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _merge(runs: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and a - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _second_series(seconds: pl.DataFrame, start: datetime, end: datetime) -> tuple[pl.Series, npt.NDArray[np.float64]]:
    span = pl.DataFrame({"ts": pl.datetime_range(start, end, "1s", eager=True, time_zone="UTC")})
    joined = span.join(seconds.select("ts", "requests"), on="ts", how="left").fill_null(0)
    return joined.get_column("ts"), joined.get_column("requests").to_numpy().astype(np.float64)


def _forward_mean(counts: npt.NDArray[np.float64], width: int) -> npt.NDArray[np.float64]:
    """Mean of counts[i : i + width] for every i (shorter at the end)."""
    cumulative = np.concatenate([[0.0], np.cumsum(counts)])
    ends = np.minimum(np.arange(counts.size) + width, counts.size)
    means: npt.NDArray[np.float64] = (cumulative[ends] - cumulative[: counts.size]) / (ends - np.arange(counts.size))
    return means


def _released(baseline: MinuteBaseline) -> npt.NDArray[np.bool_]:
    """Per minute: the next `_RELEASE_MIN` minutes average no more than the readers' level (module docstring)."""
    rate = _forward_mean(baseline.rate_rps, _RELEASE_MIN)
    expected = _forward_mean(baseline.expected_rps, _RELEASE_MIN)
    spread = _forward_mean(baseline.spread_rps, _RELEASE_MIN)
    counting = np.sqrt(np.maximum(expected, 0.05) * 60 * _RELEASE_MIN) / (60 * _RELEASE_MIN)
    released: npt.NDArray[np.bool_] = rate <= expected + _RELEASE_SPREADS * np.maximum(spread, counting)
    return released


def find_surges(seconds: pl.DataFrame, baseline: MinuteBaseline, settings: DetectSettings) -> list[Surge]:
    """The surges of the per-second counts `seconds` (ts, requests) against `baseline`."""
    anomalous = baseline.anomalous()
    runs = _merge(_runs(anomalous), settings.merge_gap_s // 60)
    surges: list[Surge] = []
    minutes = baseline.minutes
    released = _released(baseline)
    for k, (a, b) in enumerate(runs):
        threshold = float(np.min(baseline.threshold_rps[a:b]))
        expected = float(baseline.expected_rps[a])
        # The first minute from `b` on whose next minutes are back at the readers' level (never into the next run).
        stop = runs[k + 1][0] if k + 1 < len(runs) else len(minutes)
        back = np.flatnonzero(released[b:stop])
        tail_end = b + int(back[0]) if back.size else stop
        lo = max(0, a - 2)
        hi = min(len(minutes) - 1, tail_end + 1)
        times, counts = _second_series(seconds, minutes[lo], minutes[hi] + timedelta(seconds=59))
        # Onset: the first second from which both the next 10 s and the next minute average above the threshold
        # (one busy second of a quiet site is not an onset); end: the last second up to which both did.
        ahead_short, ahead_long = _forward_mean(counts, 10), _forward_mean(counts, 60)
        sustained = (ahead_short > threshold) & (ahead_long > threshold)
        if not sustained.any():
            continue
        first = int(np.flatnonzero(sustained)[0])
        while first < counts.size - 1 and counts[first] == 0:
            first += 1
        behind_short = _forward_mean(counts[::-1], 10)[::-1]
        behind_long = _forward_mean(counts[::-1], 60)[::-1]
        lasting = (behind_short > threshold) & (behind_long > threshold)
        last = int(np.flatnonzero(lasting)[-1]) if lasting.any() else counts.size - 1
        if tail_end > b:  # a tail under the threshold: to the last second before the rate came back
            last = max(last, min(counts.size, (tail_end - lo) * 60) - 1)
        while last > first and counts[last] == 0:
            last -= 1
        smooth = _forward_mean(counts, _SMOOTH_S)
        if last - first + 1 < settings.min_surge_s:
            continue
        start, end = times[first], times[last]
        peak = float(np.max(smooth[first : last + 1]))
        surges.append(
            Surge(
                start=start,
                end=end,
                peak_rps=round(peak, 1),
                requests=int(counts[first : last + 1].sum()),
                expected_rps=round(expected, 2),
                threshold_rps=round(threshold, 2),
            )
        )
    return surges


def phases_of(seconds: pl.DataFrame, surge: Surge, attack_share: float = 1.0) -> tuple[Phase, ...]:
    """The phases of `surge` from the log's per-second counts `seconds`: test flood, waves, sustained, tail
    (`floodwall.detect.phases`). The readers' usual rate is taken out hour by hour from the rest of the log."""
    times, counts = _second_series(seconds, surge.start, surge.end)
    if counts.size < 60 * _MIN_PHASED_MIN:
        return (Phase(surge.start, surge.end, surge.peak_rps, "wave-1"),)
    expected = hourly_expectation(seconds, surge.start, surge.end, surge.expected_rps)
    return phases_from_counts(times, counts, expected, surge.start, surge.end, attack_share)
