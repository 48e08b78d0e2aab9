"""The simulation: plan every site, campaign and crowd, then generate each site's log slice by slice, in time order.

A slice is a run of whole minutes holding about `SLICE_ROWS` expected lines (and at most two hours), so memory stays
bounded whatever `scale` is; each slice's frames are merged, sorted and written before the next one is made. A page
view's assets can fall after the slice's end: those rows wait for the next slice. Every random draw comes from a
generator seeded by (seed, site, slice) or (seed, campaign), so a seed gives byte-identical output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from floodwall.errors import InputError
from floodwall.simulate.attacks import CampaignPlan, IncidentPlan, incident_id, plan_campaign
from floodwall.simulate.scenario import FlashCrowdSpec, Scenario, SiteSpec
from floodwall.simulate.sites import SiteContent, build_content
from floodwall.simulate.traffic import (
    AutomationClient,
    ClientPool,
    automation_events,
    build_automation,
    build_pool,
    sample_pages,
    visits,
)
from floodwall.simulate.truth import truth_document
from floodwall.simulate.writer import LogWriter, format_lines, write_truth

__all__ = ["SimulationProgress", "SimulationSummary", "simulate"]

SLICE_ROWS = 150_000
MAX_SLICE_MINUTES = 240
PAGES_PER_VISIT = 1 / 0.6  # the means of traffic.visits' geometric draws
SOCIAL_PAGES_PER_VISIT = 1 / 0.75
LINES_PER_PAGE_VIEW = 4.3  # a page, its assets and redirects, on average (see traffic.page_views)
# Local hours 0-23 of a news site's day: a night trough, a morning rise, an evening peak.
_DIURNAL = np.array(
    [
        *(0.45, 0.28, 0.18, 0.13, 0.13, 0.2, 0.5, 0.95, 1.3, 1.4, 1.35, 1.3),
        *(1.4, 1.35, 1.25, 1.2, 1.2, 1.25, 1.3, 1.4, 1.55, 1.6, 1.3, 0.85),
    ]
)
#: Where the URL schemes of `sites.py` keep files nginx serves itself, so they survive an overloaded origin.
_STATIC_PREFIXES = ("/wp-content/", "/wp-includes/", "/static/", "/assets/", "/media/", "/images/", "/_next/")
_WEEKLY = np.array([1.05, 1.05, 1.05, 1.05, 1.0, 0.85, 0.9])  # Monday first


@dataclass(frozen=True, slots=True)
class SimulationProgress:
    site: str
    lines_written: int  # over all sites so far
    lines_expected: int  # an estimate over all sites


@dataclass(frozen=True, slots=True)
class SimulationSummary:
    scenario: str
    seed: int
    scale: float
    logs: tuple[tuple[str, Path, int], ...]  # (site, path, lines)
    truth: Path
    incidents: int

    @property
    def lines(self) -> int:
        return sum(n for _, _, n in self.logs)


@dataclass
class SitePlan:
    index: int
    spec: SiteSpec
    content: SiteContent
    readers: ClientPool
    crowd: ClientPool
    robots: list[AutomationClient]
    start_s: float
    minutes: int
    page_view_rps: np.ndarray  # per minute
    crowds: list[tuple[FlashCrowdSpec, np.ndarray]]  # page views per second, per minute of the window
    incidents: list[IncidentPlan]
    crowd_seen_readers: list[np.ndarray]  # per flash crowd, which readers of the pool took part
    crowd_seen_new: list[np.ndarray]  # per flash crowd, which newcomers took part

    def expected_rows(self, scale: float) -> np.ndarray:
        rows = self.page_view_rps * LINES_PER_PAGE_VIEW * 60
        for _, rate in self.crowds:
            rows = rows + rate * LINES_PER_PAGE_VIEW * 60
        crawl = sum(r.agent.rps for r in self.robots) * scale * 60
        rows = rows + crawl
        for inc in self.incidents:
            m0 = int((inc.start_s - self.start_s) // 60)
            seg = inc.rps_per_minute[: max(0, self.minutes - m0)] * 60
            rows[m0 : m0 + len(seg)] += seg
        return rows


def _local_hours(start_s: float, minutes: int, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    zone = ZoneInfo(timezone)
    hours = int(np.ceil(minutes / 60)) + 1
    offsets = np.array(
        [datetime.fromtimestamp(start_s + h * 3600, tz=zone).utcoffset().total_seconds() for h in range(hours)]  # type: ignore[union-attr]
    )
    t = start_s + 60.0 * np.arange(minutes)
    local = t + offsets[np.arange(minutes) // 60]
    hour = (local % 86_400) / 3600.0
    weekday = ((local // 86_400).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    return hour, weekday


def _reader_rate(site: SiteSpec, start_s: float, minutes: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    hour, weekday = _local_hours(start_s, minutes, site.timezone)
    diurnal = np.interp(hour, np.arange(25), np.append(_DIURNAL, _DIURNAL[0])) / _DIURNAL.mean()
    drift = np.cumsum(rng.normal(0, 0.004, minutes))
    drift = np.exp(drift - np.linspace(0, drift[-1], minutes))  # a slow wander that comes back to where it began
    rate: np.ndarray = site.page_views_per_day / 86_400 * scale * diurnal * _WEEKLY[weekday] * drift
    return rate


def _crowd_rate(crowd: FlashCrowdSpec, base: np.ndarray, start_s: float) -> np.ndarray:
    x = (start_s + 60.0 * np.arange(len(base)) - crowd.start.timestamp()) / 60.0
    rise = np.clip(x / crowd.rise_minutes, 0, 1)
    decay = np.exp(-np.clip(x - crowd.rise_minutes, 0, None) / (crowd.duration_minutes / 3))
    shape = np.where((x >= 0) & (x < crowd.duration_minutes), rise * decay, 0.0)
    m0 = int(max(0, min(len(base) - 1, -x[0])))
    rate: np.ndarray = base[m0] * (crowd.multiplier - 1) * shape
    return rate


def _plan(scenario: Scenario, seed: int, scale: float) -> tuple[list[SitePlan], list[CampaignPlan]]:
    exclude: set[str] = set()
    ordinals: dict[str, int] = {}
    ids: list[list[str]] = []
    everything = sorted(
        ((inc.start, c_i, i) for c_i, c in enumerate(scenario.campaigns) for i, inc in enumerate(c.incidents)),
    )
    by_key: dict[tuple[int, int], str] = {}
    for start, c_i, i in everything:
        site_name = scenario.campaigns[c_i].incidents[i].site
        ordinals[site_name] = ordinals.get(site_name, 0) + 1
        by_key[(c_i, i)] = incident_id(site_name, start, ordinals[site_name])
    for c_i, c in enumerate(scenario.campaigns):
        ids.append([by_key[(c_i, i)] for i in range(len(c.incidents))])
    campaigns = [
        plan_campaign(c, c_i, scale, np.random.default_rng([seed, 1, c_i]), exclude, ids[c_i])
        for c_i, c in enumerate(scenario.campaigns)
    ]
    sites: list[SitePlan] = []
    for s_i, site in enumerate(scenario.sites):
        rng = np.random.default_rng([seed, 2, s_i])
        start_s, end_s = site.start.timestamp(), site.end.timestamp()
        minutes = int((end_s - start_s) // 60)
        crowds = [f for f in scenario.flash_crowds if f.site == site.name]
        robots = build_automation(rng, exclude)
        days = (end_s - start_s) / 86_400
        pool_size = int(min(250_000, max(200, site.page_views_per_day * scale * 0.35 * (1 + 0.3 * (days - 1)))))
        readers = build_pool(site, pool_size, rng, exclude)
        crowd_size = int(min(200_000, max(100, sum(f.multiplier for f in crowds) * pool_size * 0.15)))
        crowd = build_pool(site, crowd_size if crowds else 1, rng, exclude, mobile_boost=0.2)
        # Content and the day's shape come from their own generators, the same whatever the scale.
        content = build_content(site, crowds, np.random.default_rng([seed, 5, s_i]), start_s, end_s)
        rate = _reader_rate(site, start_s, minutes, scale, np.random.default_rng([seed, 6, s_i]))
        sites.append(
            SitePlan(
                index=s_i,
                spec=site,
                content=content,
                readers=readers,
                crowd=crowd,
                robots=robots,
                start_s=start_s,
                minutes=minutes,
                page_view_rps=rate,
                crowds=[(f, _crowd_rate(f, rate, start_s)) for f in crowds],
                incidents=[inc for c in campaigns for inc in c.incidents if inc.spec.site == site.name],
                crowd_seen_readers=[np.zeros(len(readers.weights), dtype=bool) for _ in crowds],
                crowd_seen_new=[np.zeros(len(crowd.weights), dtype=bool) for _ in crowds],
            )
        )
    return sites, campaigns


def _slices(expected: np.ndarray) -> list[tuple[int, int]]:
    bounds: list[tuple[int, int]] = []
    start, acc = 0, 0.0
    for m, rows in enumerate(expected.tolist()):
        acc += rows
        if acc >= SLICE_ROWS or m + 1 - start >= MAX_SLICE_MINUTES:
            bounds.append((start, m + 1))
            start, acc = m + 1, 0.0
    if start < len(expected):
        bounds.append((start, len(expected)))
    return bounds


def _reader_frames(plan: SitePlan, m0: int, m1: int, rng: np.random.Generator) -> list[pl.DataFrame]:
    frames: list[pl.DataFrame] = []
    minute_s = plan.start_s + 60.0 * np.arange(m0, m1)
    mid = float(minute_s.mean())
    counts = rng.poisson(plan.page_view_rps[m0:m1] * 60 / PAGES_PER_VISIT)
    ts = np.repeat(minute_s, counts) + rng.random(int(counts.sum())) * 60
    if len(ts):
        who = plan.readers.sample(len(ts), rng)
        pages = sample_pages(plan.content, len(ts), mid, rng)
        readers, agents = plan.readers.addresses.gather(who), plan.readers.agents.gather(who)
        frames.append(visits(plan.content, ts, readers, agents, pages, False, mid, rng))
    for c_i, (_, rate) in enumerate(plan.crowds):
        counts = rng.poisson(rate[m0:m1] * 60 / SOCIAL_PAGES_PER_VISIT)
        n = int(counts.sum())
        if n == 0:
            continue
        ts = np.repeat(minute_s, counts) + rng.random(n) * 60
        known = rng.random(n) < 0.6  # mostly people who read the site anyway
        old = plan.readers.sample(n, rng)
        new = plan.crowd.sample(n, rng)
        plan.crowd_seen_readers[c_i][old[known]] = True
        plan.crowd_seen_new[c_i][new[~known]] = True
        clients = pl.select(
            pl.when(pl.Series(known))
            .then(plan.readers.addresses.gather(old))
            .otherwise(plan.crowd.addresses.gather(new))
        ).to_series()
        agents = pl.select(
            pl.when(pl.Series(known)).then(plan.readers.agents.gather(old)).otherwise(plan.crowd.agents.gather(new))
        ).to_series()
        breaking = np.array(plan.content.breaking[c_i])
        pages = np.where(rng.random(n) < 0.85, breaking[rng.integers(0, len(breaking), n)], 0)
        frames.append(visits(plan.content, ts, clients, agents, pages, True, mid, rng))
    return frames


def _overload(frame: pl.DataFrame, share: np.ndarray, first_minute_s: float, rng: np.random.Generator) -> pl.DataFrame:
    """The origin gives up above its capacity: dynamic pages become 502, 503 or 504; static files still flow."""
    minute = ((frame["ts"].to_numpy() / 1e6 - first_minute_s) // 60).astype(np.int64)
    p = share[np.clip(minute, 0, len(share) - 1)]
    target = frame["target"]
    static = target.str.starts_with("/favicon.ico")
    for prefix in _STATIC_PREFIXES:
        static |= target.str.starts_with(prefix)
    dynamic = (frame["status"] == 200) & ~static
    fail = dynamic.to_numpy() & (rng.random(frame.height) < p)
    code = np.array([502, 503, 504], dtype=np.int16)[rng.integers(0, 3, frame.height)]
    size = np.array([157, 190, 167], dtype=np.int64)[code - 502]
    return frame.with_columns(
        pl.Series("status", np.where(fail, code, frame["status"].to_numpy()), dtype=pl.Int16),
        pl.Series("bytes", np.where(fail, size, frame["bytes"].to_numpy()), dtype=pl.Int64),
    )


def _slice_frame(
    plan: SitePlan, m0: int, m1: int, seed: int, scale: float, rng: np.random.Generator
) -> pl.DataFrame | None:
    """Every request of minutes [m0, m1) of one site, unsorted; the parts are freed when this returns."""
    start_s, end_s = plan.start_s + m0 * 60, plan.start_s + m1 * 60
    human = _reader_frames(plan, m0, m1, rng)
    robots = [automation_events(plan.content, plan.robots, start_s, end_s, scale, rng, [seed, 4, plan.index])]
    attacks = [f for inc in plan.incidents if (f := inc.generate(plan.content, start_s, end_s, rng)) is not None]
    frames = [f.with_columns(protocol=pl.lit("HTTP/2.0")) for f in human if f.height]
    frames += [f.with_columns(protocol=pl.lit("HTTP/1.1")) for f in robots if f.height]
    frames += [f for f in attacks if f.height]  # attacks choose their protocol per address
    return pl.concat(frames) if frames else None


def _generate_site(plan: SitePlan, seed: int, scale: float, writer: LogWriter, report: Callable[[int], None]) -> None:
    expected = plan.expected_rows(scale)
    capacity = plan.spec.capacity_rps
    share = np.clip(1 - capacity * scale * 60 / np.maximum(expected, 1), 0, 0.92) if capacity else None
    pending: pl.DataFrame | None = None
    for k, (m0, m1) in enumerate(_slices(expected)):
        rng = np.random.default_rng([seed, 3, plan.index, k])
        fresh = _slice_frame(plan, m0, m1, seed, scale, rng)
        parts = [f for f in (pending, fresh) if f is not None and f.height]
        if not parts:
            continue
        merged = pl.concat(parts).sort("ts", maintain_order=True)
        del parts, fresh
        pending = None
        end_us = int((plan.start_s + m1 * 60) * 1e6)
        if m1 < plan.minutes:  # rows past the slice's end (a visit's later pages and assets) wait for the next one
            cut = merged["ts"].search_sorted(end_us, side="left")
            pending, merged = merged.slice(cut), merged.slice(0, cut)
        else:  # the log ends with its window: the last visits are cut short at its last microsecond
            merged = merged.with_columns(pl.col("ts").clip(upper_bound=end_us - 1))
        if share is not None and float(share[m0:m1].max(initial=0)) > 0:
            merged = _overload(merged, share[m0:m1], plan.start_s + m0 * 60, rng)
        rows = merged.height
        lines = format_lines(merged, plan.spec.timezone)
        del merged
        writer.write(lines)
        del lines
        report(rows)


def simulate(
    scenario: Scenario,
    out_dir: Path,
    seed: int | None = None,
    scale: float = 1.0,
    compress: bool = False,
    progress: Callable[[SimulationProgress], None] | None = None,
) -> SimulationSummary:
    """Write `<site>.access.log` (or `.log.gz`) for every site of `scenario`, and `truth.json`, into `out_dir`."""
    if not 0 < scale <= 1000:
        raise InputError(f"--scale {scale}: must be more than 0 and at most 1000")
    seed = scenario.seed if seed is None else seed
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot create the output folder: {exc.strerror}") from None
    sites, campaigns = _plan(scenario, seed, scale)
    expected_total = int(sum(float(p.expected_rows(scale).sum()) for p in sites))
    written = 0
    logs: list[tuple[str, Path, int]] = []
    for plan in sites:
        path = out_dir / f"{plan.spec.name}.access.log{'.gz' if compress else ''}"
        writer = LogWriter(path, compress)

        def report(rows: int, name: str = plan.spec.name) -> None:
            nonlocal written
            written += rows
            if progress is not None:
                progress(SimulationProgress(name, written, max(expected_total, written)))

        try:
            _generate_site(plan, seed, scale, writer, report)
        finally:
            writer.close()
        logs.append((plan.spec.name, path, writer.lines))
    truth_path = out_dir / "truth.json"
    write_truth(truth_path, truth_document(scenario, seed, scale, sites, campaigns, logs))
    return SimulationSummary(
        scenario.name,
        seed,
        scale,
        tuple(logs),
        truth_path,
        sum(1 for c in campaigns for inc in c.incidents if inc.requests),
    )
