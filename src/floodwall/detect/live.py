"""Live judgement: a surge declared within seconds of its onset, its clients judged on the seconds since.

The live baseline is the median of recent quiet seconds (frozen while a surge runs); a surge starts when the mean
of the last three seconds stays above the threshold for `live_confirm_s` seconds, and ends after a minute below it.
The second still being written (the last of a batch) counts as a lower bound of its total: the mean with it can
only grow when the rest of that second arrives, so once it is above the threshold that second is above for sure,
and the onset is not held back a whole second waiting for the log to move on.

While a surge runs, every batch re-judges the clients seen since the onset (at most `live_horizon_s`) with the
same `judge_interval` as batch analysis, against a profile of the quiet windows closed so far, and returns the
findings that are new or markedly stronger. The per-client windows come from the engine as they close, so a batch
costs the aggregation of the one window still open plus the judgement, not a re-aggregation of the whole horizon.
The profile is rebuilt every five minutes of quiet traffic, and sooner while it is young: whenever the quiet
history has grown by half since the last build (10 s, 15 s, 23 s, ... of history, at least `_YOUNG_PROFILE_EVERY_S`
apart) until it holds `_YOUNG_PROFILE_S`. A rebuild costs in proportion to the history (some 2 s of CPU for 30 s
at 20,000 lines/s), so these add up to a few rebuilds' worth; and a watcher just started, with a profile of its
first seconds, would judge
every reader unknown and new). Breach signature hits become findings as they arrive.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from floodwall.detect.breach import family_totals
from floodwall.detect.judge import JudgeContext, judge_interval
from floodwall.detect.profile import build_profile
from floodwall.detect.settings import DetectSettings
from floodwall.detect.windows import WINDOW_SCHEMA, ClientWindows
from floodwall.model import Finding, Vector

__all__ = ["LiveWatch"]

_QUIET_HISTORY_S = 1800
_END_AFTER_S = 60
_PROFILE_EVERY_S = 300
_YOUNG_PROFILE_S = 600
_YOUNG_PROFILE_EVERY_S = 10
_YOUNG_PROFILE_GROWTH = 1.5
_ACTIVE = timedelta(seconds=3)  # clients with a request this close to the newest are judged again
_PROFILE_HORIZON = timedelta(hours=6)


class LiveWatch:
    """The streaming half of the engine; `Engine.feed` hands it each batch's tokens and aggregates."""

    def __init__(self, site: str, settings: DetectSettings) -> None:
        self.site = site
        self.settings = settings
        self._history: deque[float] = deque(maxlen=_QUIET_HISTORY_S)
        self._recent_counts: deque[float] = deque(maxlen=3)
        self._pending: tuple[datetime, int] | None = None  # the last second of the last batch (maybe partial)
        self._stepped: datetime | None = None  # a second stepped while still being written
        self._above = 0
        self._below = 0
        self.surge_start: datetime | None = None
        self._threshold = 0.0
        self._rows: list[pl.DataFrame] = []
        self._recent: list[pl.DataFrame] = []  # closed client windows of the last horizon
        self._quiet: list[pl.DataFrame] = []
        self._quiet_since: datetime | None = None  # the first quiet window kept
        self._context_span_s = 0.0  # seconds of quiet history behind the current profile
        self._context: JudgeContext | None = None
        self._context_at: datetime | None = None
        self._reported: dict[str, float] = {}
        self._breach_counts: dict[str, int] = {}

    def feed(
        self, toks: pl.DataFrame, seconds: pl.DataFrame, closed: pl.DataFrame, breach: pl.DataFrame
    ) -> list[Finding]:
        now = toks.get_column("ts").max()
        assert isinstance(now, datetime)
        self._keep_rows(toks, now)
        if closed.height:
            self._recent.append(closed)
            if self.surge_start is None:
                self._quiet.append(closed)
                if self._quiet_since is None:
                    first = closed.get_column("window").min()
                    self._quiet_since = first if isinstance(first, datetime) else None
        self._step_seconds(seconds)
        findings = self._breach_findings(breach)
        if self.surge_start is None:
            self._refresh_context(now)
            return findings
        return findings + self._judge(now)

    def _keep_rows(self, toks: pl.DataFrame, now: datetime) -> None:
        horizon = now - timedelta(seconds=self.settings.live_horizon_s + self.settings.window_s)
        self._rows.append(toks)
        while len(self._rows) > 1:
            newest = self._rows[0].get_column("ts").max()
            if isinstance(newest, datetime) and newest < horizon:
                self._rows.pop(0)
            else:
                break
        while len(self._recent) > 1:
            newest = self._recent[0].get_column("window").max()
            if isinstance(newest, datetime) and newest < horizon:
                self._recent.pop(0)
            else:
                break

    def _threshold_now(self) -> float:
        if len(self._history) < 30:
            return float("inf")
        base = float(np.median(np.fromiter(self._history, dtype=np.float64)))
        noise = float(np.sqrt(max(base, 0.05) / 3))
        s = self.settings
        return max(base * s.surge_ratio, base + s.surge_mads * noise, s.min_flood_rps)

    def _step_seconds(self, seconds: pl.DataFrame) -> None:
        # One step per second of traffic (not per request); the batch's last second may continue in the next one.
        stamps = seconds.get_column("ts").to_list()
        counts = seconds.get_column("requests").to_list()
        if stamps and stamps[0] == self._stepped:  # the rest of a second already stepped
            stamps, counts = stamps[1:], counts[1:]
        if self._pending is not None:
            if stamps and stamps[0] == self._pending[0]:
                counts[0] += self._pending[1]
            else:
                stamps.insert(0, self._pending[0])
                counts.insert(0, self._pending[1])
        if not stamps:
            return
        self._pending = (stamps[-1], counts[-1])
        previous: datetime | None = None
        for stamp, count in zip(stamps[:-1], counts[:-1], strict=True):
            if previous is not None:  # seconds without requests count as zeros
                for _ in range(min(int((stamp - previous).total_seconds()) - 1, 60)):
                    self._one_second(previous, 0.0)
            self._one_second(stamp, float(count))
            previous = stamp
        self._provisional_onset()

    def _provisional_onset(self) -> None:
        """Declare the surge on the second still being written when its count so far already settles it."""
        if self.surge_start is not None or self._pending is None:
            return
        stamp, count = self._pending
        recent = [*list(self._recent_counts)[-2:], float(count)]
        confirmed = (
            self._above + 1 >= self.settings.live_confirm_s and sum(recent) / len(recent) > self._threshold_now()
        )
        if confirmed or self._burst(float(count)):  # lower bounds: the second can only grow
            self._one_second(stamp, float(count))
            self._pending = None
            self._stepped = stamp  # the rest of that second must not count as a second of its own

    def _burst(self, count: float) -> bool:
        """One second so far above the threshold for a single second, by at least `live_confirm_requests`."""
        if len(self._history) < 30:
            return False
        base = float(np.median(np.fromiter(self._history, dtype=np.float64)))
        s = self.settings
        single = max(base * s.surge_ratio, base + s.surge_mads * float(np.sqrt(max(base, 0.05))), s.min_flood_rps)
        return count > single and count - base >= s.live_confirm_requests

    def _one_second(self, stamp: datetime, count: float) -> None:
        self._recent_counts.append(count)
        smooth = sum(self._recent_counts) / len(self._recent_counts)
        if self.surge_start is None:
            threshold = self._threshold_now()
            if smooth > threshold or self._burst(count):
                self._above += 1
                if self._above >= self.settings.live_confirm_s or self._burst(count):
                    self.surge_start = stamp - timedelta(seconds=self._above + 1)
                    self._threshold = threshold
                    self._below = 0
                return
            self._above = 0
            self._history.append(count)
            return
        if smooth <= self._threshold:
            self._below += 1
            if self._below >= _END_AFTER_S:
                self.surge_start = None
                self._above = 0
        else:
            self._below = 0

    def _refresh_context(self, now: datetime) -> None:
        span_s = (now - self._quiet_since).total_seconds() if self._quiet_since is not None else 0.0
        if self._context_at is not None:
            elapsed_s = (now - self._context_at).total_seconds()
            young = self._context_span_s < _YOUNG_PROFILE_S
            grown = span_s >= _YOUNG_PROFILE_GROWTH * self._context_span_s
            if elapsed_s < _PROFILE_EVERY_S and not (young and grown and elapsed_s >= _YOUNG_PROFILE_EVERY_S):
                return
        quiet = pl.concat(self._quiet) if self._quiet else pl.DataFrame(schema=WINDOW_SCHEMA)
        quiet = quiet.filter(pl.col("window") >= now - _PROFILE_HORIZON)
        self._quiet = [quiet]
        first = quiet.get_column("window").min()
        self._quiet_since = first if isinstance(first, datetime) else None
        self._context_span_s = span_s
        profile = build_profile(quiet, None, self.settings)
        self._context = JudgeContext.build(quiet, pl.repeat(True, quiet.height, eager=True), profile, self.settings)
        self._context_at = now

    def _windows_since(self, start: datetime) -> pl.DataFrame:
        """Client windows from `start` of the clients active in the last `_ACTIVE` seconds: the windows the engine
        closed, and the open one aggregated from raw rows.

        Only clients active now are judged: one still sending is one to stop, and judging the horizon's every
        reader each second costs seconds when readers are many (a 60 s horizon at 20,000 reader lines/s holds
        some 200,000 clients). A client's judgement still rests on all its windows within the horizon."""
        width = timedelta(seconds=self.settings.window_s)
        closed = [w for w in self._recent if w.height]
        ends = [end for w in closed if isinstance(end := w.get_column("window").max(), datetime)]
        # The engine closes every window before the one holding its newest row: what follows the newest closed
        # window is open. Without one, the open window starts where `start` falls.
        cut = max(ends) + width if ends else start - timedelta(seconds=start.timestamp() % self.settings.window_s)
        tail: list[pl.DataFrame] = []
        for rows in reversed(self._rows):
            tail.append(rows)
            first = rows.get_column("ts").min()
            if not isinstance(first, datetime) or first < cut:
                break
        open_rows = pl.concat(tail[::-1]).filter(pl.col("ts") >= cut) if tail else None
        if open_rows is None or open_rows.height == 0:
            return pl.DataFrame(schema=WINDOW_SCHEMA)
        newest = open_rows.get_column("ts").max()
        assert isinstance(newest, datetime)
        active = open_rows.filter(pl.col("ts") >= newest - _ACTIVE).get_column("client").unique()
        open_rows = open_rows.filter(pl.col("client").is_in(active))
        parts = [w.filter((pl.col("window") >= start - width) & pl.col("client").is_in(active)) for w in closed]
        windows = ClientWindows(self.settings.window_s)
        parts += [windows.add(open_rows), windows.flush()]
        parts = [part for part in parts if part.height]
        return pl.concat(parts) if parts else pl.DataFrame(schema=WINDOW_SCHEMA)

    def _judge(self, now: datetime) -> list[Finding]:
        assert self.surge_start is not None
        if self._context is None:
            self._refresh_context(now)
        assert self._context is not None
        start = max(self.surge_start, now - timedelta(seconds=self.settings.live_horizon_s))
        aggregated = self._windows_since(start)
        if aggregated.height == 0:
            return []
        judged = judge_interval(self._context, aggregated, start, now, self.settings, onset=self.surge_start)
        hostile = judged.filter(pl.col("attacker"))
        fresh = hostile.filter(
            pl.col("score")
            > pl.col("client").replace_strict(self._reported, default=0.0, return_dtype=pl.Float64) + 0.1
        )
        found = self._context.findings(fresh, self.surge_start, now)
        for finding in found:
            self._reported[finding.target] = finding.score
        return found

    def _breach_findings(self, breach: pl.DataFrame) -> list[Finding]:
        found: list[Finding] = []
        if breach.height == 0:
            return found
        per_client = breach.group_by("client").agg(
            pl.col("hits").sum(),
            pl.col("family").unique().sort(),
            pl.struct("family", "hits").alias("family_hits"),
            pl.col("vector").unique().sort(),
            pl.col("first_ts").min(),
            pl.col("last_ts").max(),
            pl.col("evidence_source").explode().head(5),
            pl.col("evidence_line").explode().head(5),
        )
        for client, hits, families, family_hits, vectors, first, last, sources, lines in per_client.iter_rows():
            before = self._breach_counts.get(client, 0)
            total = before + int(hits)
            self._breach_counts[client] = total
            only_login = set(families) <= {"login", "xmlrpc"}
            if only_login and total < self.settings.bruteforce_min:
                continue
            if before and not (only_login and before < self.settings.bruteforce_min):
                continue  # already reported
            found.append(
                Finding(
                    target=client,
                    kind="signature",
                    score=0.9 if not only_login else 0.85,
                    window_start=first,
                    window_end=last,
                    reasons=(f"{total} breach-attempt signature hits ({', '.join(families)})",),
                    vectors=tuple(Vector(v) for v in vectors),
                    evidence=tuple(zip(sources, lines, strict=False)),
                    breach_hits=family_totals(family_hits),
                )
            )
        return found
