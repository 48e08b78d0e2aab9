"""The closed windows of a whole log, for `Engine.finish`: spilled to disk past a bound, read back part by part.

Batch analysis judges with hindsight (a baseline over all quiet time, surges known only at the end), so every
closed (client, window) row is kept until `finish`. That table grows with the log, about 0.73 rows and 230 bytes per
request: held in memory it was the largest thing `analyze` kept (0.8 GB at 5M lines, then copied whole by
`finish`). Here parts beyond `memory_rows` go to uncompressed Arrow IPC files in a temporary folder (0.04 s per 176k
rows; LZ4 would halve the disk but cost four times the CPU on every read), and `summarise` and `window_sums` read
them back one part at a time, folding each into per-client totals (`ClientTotals`) and small per-window sums. What
`finish` holds then follows the number of clients and of seconds in the log, not the number of lines.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, TypeVar

import polars as pl

from floodwall.detect.clients import ClientTotals
from floodwall.detect.judge import QUIET_ROWS
from floodwall.detect.profile import Profile
from floodwall.detect.result import attack_windows
from floodwall.detect.settings import DetectSettings
from floodwall.detect.windows import WINDOW_SCHEMA
from floodwall.logs.frame import constant_string

__all__ = ["Summary", "WindowHistory", "summarise", "window_sums"]

_TICK: Final = timedelta(microseconds=1)
_SOURCE: Final = "source"  # the evidence rows' input, stored once per spilled part when it is constant there
#: Partial totals folded together once this many are pending (each part's totals are as long as its clients).
_FOLD_EVERY: Final = 8
#: Pending `ClientTotals` rows (all four tables) that make `_Folding` fold, at the least.
_FOLD_ROWS: Final = 4_000_000
_THREADS: Final = 2  # parts summarised at once
_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


class WindowHistory:
    """Closed (client, window) rows in time order: in memory up to `memory_rows`, then in files in a temporary
    folder (made in `folder`, default the system's; removed by `close()` or when the history is garbage-collected)."""

    def __init__(self, memory_rows: int = 400_000, folder: Path | None = None) -> None:
        self.memory_rows = memory_rows
        self._folder = folder
        self._spill_to = Path()
        # Per spilled part: its file, and the evidence input (`source`) when every row of the part had the same one.
        self._files: list[tuple[Path, str | None, list[str]]] = []
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0
        self.rows = 0
        self._cleanup: weakref.finalize[..., WindowHistory] | None = None

    def add(self, part: pl.DataFrame) -> None:
        if part.height == 0:
            return
        self._pending.append(part)
        self._pending_rows += part.height
        self.rows += part.height
        if self._pending_rows > self.memory_rows:
            self._spill()

    def _spill(self) -> None:
        if self._cleanup is None:
            self._spill_to = Path(tempfile.mkdtemp(prefix="floodwall-windows-", dir=self._folder))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._spill_to, True)
        path = self._spill_to / f"windows-{len(self._files):05d}.arrow"
        part = pl.concat(self._pending)
        # A log's input name is the same on most rows and was a third of each file's bytes (a long path per row):
        # a part from one input keeps it once.
        source = constant_string(part.get_column(_SOURCE))
        (part if source is None else part.drop(_SOURCE)).write_ipc(path, compression="uncompressed")
        self._files.append((path, source, part.columns))
        self._pending, self._pending_rows = [], 0

    def parts(self, columns: Sequence[str] | None = None) -> Iterator[pl.DataFrame]:
        """Every part, oldest first; only `columns` when given (the files are read for those alone)."""
        for path, source, order in self._files:
            wanted = order if columns is None else list(columns)
            # Scanned, not read: `read_ipc` copied every buffer out of the file (twice the CPU at 5M lines).
            stored = [name for name in wanted if name != _SOURCE or source is None]
            part = pl.scan_ipc(path).select(stored).collect()
            if source is not None and _SOURCE in wanted:
                part = part.with_columns(pl.lit(source, dtype=pl.String).alias(_SOURCE)).select(wanted)
            yield part
        for part in self._pending:
            yield part if columns is None else part.select(columns)

    def close(self) -> None:
        """Forget every part and remove the files."""
        self._pending, self._pending_rows, self.rows = [], 0, 0
        self._files = []
        if self._cleanup is not None:
            self._cleanup()

    @property
    def spilled_files(self) -> int:
        return len(self._files)


