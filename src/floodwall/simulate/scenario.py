"""Scenarios: sites, flash crowds and attack campaigns, as typed objects validated once at load.

A scenario is a TOML file (or one of the built-in named scenarios, which are the same mappings written in Python).
Unknown keys and bad values are `ScenarioError`s naming the file and the key, all reported together. Times are TOML
offset date-times (`2024-11-04T08:00:00Z`); durations are in minutes unless the key says otherwise.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from floodwall.config import read_toml
from floodwall.errors import ScenarioError
from floodwall.model import IncidentKind, Vector
from floodwall.simulate.networks import known_countries

__all__ = [
    "CampaignSpec",
    "FlashCrowdSpec",
    "IncidentSpec",
    "Scenario",
    "SiteSpec",
    "load_scenario",
    "scenario_from_mapping",
]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a time zone offset, e.g. 2024-11-04T08:00:00Z")
    return value.astimezone(UTC)


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Budapest") from None
    return value


def _country(value: str) -> str:
    if value not in known_countries():
        raise ValueError(
            f"no residential networks for country {value!r}; known: {', '.join(sorted(known_countries()))}"
        )
    return value


UtcTime = Annotated[datetime, AfterValidator(_utc)]
Zone = Annotated[str, AfterValidator(_zone)]
Country = Annotated[str, AfterValidator(_country)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSpec(_Spec):
    """An outlet: its URL scheme, time zone, audience and size."""

    name: Name
    host: str = Field(pattern=r"^[a-z0-9.-]+$")
    url_scheme: Literal["wordpress", "dated-slug", "article-html", "lang-prefix"] = "wordpress"
    language: Literal["hu", "sr", "ro", "be", "en"] = "en"
    timezone: Zone = "UTC"
    country: Country = "HU"
    diaspora: list[Country] = Field(default_factory=lambda: ["DE", "AT", "GB", "US"])
    diaspora_share: Share = 0.12
    mobile_share: Share = 0.55
    ipv6_share: Share = 0.25
    page_views_per_day: float = Field(default=40_000, gt=0, le=50_000_000)
    articles: int = Field(default=3_000, ge=50, le=1_000_000)  # the archive before the window
    articles_per_day: float = Field(default=30, ge=0, le=5_000)
    capacity_rps: float | None = Field(default=None, gt=0)  # above it the origin answers 502/503/504
    start: UtcTime
    end: UtcTime


class FlashCrowdSpec(_Spec):
    """Breaking news: traffic toward a few new articles multiplies within minutes. Must never be blocked."""

    site: Name
    start: UtcTime
    multiplier: float = Field(default=10.0, ge=2.0, le=50.0)
    rise_minutes: float = Field(default=8.0, gt=0, le=120)
    duration_minutes: float = Field(default=180.0, gt=0, le=7 * 1440)
    articles: int = Field(default=2, ge=1, le=10)


class IncidentSpec(_Spec):
    """One incident of a campaign on one site: a flood with phases, or a breach attempt."""

    site: Name
    kind: IncidentKind = IncidentKind.FLOOD
    start: UtcTime
    duration_minutes: float = Field(gt=0, le=30 * 1440)
    vectors: list[Vector] = Field(min_length=1)
    peak_rps: float = Field(gt=0, le=1_000_000)
    #: Addresses used at scale 1. Without it: peak_rps / per_address_rps (floods) or a handful (scans).
    addresses: int | None = Field(default=None, ge=1, le=5_000_000)
    #: How long one address stays in use before the actor rotates to another, in minutes (0: the whole incident).
    rotation_minutes: float = Field(default=0, ge=0)
    per_address_rps: float | None = Field(default=None, gt=0)
    reuse: Share = 0.5  # share of this incident's addresses taken from the campaign's core pool
    test_flood: bool = True  # floods: a short test at a third of the peak, a pause, then the waves
    waves: int = Field(default=4, ge=1, le=50)
    wave_minutes: float = Field(default=10.0, gt=0)
    tail_share: Share = 0.2  # the last part of the incident, at `tail_level` of the peak
    tail_level: Share = 0.3
    marker_share: Share = 0.02  # share of requests that carry the campaign's marker or message


class CampaignSpec(_Spec):
    """One actor: an address pool, user agents, a marker, and incidents on one or more sites."""

    id: Name
    actor: str = "unknown"
    pool: Literal["hosting", "residential", "mixed"] = "hosting"
    countries: list[Country] = Field(default_factory=list)  # residential pools: where the proxies are
    user_agents: Literal["browser-like", "tools", "mixed"] = "browser-like"
    user_agent_count: int = Field(default=12, ge=1, le=500)
    marker: str | None = Field(default=None, pattern=r"^[a-z0-9_-]{3,32}$")
    message: str | None = Field(default=None, pattern=r"^[^\"\\\x00-\x1f]{3,200}$")
    incidents: list[IncidentSpec] = Field(min_length=1)


class Scenario(_Spec):
    """Everything simulated at once: sites, their benign crowds, and campaigns against them."""

    name: Name
    description: str = ""
    seed: int = 1
    sites: list[SiteSpec] = Field(min_length=1)
    flash_crowds: list[FlashCrowdSpec] = Field(default_factory=list)
    campaigns: list[CampaignSpec] = Field(default_factory=list)

    def site(self, name: str) -> SiteSpec:
        return next(s for s in self.sites if s.name == name)


def _describe(error: dict[str, object]) -> str:
    loc = error.get("loc", ())
    key = ".".join(str(part) for part in loc) if isinstance(loc, tuple) else str(loc)
    if error.get("type") == "extra_forbidden":
        return f"unknown key '{key}'"
    if error.get("type") == "missing":
        return f"missing key '{key}'"
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    return f"key '{key}' = {error.get('input')!r}: {message}"


def _cross_check(scenario: Scenario) -> list[str]:
    problems: list[str] = []
    names = [s.name for s in scenario.sites]
    sites = {s.name: s for s in scenario.sites}
    for i, s in enumerate(scenario.sites):
        if names.count(s.name) > 1:
            problems.append(f"key 'sites.{i}.name' = {s.name!r}: two sites have this name")
        if s.end <= s.start:
            problems.append(f"key 'sites.{i}.end': must be after sites.{i}.start")
        elif s.end - s.start > timedelta(days=120):
            problems.append(f"key 'sites.{i}.end': a site's window is at most 120 days")
    for i, f in enumerate(scenario.flash_crowds):
        where = f"flash_crowds.{i}"
        if f.site not in sites:
            problems.append(f"key '{where}.site' = {f.site!r}: no such site (known: {', '.join(names)})")
        elif not sites[f.site].start <= f.start < sites[f.site].end:
            problems.append(f"key '{where}.start': outside site {f.site!r}'s window")
    ids = [c.id for c in scenario.campaigns]
    for c_i, c in enumerate(scenario.campaigns):
        if ids.count(c.id) > 1:
            problems.append(f"key 'campaigns.{c_i}.id' = {c.id!r}: two campaigns have this id")
        for i, inc in enumerate(c.incidents):
            where = f"campaigns.{c_i}.incidents.{i}"
            if inc.site not in sites:
                problems.append(f"key '{where}.site' = {inc.site!r}: no such site (known: {', '.join(names)})")
                continue
            site = sites[inc.site]
            end = inc.start + timedelta(minutes=inc.duration_minutes)
            if inc.start < site.start or end > site.end:
                problems.append(f"key '{where}.start': the incident must lie inside site {inc.site!r}'s window")
    return problems


def scenario_from_mapping(data: dict[str, object], origin: str = "scenario") -> Scenario:
    """Validate a parsed scenario; every problem is reported in one `ScenarioError` naming `origin` and the keys."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(dict(err)) for err in exc.errors())
        raise ScenarioError(f"{origin}: {problems}") from None
    cross = _cross_check(scenario)
    if cross:
        raise ScenarioError(f"{origin}: {'; '.join(cross)}")
    return scenario


def load_scenario(name_or_file: str | Path) -> Scenario:
    """A built-in scenario by name, or a scenario TOML file by path."""
    from floodwall.simulate.builtin import BUILTIN, builtin_mapping

    text_name = str(name_or_file)
    if text_name in BUILTIN:
        return scenario_from_mapping(builtin_mapping(text_name), origin=f"built-in scenario {text_name!r}")
    path = Path(name_or_file)
    if not path.exists():
        raise ScenarioError(
            f"{text_name}: no such scenario file or built-in scenario (built-ins: {', '.join(sorted(BUILTIN))})"
        )
    return scenario_from_mapping(read_toml(path, ScenarioError, "scenario file"), origin=str(path))
