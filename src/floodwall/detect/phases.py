"""The phases of a flood: what a person reading its rate chart would call them (a test flood, waves, a tail).

A phase is a stretch of one level of attack traffic. We work on the per-minute *excess* over the readers' usual rate
for that hour of the day (so a three-day flood is not cut by the daily cycle), in log scale (floods vary by
multiples, and their noise is multiplicative). Boundaries are found in three steps:

1. Candidates: minutes where the median level of the next few minutes differs from that of the previous few by at
   least `_MIN_STEP` (a local two-window step detector; a smooth swell moves these medians far less than a step).
2. Validation: a boundary stays only if the step across it, measured on up to `_CONFIRM_MIN` minutes either side
   (inside its two segments), is at least `_MIN_STEP` and at least `_SIGNIFICANCE` noise spreads, and both segments
   last `_MIN_PHASE_MIN` minutes; the weakest failing boundary goes first, until all stand.
3. Dips: a stretch lower and shorter than both neighbours, whose levels agree within `_SAME_LEVEL`, is a lull
   inside one phase, not two phases (an actor regrouping for half an hour in a three-day flood). A stretch with
   (almost) no excess that is not such a dip is a pause: it separates phases and belongs to none.

Then each boundary is placed to the second (the split of the per-second counts around it that best separates
the two levels). Labels: a short, lower first phase followed by a pause is the test flood; a last phase at half the
peak level or less is the tail; a final long phase at the peak after shorter steps is the sustained flood; the rest
are waves, numbered in order. Change-point detection by local two-sample tests is the classical approach for
piecewise-constant signals with slow drifts (Basseville & Nikiforov, "Detection of Abrupt Changes", 1993).
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from floodwall.model import Phase

__all__ = ["hourly_expectation", "phase_spans", "phases_from_counts"]

Floats = npt.NDArray[np.float64]

_DETECT_MIN = 5  # minutes either side of a candidate boundary
_CONFIRM_MIN = 10  # minutes either side when a boundary is confirmed
_MIN_STEP = float(np.log(1.2))  # the smallest change of level that makes a new phase: a fifth up or down
_LONG_MIN = 30  # stretches at least this long either side are judged over this many minutes
_LONG_STEP = float(np.log(1.5))  # ... and must differ by half at least
_SIGNIFICANCE = 3.0  # in noise spreads of the step
_MIN_PHASE_MIN = 3  # the shortest phase, in minutes
_SAME_LEVEL = float(np.log(1.5))  # neighbours of a dip within this are one phase
_PAUSE_SHARE = 0.15  # a stretch whose excess is under this share of the peak level is a pause
_REFINE_S = 120  # a boundary is placed to the second within this many seconds of its minute
_TEST_FLOOD_MAX_MIN = 10


def _medians(x: Floats, width: int) -> Floats:
    """Median of x[i : i + width] for every i where it fits."""
    if x.size < width:
        return np.empty(0)
    medians: Floats = np.median(sliding_window_view(x, width), axis=1)
    return medians


def _candidates(x: Floats) -> list[int]:
    """Minute indices where the level seems to step (start of the new level)."""
    w = _DETECT_MIN
    ahead = _medians(x, w)  # ahead[i] = median x[i : i + w]
    if ahead.size < w + 1:
        return []
    # Step at i (w <= i <= n - w): the median of x[i : i + w] minus that of x[i - w : i].
    steps = np.zeros(x.size)
    idx = np.arange(w, x.size - w + 1)
    steps[idx] = ahead[idx] - ahead[idx - w]
    size = np.abs(steps)
    # Local maxima of the step size within +-w minutes, large enough.
    padded = np.concatenate([np.zeros(w), size, np.zeros(w)])
    local_max = np.max(sliding_window_view(padded, 2 * w + 1), axis=1)
    chosen = np.flatnonzero((size >= _MIN_STEP) & (size >= local_max))
    # Medians step over a plateau of a few minutes around a step; means peak at the step itself: place each
    # candidate where the difference of means is largest nearby.
    cumulative = np.concatenate([[0.0], np.cumsum(x)])
    mean_steps = np.zeros(x.size)
    mean_steps[idx] = (cumulative[idx + w] - 2 * cumulative[idx] + cumulative[idx - w]) / w
    picked: list[int] = []
    for i in chosen.tolist():
        lo, hi = max(w, i - w + 1), min(x.size - w, i + w - 1)
        best = lo + int(
            np.argmax(np.abs(mean_steps[lo : hi + 1]) * (np.sign(mean_steps[lo : hi + 1]) == np.sign(steps[i])))
        )
        if not picked or best - picked[-1] >= _MIN_PHASE_MIN:
            picked.append(best)
    return picked


def _noise(x: Floats) -> float:
    """The minute-to-minute spread of the level (from first differences, robust to the steps themselves)."""
    if x.size < 3:
        return 0.0
    return float(1.4826 * np.median(np.abs(np.diff(x) - np.median(np.diff(x)))) / np.sqrt(2))


def _step(x: Floats, bounds: list[int], k: int, width: int = _CONFIRM_MIN) -> tuple[float, int, int]:
    """The step across boundary k of `bounds` (segment edges) and the window lengths used on each side."""
    lo, b, hi = bounds[k - 1], bounds[k], bounds[k + 1]
    left = x[max(lo, b - width) : b]
    right = x[b : min(hi, b + width)]
    return float(np.median(right) - np.median(left)), left.size, right.size


def _margin(x: Floats, bounds: list[int], k: int) -> float:
    """How far boundary k of `bounds` clears the tests of the module docstring (1 or more: it stands)."""
    step, n_left, n_right = _step(x, bounds, k)
    # The noise of the two segments themselves: a low tail is noisier in log scale than the peak.
    sigma = _noise(x[bounds[k - 1] : bounds[k + 1]])
    # 1.25: the efficiency of a median against a mean for normal noise.
    required = max(_MIN_STEP, _SIGNIFICANCE * 1.25 * sigma * np.sqrt(1 / n_left + 1 / n_right))
    margin = abs(step) / required
    # Between two long stretches, the step must be marked over half an hour: long floods breathe (a slow swell moves
    # half-hour medians by a third), and a reader of the chart sees one sustained phase.
    long_step, n_long_left, n_long_right = _step(x, bounds, k, _LONG_MIN)
    if min(n_long_left, n_long_right) >= _LONG_MIN:
        margin = min(margin, abs(long_step) / _LONG_STEP if long_step * step > 0 else 0.0)
    # The two stretches as wholes must differ as much (ten-minute windows at a noisy spot may not).
    whole = float(np.median(x[bounds[k] : bounds[k + 1]]) - np.median(x[bounds[k - 1] : bounds[k]]))
    if whole * step <= 0 or abs(whole) < _MIN_STEP:
        margin = min(margin, abs(whole) / _MIN_STEP if whole * step > 0 else 0.0)
    if min(n_left, n_right) < _MIN_PHASE_MIN:
        margin = min(margin, 0.0)
    return float(margin)


def _validate(x: Floats, cuts: list[int]) -> list[int]:
    """The candidate cuts that stand (see the module docstring), removing the weakest failing one at a time. A
    boundary's margin depends on its two segments only, so a removal recomputes its two neighbours' alone."""
    bounds = [0, *cuts, x.size]
    margins = [np.inf] + [_margin(x, bounds, k) for k in range(1, len(bounds) - 1)] + [np.inf]
    while len(bounds) > 2:
        worst = int(np.argmin(margins))
        if margins[worst] >= 1.0:
            break
        del bounds[worst]
        del margins[worst]
        for k in (worst - 1, worst):
            if 0 < k < len(bounds) - 1:
                margins[k] = _margin(x, bounds, k)
    return bounds


def _merge_dips(levels: list[float], bounds: list[int], pause: float) -> list[int]:
    """Bounds with lulls merged into the phase around them (see the module docstring). A lull may have been cut
    into several stretches itself (its level is noisy): any run of stretches lower than both neighbours counts.
    So does a brief swell: a run higher than both neighbours by less than half, when neither is a pause."""
    changed = True
    while changed:
        changed = False
        sizes = np.diff(bounds)
        for i in range(len(levels) - 2):
            for j in range(i + 2, len(levels)):
                left, right, run = levels[i], levels[j], levels[i + 1 : j]
                dip = max(run) < left
                bump = min(run) > left and max(run) - max(left, right) < _LONG_STEP and min(left, right) > pause
                if not (dip or bump):
                    break
                if (dip and max(run) >= right) or (bump and min(run) <= right):
                    continue
                if abs(left - right) < _SAME_LEVEL and _short(
                    int(sizes[i + 1 : j].sum()), int(sizes[i]), int(sizes[j]), first=i == 0
                ):
                    merged = (left * sizes[i] + right * sizes[j]) / (sizes[i] + sizes[j])
                    del bounds[i + 1 : j + 1]
                    levels[i : j + 1] = [float(merged)]
                    changed = True
                    break
            if changed:
                break
    return bounds


def _short(run: int, left: int, right: int, *, first: bool) -> bool:
    """A run of minutes is brief next to its neighbours: shorter than the longer one (a lull near the end of a long
    flood may leave a stub after it). After the first stretch, no longer than either too: a short test flood and
    the longer pause after it are two things, however alike the test's and the first wave's levels."""
    return run < max(left, right) and (not first or run <= min(left, right))


def _refine(counts: Floats, minute_edge_s: int, lo_s: int, hi_s: int) -> int:
    """The second near `minute_edge_s` that best splits counts[lo_s:hi_s] into two levels."""
    cum = np.concatenate([[0.0], np.cumsum(counts)])
    window = 600
    first = max(lo_s + 1, minute_edge_s - _REFINE_S)
    last = min(hi_s - 1, minute_edge_s + _REFINE_S)
    if last <= first:
        return minute_edge_s
    split = np.arange(first, last + 1)
    a = np.maximum(lo_s, split - window)
    b = np.minimum(hi_s, split + window)
    before = (cum[split] - cum[a]) / (split - a)
    after = (cum[b] - cum[split]) / (b - split)
    # The likelihood-ratio statistic of one change in a Poisson mean would weigh by counts; the plain difference of
    # means over equal windows picks the same second for steps this size and stays simple.
    return int(split[int(np.argmax(np.abs(after - before)))])


def phase_spans(excess: Floats) -> list[tuple[int, int, float]]:
    """Phases of a per-minute excess rate: (first minute, end minute exclusive, median excess), pauses left out."""
    if excess.size == 0:
        return []
    top = float(np.quantile(excess, 0.98))
    if top <= 0:
        return [(0, excess.size, 0.0)]
    floor = 0.05 * top
    x = np.log(np.maximum(excess, 0.0) + floor)
    bounds = _validate(x, _candidates(x))
    levels = [float(np.median(excess[a:b])) for a, b in itertools.pairwise(bounds)]
    log_levels = [float(np.log(max(v, 0.0) + floor)) for v in levels]
    pause = float(np.log(_PAUSE_SHARE * max(levels) + floor))
    bounds = _merge_dips(log_levels, bounds, pause)
    spans = [(a, b, float(np.median(excess[a:b]))) for a, b in itertools.pairwise(bounds)]
    peak_level = max(level for _, _, level in spans)
    return [s for s in spans if s[2] >= _PAUSE_SHARE * peak_level]


def _labels(spans: list[tuple[int, int, float]]) -> list[str]:
    if len(spans) == 1:
        return ["wave-1"]
    peak = max(level for _, _, level in spans)
    labels: list[str] = [""] * len(spans)
    first_a, first_b, first_level = spans[0]
    paused = spans[1][0] > first_b
    middle = list(range(len(spans)))
    if paused and first_b - first_a <= _TEST_FLOOD_MAX_MIN and first_level < 0.7 * peak:
        labels[0] = "test-flood"
        middle.remove(0)
    if len(middle) > 1 and spans[-1][2] <= 0.5 * peak:
        labels[-1] = "tail"
        middle.remove(len(spans) - 1)
    if len(middle) > 1:
        last = middle[-1]
        earlier = [spans[k][1] - spans[k][0] for k in middle[:-1]]
        length = spans[last][1] - spans[last][0]
        if spans[last][2] >= 0.7 * peak and length >= 3 * float(np.median(earlier)):
            labels[last] = "sustained"
            middle.remove(last)
    for n, k in enumerate(middle, start=1):
        labels[k] = f"wave-{n}"
    return labels


def phases_from_counts(
    times: pl.Series, counts: Floats, expected_rps: Floats, start: datetime, end: datetime, attack_share: float
) -> tuple[Phase, ...]:
    """The phases of a surge from its per-second `counts` (at `times`, one per second from `start` to `end`) and
    the readers' expected rate per second for each of those seconds."""
    offset = (60 - start.second) % 60  # the first whole clock minute, so minutes line up with the clock
    edges = np.concatenate([[0], np.arange(offset, counts.size, 60)]) if offset else np.arange(0, counts.size, 60)
    edges = np.unique(edges)
    widths = np.diff(np.append(edges, counts.size)).astype(np.float64)
    rate = np.add.reduceat(counts, edges) / widths
    expected = np.add.reduceat(expected_rps, edges) / widths
    spans = phase_spans(np.maximum(rate - expected, 0.0))
    if not spans:
        return (Phase(start, end, round(float(rate.max()) * attack_share, 1), "wave-1"),)
    labels = _labels(spans)
    sec = np.append(edges, counts.size)  # minute index -> its first second
    a0, b0 = spans[0][0], spans[0][1]
    firsts = [0 if a0 == 0 else _refine(counts, int(sec[a0]), 0, int(sec[b0]))]
    lasts: list[int] = []
    for (a0, b0, _), (a1, b1, _) in itertools.pairwise(spans):
        if b0 == a1:  # one boundary between two levels
            split = _refine(counts, int(sec[a1]), int(sec[a0]), int(sec[b1]))
            lasts.append(split - 1)
            firsts.append(split)
        else:  # a pause between: each edge against the pause
            lasts.append(_refine(counts, int(sec[b0]), int(sec[a0]), int(sec[a1])) - 1)
            firsts.append(_refine(counts, int(sec[a1]), int(sec[b0]), int(sec[b1])))
    a1, b1 = spans[-1][0], spans[-1][1]
    lasts.append(counts.size - 1 if b1 == len(edges) else _refine(counts, int(sec[b1]), int(sec[a1]), counts.size) - 1)
    phases: list[Phase] = []
    for (a, b, _), label, first_s, last_s in zip(spans, labels, firsts, lasts, strict=True):
        high = float(rate[a:b].max())
        phase_start = start if first_s == 0 else times[first_s]
        phase_end = end if last_s >= counts.size - 1 else times[max(first_s, last_s)]
        phases.append(Phase(_dt(phase_start), _dt(phase_end), round(high * attack_share, 1), label))
    return tuple(phases)