class _Folding:
    """`ClientTotals` of consecutive parts, folded once the pending rows reach twice what the last fold left (and
    `_FOLD_ROWS` at least): memory stays within a few times the folded totals, and each row is folded a bounded
    number of times. Folding every 8 parts regrouped the 5M-line log's totals (1.6M rows, mostly one-off query
    keys) once more than needed, for 0.5 CPU-s."""

    def __init__(self, by: Sequence[str]) -> None:
        self.by = by
        self._parts: list[ClientTotals] = []
        self._rows = 0
        self._folded_rows = 0

    def add(self, totals: ClientTotals) -> None:
        self._parts.append(totals)
        self._rows += sum(table.height for table in totals.tables)
        if self._rows >= max(_FOLD_ROWS, 2 * self._folded_rows):
            self._parts = [ClientTotals.fold(self._parts, self.by)]
            self._rows = self._folded_rows = sum(table.height for table in self._parts[0].tables)

    def total(self) -> ClientTotals:
        return ClientTotals.fold(self._parts, self.by) if self._parts else ClientTotals.empty(self.by)


def _outside(busy: Sequence[tuple[datetime, datetime]]) -> pl.Expr:
    quiet = pl.lit(True)
    for start, end in busy:
        quiet = quiet & ~pl.col("window").is_between(start, end)
    return quiet


def _summed(frames: list[pl.DataFrame], key: str, value: str = "n") -> pl.DataFrame:
    return pl.concat(frames).lazy().group_by(key).agg(pl.col(value).sum()).collect()


@dataclass(frozen=True, slots=True)
class Summary:
    """What one pass over the history yields for `finish`."""

    profile: Profile
    quiet: ClientTotals  # per client and hour, of the most recent `QUIET_ROWS` quiet windows
    everyone: ClientTotals  # per client, of the whole log
    intervals: tuple[ClientTotals, ...]  # per client, of each interval asked for
    logins: pl.DataFrame  # windows mostly of POSTs (WINDOW_SCHEMA), for `breach.login_posters`
    per_window: pl.DataFrame  # window, requests: every client's requests per window
    clients: int


class _ProfileTotals:
    """`profile.build_profile`'s figures, folded part by part (same formulas; the quantile from a histogram)."""

    def __init__(self) -> None:
        self.agents: list[pl.DataFrame] = []
        self.schemes: list[pl.DataFrame] = []
        self.templates: list[pl.DataFrame] = []
        self.rates: list[pl.DataFrame] = []
        self.requests = 0
        self.assets = 0
        self.quiet_rows = 0

    @staticmethod
    def of_part(part: pl.DataFrame, quiet: pl.DataFrame) -> tuple[pl.DataFrame, ...]:
        """One part's figures (its windows, and those of them that are quiet), for `add`: computed on any thread."""
        # Lazy: polars 2.1's eager group_by carries every column of the part through the grouping (2-7x the CPU).
        n = pl.col("requests").cast(pl.Int64).sum().alias("n")
        quiet_lazy = quiet.lazy()
        return (
            quiet_lazy.group_by("ua_id").agg(n).collect(),
            quiet_lazy.filter(pl.col("query_keys") != "").group_by("query_keys").agg(n).collect(),
            quiet_lazy.group_by("template").agg(n).collect(),
            quiet_lazy.group_by("requests").agg(pl.len().cast(pl.Int64).alias("n")).collect(),
            quiet.select(
                pl.col("requests").cast(pl.Int64).sum(), pl.col("assets").cast(pl.Int64).sum(), pl.len().cast(pl.Int64)
            ),
        )

    def add(self, figures: tuple[pl.DataFrame, ...]) -> None:
        """Take the next part's `of_part` figures (parts in time order)."""
        agents, schemes, templates, rates, sums = figures
        self.agents.append(agents)
        self.schemes.append(schemes)
        self.templates.append(templates)
        self.rates.append(rates)
        requests, assets, rows = sums.row(0)
        self.requests += int(requests or 0)
        self.assets += int(assets or 0)
        self.quiet_rows += int(rows)
        if len(self.rates) >= _FOLD_EVERY:
            self._fold()

    def _fold(self) -> None:
        self.agents = [_summed(self.agents, "ua_id")]
        self.schemes = [_summed(self.schemes, "query_keys")]
        self.templates = [_summed(self.templates, "template")]
        self.rates = [_summed(self.rates, "requests")]

    def _quantile_rps(self, settings: DetectSettings) -> float:
        """Polars' `quantile(0.999)` ("nearest": index round((n - 1) q)) of the quiet windows' rates, from counts."""
        if self.quiet_rows == 0:
            return 0.0
        counts = self.rates[0].sort("requests").with_columns(pl.col("n").cum_sum().alias("upto"))
        index = int((self.quiet_rows - 1) * 0.999 + 0.5)
        value = counts.filter(pl.col("upto") > index).get_column("requests").head(1)
        return float((value.cast(pl.Float64) / settings.window_s).item())

    def profile(self, settings: DetectSettings, clients: pl.DataFrame) -> Profile:
        """The profile; `clients` is the whole log's per-client totals (`ClientTotals.clients`), whose first request
        is each client's first seen: the same minimum of the same windows, not grouped again part by part by the
        address's text (two group-bys per part, a tenth of the judging's CPU)."""
        if self.rates:
            self._fold()
        total = max(self.requests, 1)

        def shares(frames: list[pl.DataFrame], key: str) -> pl.DataFrame:
            if not frames:
                return pl.DataFrame(schema={key: WINDOW_SCHEMA[key], "share": pl.Float64})
            return frames[0].select(key, (pl.col("n") / total).alias("share"))

        return Profile(
            known_agents=shares(self.agents, "ua_id"),
            known_query_keys=shares(self.schemes, "query_keys"),
            known_templates=shares(self.templates, "template"),
            first_seen=clients.select("client", pl.col("first_ts").alias("first_seen")),
            net_first_seen=clients.lazy()
            .group_by("client_net")
            .agg(pl.col("first_ts").min().alias("net_first_seen"))
            .collect(),
            quiet_requests=self.requests,
            quiet_window_rps=self._quantile_rps(settings),
            asset_share=self.assets / self.requests if self.requests else 0.0,
        )


