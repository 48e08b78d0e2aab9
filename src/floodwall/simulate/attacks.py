"""Attack campaigns: address pools shared across incidents, phased rate profiles, vectors as request shapes, markers.

A campaign owns one pool of addresses (a few hosting providers' subnets, or residential proxies spread thin over
many countries). Each incident takes part of the pool's *core*, which every incident of the campaign shares, and a
fresh part of its own, so incidents on different sites can be linked by the addresses they share. Floods have
phases: a short test flood at a third of the peak, a pause, waves that step up every `wave_minutes`, a sustained
stretch and a milder tail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from floodwall.model import IncidentKind, Vector
from floodwall.simulate.agents import SCANNER_AGENTS, flood_agents
from floodwall.simulate.networks import HOSTING, draw_addresses, networks_for
from floodwall.simulate.payloads import vector_requests
from floodwall.simulate.scenario import CampaignSpec, IncidentSpec
from floodwall.simulate.sites import SiteContent
from floodwall.simulate.traffic import events

__all__ = ["CampaignPlan", "IncidentPlan", "PhasePlan", "plan_campaign"]

_PROXY_COUNTRIES = ("BR", "IN", "VN", "ID", "TR", "US", "RU", "UA", "PL", "MX", "PH", "EG", "DE", "GB")


@dataclass(frozen=True)
class PhasePlan:
    label: str
    start_s: float
    end_s: float
    peak_rps: float


@dataclass
class IncidentPlan:
    """One incident, ready to generate: its addresses, rate per minute, user agents, and what it has sent so far."""

    id: str
    campaign: str
    spec: IncidentSpec
    start_s: float
    end_s: float
    addresses: pl.Series  # sorted by `activation_min`
    activation_min: np.ndarray  # minutes after start when each address starts being used
    life_min: float
    rps_per_minute: np.ndarray
    agents: pl.Series
    phases: list[PhasePlan]
    marker: str | None
    message: str | None
    seen: np.ndarray = field(init=False)
    requests: int = 0
    planted: set[str] = field(default_factory=set)  # the markers that went out in at least one request
    http2: bool = False  # whether most of its addresses speak HTTP/2 (browser-based bots)
    first_s: float = float("inf")  # when its first request went out (a slow attack's comes well after `start_s`)
    last_s: float = float("-inf")  # and its last

    def __post_init__(self) -> None:
        self.seen = np.zeros(len(self.addresses), dtype=bool)

    def generate(
        self, content: SiteContent, start_s: float, end_s: float, rng: np.random.Generator
    ) -> pl.DataFrame | None:
        """This incident's requests between `start_s` and `end_s` (both clipped to the incident)."""
        lo_s, hi_s = max(start_s, self.start_s), min(end_s, self.end_s)
        if hi_s <= lo_s:
            return None
        m0 = int((lo_s - self.start_s) // 60)
        m1 = int(np.ceil((hi_s - self.start_s) / 60))
        minute_start = self.start_s + 60.0 * np.arange(m0, m1)
        seg_lo = np.maximum(minute_start, lo_s)
        seg_hi = np.minimum(minute_start + 60.0, hi_s)
        counts = rng.poisson(self.rps_per_minute[m0:m1] * (seg_hi - seg_lo))
        total = int(counts.sum())
        if total == 0:
            return None
        ts = np.repeat(seg_lo, counts) + rng.random(total) * np.repeat(seg_hi - seg_lo, counts)
        who = self._addresses_at((ts - self.start_s) / 60.0, rng)
        self.seen[who] = True
        self.requests += total
        self.first_s = min(self.first_s, float(ts.min()))
        self.last_s = max(self.last_s, float(ts.max()))
        vectors = self.spec.vectors
        which = rng.integers(0, len(vectors), total)
        parts: list[pl.DataFrame] = []
        for k, vector in enumerate(vectors):
            rows = np.flatnonzero(which == k)
            if len(rows) == 0:
                continue
            method, target, status, body, referer = vector_requests(Vector(vector), content, len(rows), rng)
            agents = self.agents.gather(rng.integers(0, len(self.agents), len(rows)))
            target, agents = self._mark(target, agents, rng)
            frame = events(
                (ts[rows] * 1e6).astype(np.int64),
                self.addresses.gather(who[rows]),
                method,
                target,
                status,
                body,
                referer,
                agents,
            )
            # Bots built on a real browser engine speak HTTP/2 like readers do; each address keeps its own stack.
            http2 = (who[rows] % 5 < 3) if self.http2 else np.zeros(len(rows), dtype=bool)
            protocol = pl.Series(np.where(http2, "HTTP/2.0", "HTTP/1.1"), dtype=pl.String)
            parts.append(frame.with_columns(protocol=protocol))
        return pl.concat(parts)

    def _addresses_at(self, minute: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # Addresses are sorted by activation, so those in use at a minute form one contiguous run.
        lo = np.searchsorted(self.activation_min, minute - self.life_min, side="right")
        hi = np.searchsorted(self.activation_min, minute, side="right")
        hi = np.maximum(hi, np.minimum(lo + 1, len(self.activation_min)))
        lo = np.minimum(lo, hi - 1)
        return (lo + np.floor(rng.random(len(minute)) * (hi - lo))).astype(np.int64)

    def _mark(self, target: pl.Series, agents: pl.Series, rng: np.random.Generator) -> tuple[pl.Series, pl.Series]:
        share = self.spec.marker_share
        if share <= 0 or (self.marker is None and self.message is None):
            return target, agents
        n = len(target)
        u = rng.random(n)
        if self.marker is not None:
            word = np.flatnonzero(u < share / 2)
            sep = pl.when(target.gather(word).str.contains("?", literal=True)).then(pl.lit("&")).otherwise(pl.lit("?"))
            values = pl.Series(rng.integers(1, 100_000, len(word))).cast(pl.String)
            marked = pl.select(pl.concat_str([target.gather(word), sep, pl.lit(self.marker + "="), values])).to_series()
            target = target.scatter(word, marked)
            if len(word):
                self.planted.add(self.marker)
        if self.message is not None:
            said = np.flatnonzero((u >= share / 2) & (u < share))
            agents = agents.scatter(said, pl.Series([self.message], dtype=pl.String).new_from_index(0, len(said)))
            if len(said):
                self.planted.add(self.message)
        return target, agents


@dataclass
class CampaignPlan:
    id: str
    spec: CampaignSpec
    incidents: list[IncidentPlan]
    pool_size: int


def _count(spec: IncidentSpec, scale: float) -> int:
    if spec.per_address_rps is not None:
        active = spec.peak_rps * scale / spec.per_address_rps
        if spec.rotation_minutes > 0:
            active *= (spec.duration_minutes + spec.rotation_minutes) / spec.rotation_minutes
        return max(1, int(np.ceil(active)))
    if spec.addresses is not None:
        return spec.addresses if spec.addresses <= 10 else max(1, round(spec.addresses * scale))
    return 3 if spec.kind != IncidentKind.FLOOD else max(5, round(50 * scale))


def _pool(spec: CampaignSpec, size: int, rng: np.random.Generator, exclude: set[str]) -> list[str]:
    proxies = networks_for(list(spec.countries) or list(_PROXY_COUNTRIES), ("residential", "mobile"))
    if spec.pool == "residential":
        got, _ = draw_addresses(proxies, size, rng, 0.05, exclude)
        return got
    # An actor rents from a few providers and gets addresses clustered in a few dozen /24s there.
    providers = [HOSTING[i] for i in sorted(rng.choice(len(HOSTING), min(5, len(HOSTING)), replace=False).tolist())]
    n_hosting = size if spec.pool == "hosting" else size // 2
    subnets, _ = draw_addresses(providers, max(4, n_hosting // 12), rng, 0.1, exclude)
    hosting: list[str] = []
    seen = set(exclude)
    for i in range(n_hosting * 3):
        base = subnets[int(rng.integers(0, len(subnets)))]
        if ":" in base:
            address = base.rsplit(":", 1)[0] + f":{int(rng.integers(1, 0x10000)):x}"
        else:
            address = base.rsplit(".", 1)[0] + f".{int(rng.integers(2, 254))}"
        if address not in seen:
            seen.add(address)
            hosting.append(address)
        if len(hosting) == n_hosting or i > n_hosting * 3:
            break
    rest: list[str] = []
    if spec.pool == "mixed":
        rest, _ = draw_addresses(proxies, size - len(hosting), rng, 0.05, seen)
    return hosting + rest


def _profile(spec: IncidentSpec, scale: float, start_s: float, noise: np.ndarray) -> tuple[np.ndarray, list[PhasePlan]]:
    minutes = int(np.ceil(spec.duration_minutes))
    rate = np.zeros(minutes)
    peak = spec.peak_rps * scale
    phases: list[PhasePlan] = []

    def phase(label: str, a: float, b: float, level: float) -> None:
        ia, ib = round(a), min(round(b), minutes)  # whole minutes, so phases meet without overlapping
        if ib <= ia:
            return
        rate[ia:ib] = level
        phases.append(PhasePlan(label, start_s + ia * 60, start_s + ib * 60, level))

    if spec.kind != IncidentKind.FLOOD:
        phase("main", 0, minutes, peak)
        return rate * noise[:minutes], phases
    t = 0.0
    tail_from = minutes * (1 - spec.tail_share)
    if spec.test_flood and minutes >= 60:
        test = max(3.0, min(8.0, minutes * 0.04))
        phase("test-flood", 0, test, peak / 3)
        t = test + max(5.0, min(30.0, minutes * 0.08))  # the pause after the test
    for k in range(spec.waves):
        if t >= tail_from:
            break
        end = min(t + spec.wave_minutes, tail_from)
        phase(f"wave-{k + 1}", t, end, peak * (k + 1) / spec.waves)
        t = end
    if t < tail_from:
        phase("sustained", t, tail_from, peak)
        # Long floods breathe: a slow swell every few hours and, now and then, a lull while the actor regroups.
        a, b = round(t), min(round(tail_from), minutes)
        x = np.arange(b - a)
        swell = 0.8 + 0.2 * np.cos(2 * np.pi * x / 240.0)
        lull = np.repeat(noise[: (b - a) // 30 + 1] < np.exp(-0.18), 30)[: b - a]  # about one half-hour in ten
        rate[a:b] *= np.where(lull & (x >= 60), 0.15, swell)
    if spec.tail_share > 0:
        phase("tail", max(t, tail_from), minutes, peak * spec.tail_level)
    return rate * noise[:minutes], phases


def plan_campaign(
    spec: CampaignSpec,
    ordinal: int,
    scale: float,
    rng: np.random.Generator,
    exclude: set[str],
    incident_ids: list[str],
) -> CampaignPlan:
    """The campaign's pool, and each incident's addresses, profile and user agents."""
    counts = [_count(inc, scale) for inc in spec.incidents]
    core = max(1, *(round(c * inc.reuse) for c, inc in zip(counts, spec.incidents, strict=True)))
    fresh = [c - min(c, round(c * inc.reuse)) for c, inc in zip(counts, spec.incidents, strict=True)]
    pool = _pool(spec, core + sum(fresh), rng, exclude)
    exclude.update(pool)
    agents = pl.Series(flood_agents(spec.user_agents, spec.user_agent_count, ordinal * 7 + 3), dtype=pl.String)
    plans: list[IncidentPlan] = []
    offset = core
    for inc, count, n_fresh, incident_id in zip(spec.incidents, counts, fresh, incident_ids, strict=True):
        reused = count - n_fresh
        chosen = [pool[i] for i in rng.choice(min(core, len(pool)), min(reused, core), replace=False).tolist()]
        chosen += pool[offset : offset + n_fresh]
        offset += n_fresh
        start_s = inc.start.timestamp()
        duration = inc.duration_minutes
        life = inc.rotation_minutes if inc.rotation_minutes > 0 else duration + 1
        activation = (
            np.sort(rng.uniform(-life, duration, len(chosen))) if inc.rotation_minutes > 0 else np.zeros(len(chosen))
        )
        order = rng.permutation(len(chosen))  # which address gets which slot is itself random
        noise = rng.lognormal(0.0, 0.12, int(np.ceil(duration)) + 1)
        rate, phases = _profile(inc, scale, start_s, noise)
        if inc.kind in (IncidentKind.SCAN, IncidentKind.EXPLOIT):
            inc_agents = pl.Series(list(SCANNER_AGENTS[ordinal % 3 : ordinal % 3 + 2]), dtype=pl.String)
        else:
            inc_agents = agents
        plans.append(
            IncidentPlan(
                id=incident_id,
                campaign=spec.id,
                spec=inc,
                start_s=start_s,
                end_s=start_s + duration * 60,
                addresses=pl.Series([chosen[i] for i in order], dtype=pl.String),
                activation_min=activation,
                life_min=life,
                rps_per_minute=rate,
                agents=inc_agents,
                phases=phases,
                marker=spec.marker,
                message=spec.message,
                http2=spec.user_agents == "browser-like" and inc.kind in (IncidentKind.FLOOD, IncidentKind.BRUTEFORCE),
            )
        )
    return CampaignPlan(spec.id, spec, plans, len(pool))


def incident_id(site: str, start: datetime, ordinal: int) -> str:
    """`site-YYYYmmddTHHMM-n`, as in CONTRACT.md's example."""
    return f"{site}-{start.astimezone(UTC):%Y%m%dT%H%M}-{ordinal}"


def minutes_after(start: datetime, minutes: float) -> datetime:
    return start + timedelta(minutes=minutes)