def _dt(value: object) -> datetime:
    assert isinstance(value, datetime)
    return value


def hourly_expectation(seconds: pl.DataFrame, start: datetime, end: datetime, fallback_rps: float) -> Floats:
    """The readers' rate per second expected at each second from `start` to `end`: per hour of the day, the median
    minute rate of the log outside the surge (an hour and a half either side kept out), or `fallback_rps`."""
    margin = timedelta(minutes=90)
    outside = seconds.filter(~pl.col("ts").is_between(start - margin, end + margin))
    span = pl.DataFrame({"ts": pl.datetime_range(start, end, "1s", eager=True, time_zone="UTC")})
    if outside.height == 0:
        return np.full(span.height, fallback_rps)
    per_minute = outside.group_by(pl.col("ts").dt.truncate("1m").alias("minute")).agg(pl.col("requests").sum())
    first, last = per_minute.get_column("minute").min(), per_minute.get_column("minute").max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    minutes = pl.DataFrame({"minute": pl.datetime_range(first, last, "1m", eager=True)})
    # Quiet minutes count as zeros (a log's missing minutes are minutes without requests), except inside the surge.
    inside = pl.col("minute").is_between(start - margin, end + margin)
    filled = minutes.join(per_minute, on="minute", how="left").filter(~inside).fill_null(0)
    hourly = filled.group_by(pl.col("minute").dt.hour().alias("hour")).agg(
        (pl.col("requests").median() / 60.0).alias("rps"), pl.len().alias("minutes")
    )
    hourly = hourly.filter(pl.col("minutes") >= 30)
    joined = span.with_columns(pl.col("ts").dt.hour().alias("hour")).join(
        hourly, on="hour", how="left", maintain_order="left"
    )
    expected: Floats = joined.get_column("rps").fill_null(fallback_rps).to_numpy().astype(np.float64)
    return expected