def _in_order(items: Iterable[_Item], work: Callable[[_Item], _Result]) -> Iterator[_Result]:
    """`work` of each of `items` (parts of the history), `_THREADS` at a time on threads of their own, the results in
    the items' order. A part's work is a dozen Polars queries, each too small to keep both cores busy (judging ran
    at 1.5 cores of 2), and Polars releases the GIL; at most `_THREADS` parts are held at once."""
    with ThreadPoolExecutor(_THREADS, thread_name_prefix="floodwall-history") as pool:
        running: deque[Future[_Result]] = deque()
        for item in items:
            running.append(pool.submit(work, item))
            if len(running) >= _THREADS:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()


@dataclass(frozen=True, slots=True)
class _PartFigures:
    """What `summarise` takes from one part of the history."""

    profile: tuple[pl.DataFrame, ...]  # `_ProfileTotals.of_part`
    quiet_hours: ClientTotals | None  # per client and hour, of its quiet windows among the most recent QUIET_ROWS
    segments: ClientTotals  # per client and segment
    logins: pl.DataFrame
    per_window: pl.DataFrame


def _part_figures(part: pl.DataFrame, is_quiet: pl.Expr, skip: int | None, edges: pl.Series) -> _PartFigures:
    """One part's figures for `summarise`: `skip` of its quiet windows are left out of the quiet hours (None: all)."""
    quiet = part.filter(is_quiet)
    hours = None
    if skip is not None:
        recent = quiet.slice(skip).with_columns(pl.col("window").dt.truncate("1h").alias("_by_hour"))
        hours = ClientTotals.of(recent, ["_by_hour"], evidence=False)
    segments = edges.search_sorted(part.get_column("window"), side="right").alias("_by_segment")
    return _PartFigures(
        profile=_ProfileTotals.of_part(part, quiet),
        quiet_hours=hours,
        segments=ClientTotals.of(part.with_columns(segments), ["_by_segment"]),
        logins=part.filter((pl.col("posts") >= 1) & (pl.col("posts") * 2 >= pl.col("requests"))),
        per_window=part.lazy().group_by("window").agg(pl.col("requests").cast(pl.Int64).sum()).collect(),
    )


