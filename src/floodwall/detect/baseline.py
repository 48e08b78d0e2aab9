"""The site's expected request rate per minute: a robust seasonal baseline, or a rolling one when history is short.

With `seasonal_days` of history or more, the expectation of a minute is the lower quartile of the same hour of the
day (of the week, from 14 days) over the whole log, with a spread from the lower tail: a flood occupying that hour on
up to three days in four does not move it. With less history it is the median of the trailing
`rolling_minutes`, where minutes already judged anomalous are replaced by their expectation, so a long flood cannot
become its own baseline (the "masking" of robust control charts; Rousseeuw & Croux 1993 for MAD's breakdown point).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import polars as pl

from floodwall.detect.settings import DetectSettings

__all__ = ["MinuteBaseline", "minute_baseline", "minute_rates"]

Floats = npt.NDArray[np.float64]
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, slots=True)
class MinuteBaseline:
    """Per minute of the log: observed and expected requests per second, the spread, and the threshold."""

    minutes: pl.Series  # the minute starts, UTC, contiguous
    rate_rps: Floats
    expected_rps: Floats
    spread_rps: Floats
    threshold_rps: Floats
    method: str  # "hour-of-week", "hour-of-day" or "rolling"

    def anomalous(self) -> npt.NDArray[np.bool_]:
        return self.rate_rps > self.threshold_rps


def minute_rates(seconds: pl.DataFrame) -> pl.DataFrame:
    """Requests per minute as a contiguous series (minutes without requests are zeros)."""
    if seconds.height == 0:
        return pl.DataFrame(schema={"minute": pl.Datetime("us", "UTC"), "requests": pl.UInt32()})
    per_minute = seconds.group_by(pl.col("ts").dt.truncate("1m").alias("minute")).agg(pl.col("requests").sum())
    first, last = per_minute.get_column("minute").min(), per_minute.get_column("minute").max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    span = pl.DataFrame({"minute": pl.datetime_range(first, last, "1m", eager=True)})
    return span.join(per_minute, on="minute", how="left").with_columns(pl.col("requests").fill_null(0)).sort("minute")


def _threshold(expected: Floats, spread: Floats, settings: DetectSettings) -> Floats:
    # Counting noise: a Poisson minute of `expected * 60` requests has a spread of sqrt(expected * 60) / 60 rps.
    noise = np.maximum(spread, np.sqrt(np.maximum(expected, 0.05) * 60) / 60)
    ratio = expected * settings.surge_ratio
    limit: Floats = np.maximum(np.maximum(ratio, expected + settings.surge_mads * noise), settings.min_flood_rps)
    return limit


def _seasonal(minutes: pl.Series, rate: Floats, weekly: bool) -> tuple[Floats, Floats]:
    hour = minutes.dt.hour().to_numpy().astype(np.int64)
    slot = hour + 24 * minutes.dt.weekday().to_numpy().astype(np.int64) if weekly else hour
    expected = np.zeros_like(rate)
    spread = np.zeros_like(rate)
    for value in np.unique(slot):
        mask = slot == value
        # The lower quartile, not the median: a flood lasting most of the days would be the median of its hours.
        # Spread from the lower tail ((q25 - q10) / 0.607 estimates a normal sigma), robust to 75% contamination.
        q10, q25 = np.quantile(rate[mask], [0.10, 0.25])
        expected[mask] = float(q25)
        spread[mask] = float(q25 - q10) / 0.607
    return expected, spread


def _rolling(rate: Floats, settings: DetectSettings) -> tuple[Floats, Floats]:
    # A sequential loop over minutes (not rows): masking needs each minute's verdict before the next one's. The loop
    # works on Python floats (`statistics.median` of 180 values costs a tenth of numpy's call overhead per minute);
    # medians and thresholds are the same IEEE operations as numpy's, so the values are identical.
    window = settings.rolling_minutes
    n = rate.size
    expected = np.zeros(n)
    spread = np.zeros(n)
    rates = rate.tolist()
    clean = list(rates)
    # Before any history, the lower half of the whole log is the best guess of "normal".
    start = float(np.quantile(rate, 0.25)) if n else 0.0
    for i in range(n):
        history = clean[max(0, i - window) : i]
        if len(history) >= 10:
            median = statistics.median(history)
            mad = statistics.median([abs(x - median) for x in history])
        else:
            median, mad = start, 0.0
        expected[i] = median
        spread_i = _MAD_TO_SIGMA * mad
        spread[i] = spread_i
        # Winsorised history: a minute enters at most three spreads above its expectation, so a flood that creeps
        # up under the threshold cannot drag the baseline up with it (anomalous minutes enter as their expectation).
        noise = max(spread_i, math.sqrt(max(median, 0.05) * 60) / 60)
        limit = max(median * settings.surge_ratio, median + settings.surge_mads * noise, settings.min_flood_rps)
        if rates[i] > limit:
            clean[i] = median
        elif len(history) >= 10:
            clean[i] = min(rates[i], median + 3 * noise)
    return expected, spread


def minute_baseline(seconds: pl.DataFrame, settings: DetectSettings) -> MinuteBaseline:
    """The baseline of the per-second counts `seconds` (columns ts, requests), by minute."""
    frame = minute_rates(seconds)
    minutes = frame.get_column("minute")
    rate = frame.get_column("requests").to_numpy().astype(np.float64) / 60.0
    days = rate.size / 1440
    if days >= max(14, settings.seasonal_days):
        expected, spread = _seasonal(minutes, rate, weekly=True)
        method = "hour-of-week"
    elif days >= settings.seasonal_days:
        expected, spread = _seasonal(minutes, rate, weekly=False)
        method = "hour-of-day"
    else:
        expected, spread = _rolling(rate, settings)
        method = "rolling"
    return MinuteBaseline(minutes, rate, expected, spread, _threshold(expected, spread, settings), method)
