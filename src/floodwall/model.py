"""The vocabulary every other module speaks: the Request frame, findings, decisions, incidents and campaigns.

A *Request frame* is a Polars DataFrame with `REQUEST_SCHEMA`, sorted by `ts` within a batch. Every source (log
files, the live follower, the edge) yields batches of it; everything that thinks works on it, columnar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final, Literal

import polars as pl

__all__ = [
    "INCIDENT_KINDS",
    "REQUEST_COLUMNS",
    "REQUEST_SCHEMA",
    "VECTORS",
    "Action",
    "Campaign",
    "Decision",
    "Finding",
    "Incident",
    "IncidentKind",
    "Phase",
    "Vector",
    "empty_requests",
]

UTC_MICROS: Final = pl.Datetime("us", "UTC")

#: The Request frame. Missing values are nulls, never empty strings pretending to be data.
REQUEST_SCHEMA: Final[Mapping[str, pl.DataType]] = {
    "ts": UTC_MICROS,  # when the request was logged, UTC, microseconds
    "client": pl.String(),  # the client address as text (IPv4 or IPv6)
    "client_net": pl.String(),  # its /24 (IPv4) or /48 (IPv6), as a CIDR
    "method": pl.String(),
    "path": pl.String(),  # the request target before `?`, as logged (not decoded)
    "query": pl.String(),  # after `?`, without it; null when there was no `?`
    "protocol": pl.String(),  # "HTTP/1.1"; null for HTTP/0.9-style requests and junk request lines
    "status": pl.Int16(),
    "bytes": pl.Int64(),  # body bytes sent
    "referer": pl.String(),
    "user_agent": pl.String(),
    "host": pl.String(),
    "request_time": pl.Float64(),  # seconds
    "upstream_time": pl.Float64(),  # seconds, nginx $upstream_response_time (the last upstream's)
    "upstream_status": pl.Int16(),  # the last upstream's status
    "cache_status": pl.String(),  # nginx $upstream_cache_status: HIT, MISS, STALE, ...
    "forwarded_for": pl.String(),  # X-Forwarded-For as logged
    "site": pl.String(),
    "source": pl.String(),  # the input it came from (a path, "-" for stdin, "edge")
    "line": pl.Int64(),  # 1-based line number in that input
}
REQUEST_COLUMNS: Final = tuple(REQUEST_SCHEMA)


def empty_requests() -> pl.DataFrame:
    """A Request frame with no rows."""
    return pl.DataFrame(schema=dict(REQUEST_SCHEMA))


class Vector(StrEnum):
    """How an attack is carried out: the fixed vocabulary of `report.json`'s `vectors`."""

    GET_FLOOD = "get-flood"
    CACHE_BUST = "cache-bust"
    RANDOM_PATH = "random-path"
    SEARCH_FLOOD = "search-flood"
    HEAVY_PAGE = "heavy-page"
    POST_FLOOD = "post-flood"
    LOGIN_BRUTEFORCE = "login-bruteforce"
    XMLRPC_ABUSE = "xmlrpc-abuse"
    SCAN = "scan"
    SQLI = "sqli"
    XSS = "xss"
    PATH_TRAVERSAL = "path-traversal"
    RCE = "rce"
    SLOW_REQUEST = "slow-request"


VECTORS: Final = tuple(v.value for v in Vector)


class IncidentKind(StrEnum):
    """A flood, or one of the three kinds of breach attempt."""

    FLOOD = "flood"
    SCAN = "scan"
    BRUTEFORCE = "bruteforce"
    EXPLOIT = "exploit"


INCIDENT_KINDS: Final = tuple(k.value for k in IncidentKind)


class Action(StrEnum):
    """What a decision does to its target, in order of severity."""

    OBSERVE = "observe"
    CHALLENGE = "challenge"
    BAN = "ban"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the detection engine concluded about a target (an address, a prefix, a fleet) over a window.

    `evidence` holds (source, line) pairs of the requests that made it, so every claim traces to log rows.
    `breach_hits` holds a breach finding's signature hits per family (`floodwall.detect.signatures.families`, plus
    the detector's `probing` and window-found `login`), most first: `(("sqli", 12), ("scanner", 3))`. The policy
    weighs a breach finding by it (a payload or none, how many), not by the wording of `reasons`.
    """

    target: str  # an address or a CIDR
    kind: str  # "flood-client", "fleet-member", "signature", "rate", ...
    score: float  # 0..1, how sure
    window_start: datetime
    window_end: datetime
    reasons: tuple[str, ...]
    vectors: tuple[Vector, ...] = ()
    evidence: tuple[tuple[str, int], ...] = ()
    breach_hits: tuple[tuple[str, int], ...] = ()

    @property
    def families(self) -> frozenset[str]:
        """The signature families of `breach_hits`."""
        return frozenset(family for family, _ in self.breach_hits)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a target, why, and until when. Decisions are data: stored, pushed, listed, revoked."""

    target: str  # an address or a CIDR
    action: Action
    created: datetime
    expires: datetime
    reasons: tuple[str, ...]
    site: str | None = None
    origin: str = "floodwall"  # who decided: the engine, an operator, a peer node
    evidence: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of an incident with one character: a test flood, a wave, a milder tail."""

    start: datetime
    end: datetime
    peak_rps: float
    label: str  # "test-flood", "wave-1", "tail", ...


@dataclass(frozen=True, slots=True)
class Incident:
    """A flood or a breach attempt on one site, from its start to its end."""

    id: str
    site: str
    kind: IncidentKind
    start: datetime
    end: datetime
    peak_rps: float
    requests: int
    attack_requests: int
    vectors: tuple[Vector, ...]
    attackers: tuple[str, ...]
    phases: tuple[Phase, ...] = ()
    markers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CampaignMember:
    site: str
    incident_id: str


@dataclass(frozen=True, slots=True)
class Campaign:
    """Incidents, on one or several sites, that the evidence ties to one actor."""

    id: str
    confidence: float
    incidents: tuple[CampaignMember, ...]
    evidence: Mapping[str, object] = field(default_factory=dict)


SourceKind = Literal["file", "stdin", "edge"]