def summarise(
    history: WindowHistory,
    busy: Sequence[tuple[datetime, datetime]],
    intervals: Sequence[tuple[datetime, datetime]],
    settings: DetectSettings,
) -> Summary:
    """The profile of the windows outside `busy`, and per-client totals of the whole log, of its recent quiet hours
    and of each (start, end) of `intervals` (windows starting within it, inclusive), in one pass over the history
    (two reads: the first counts the quiet windows, for the most recent `QUIET_ROWS`)."""
    is_quiet = _outside(busy)
    quiet_counts = [int(part.select(is_quiet.sum()).item()) for part in history.parts(["window"])]
    # The most recent QUIET_ROWS quiet windows: per part, how many of its quiet windows to skip (None: all of them).
    skip = max(0, sum(quiet_counts) - QUIET_ROWS)
    skips: list[int | None] = []
    for count in quiet_counts:
        skips.append(None if skip >= count else skip)
        skip = max(0, skip - count)
    # Each window's segment: how many interval edges come at or before it. One grouping per part by client and
    # segment then gives the whole log's totals and every interval's (an interval is a run of segments).
    edges = sorted({start for start, _ in intervals} | {end + _TICK for _, end in intervals})
    edge_series = pl.Series("edges", edges, dtype=WINDOW_SCHEMA["window"])
    profile = _ProfileTotals()
    segmented, quiet_hours = _Folding(["_by_segment"]), _Folding(["_by_hour"])
    logins: list[pl.DataFrame] = []
    per_window: list[pl.DataFrame] = []

    def take(figures: _PartFigures) -> None:
        profile.add(figures.profile)
        if figures.quiet_hours is not None:
            quiet_hours.add(figures.quiet_hours)
        segmented.add(figures.segments)
        logins.append(figures.logins)
        per_window.append(figures.per_window)

    parts = zip(history.parts(), skips, strict=True)
    for figures in _in_order(parts, lambda item: _part_figures(item[0], is_quiet, item[1], edge_series)):
        take(figures)
    by_segment = segmented.total()
    # The clients' evidence is their first windows: folded in time order, segment after segment (the other tables
    # hold sums, whose order does not matter).
    by_segment = ClientTotals(by_segment.clients.sort("_by_segment", maintain_order=True), *by_segment.tables[1:])
    spans = [
        (edge_series.search_sorted(start, side="right"), edge_series.search_sorted(end, side="right"))
        for start, end in intervals
    ]
    hour_text = pl.concat_str([pl.col("client"), pl.lit("@"), pl.col("_by_hour").cast(pl.String)])
    everyone = ClientTotals.fold([by_segment])
    built = profile.profile(settings, everyone.clients)
    return Summary(
        profile=built,
        quiet=ClientTotals.fold([quiet_hours.total().rekeyed(hour_text, ["_by_hour"])]),
        everyone=everyone,
        intervals=tuple(
            ClientTotals.fold([by_segment.where(pl.col("_by_segment").is_between(low, high))]) for low, high in spans
        ),
        logins=pl.concat(logins) if logins else pl.DataFrame(schema=WINDOW_SCHEMA),
        per_window=_summed(per_window, "window", "requests").sort("window")
        if per_window
        else pl.DataFrame(schema={"window": WINDOW_SCHEMA["window"], "requests": pl.Int64}),
        clients=built.first_seen.height,
    )


def window_sums(
    history: WindowHistory,
    selections: Sequence[tuple[Sequence[str], datetime, datetime]],
    pairs: pl.DataFrame,
    window_s: int,
) -> tuple[list[pl.DataFrame], pl.DataFrame]:
    """In one more pass over the history: per (clients, start, end) of `selections`, those clients' requests per
    window (window, requests) from `start - window_s` to `end`; and the attackers' requests per window (window,
    attack) of `result.attack_windows` for `pairs` (`result.attack_pairs`)."""
    found: list[list[pl.DataFrame]] = [[] for _ in selections]
    attack: list[pl.DataFrame] = []
    wanted = [pl.Series(list(clients), dtype=pl.String).implode() for clients, _, _ in selections]
    step = timedelta(seconds=window_s)
    everyone = pl.Series([c for clients, _, _ in selections for c in clients], dtype=pl.String).unique().implode()

    def of_part(part: pl.DataFrame) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
        members_only = part.filter(pl.col("client").is_in(everyone))
        per_selection = [
            members_only.filter(pl.col("client").is_in(clients) & pl.col("window").is_between(start - step, end))
            .group_by("window")
            .agg(pl.col("requests").cast(pl.Int64).sum())
            for clients, (_, start, end) in zip(wanted, selections, strict=True)
        ]
        return attack_windows(part, pairs), per_selection

    for attacked_part, per_selection in _in_order(history.parts(["client", "window", "requests"]), of_part):
        attack.append(attacked_part)
        for sums, members in zip(found, per_selection, strict=True):
            if members.height:
                sums.append(members)
    empty = pl.DataFrame(schema={"window": WINDOW_SCHEMA["window"], "requests": pl.Int64})
    nothing = pl.DataFrame(schema=WINDOW_SCHEMA)
    attacked = _summed(attack, "window", "attack") if attack else attack_windows(nothing, pairs)
    return [_summed(sums, "window", "requests") if sums else empty for sums in found], attacked
