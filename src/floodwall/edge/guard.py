"""Inline breach signatures at the edge: the detection engine's CRS rules on one request, before it reaches the
origin.

The same rules, transformations and compiled hyperscan databases as `floodwall analyze`
(`floodwall.detect.signatures`), through its one-request path (`inline.match_inline`, no DataFrame), on every part
of the request CRS reads: method, path, query (ARGS_GET), headers (REQUEST_HEADERS, cookies), and the body
(REQUEST_BODY, and ARGS_POST for form posts and JSON bodies). The database is compiled once per process and kept on
disk, so a worker starts in milliseconds after the first.

A request is blocked the way CRS blocks, by anomaly scoring: each hit adds its rule's points (5 critical, 4 error,
3 warning, 2 notice) and a request whose total reaches the inbound threshold (CRS's default: 5, so one critical
hit) is refused. The verdict keeps the hits as evidence: rule ids, family, the field and the matched text.

Fast on clean requests. The exact match (`match_inline`) costs about half a millisecond a request, most of it
running each of the 25 transformation chains over each of the request's ~20 values. A first pass asks instead, per
value, whether any rule's pattern could fire on it at all:

1. remembered answers first: a header's verdict by its raw bytes, any other value's by its text (the user agents,
   `Accept` headers and popular paths recur from request to request);
2. for a new value, the few distinct spellings the groups read (a chain's trigger says when it would change the
   value; most leave it as it is or lower-cased), each scanned once with each database, the expressions found
   checked against the groups reading that spelling (confirmed by their regexes where the database only
   prefilters), and the injection detectors run: the same selectors, transformations, databases and checks as
   the exact match, without the evidence and the chained conditions, so it says "maybe" whenever the exact match
   could hit.

Only a request with a "maybe" value goes through `match_inline`, which then scans those values alone (the others
still feed chained conditions), so the verdict is the same either way: tests/edge/test_guard.py checks it on every
case of the CRS regression suite and on generated requests.

It fails open: a broken rule or an engine error lets the request through (and is logged with its cause and
counted), because a newsroom's readers must not pay for a bug in a signature. Only the first `max_body_bytes` of a
body are read (CRS's `SecRequestBodyNoFilesLimit` plays the same role).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from floodwall.detect.settings import DetectSettings
from floodwall.detect.signatures import Hit, SignatureEngine, load_engine
from floodwall.detect.signatures.engine import Memo, apply_memo, evidence
from floodwall.detect.signatures.inline import _INJECTION_PLAIN, _plan, _scan, match_inline, request_values
from floodwall.detect.signatures.transforms import to_bytes

__all__ = ["CRS_INBOUND_THRESHOLD", "GuardVerdict", "InlineGuard"]

#: CRS 3.3's default `tx.inbound_anomaly_score_threshold` (crs-setup.conf).
CRS_INBOUND_THRESHOLD: Final = 5
_log = logging.getLogger(__name__)

Occurrence = tuple[str, str | None, str]
HeaderPairs = Iterable[tuple[bytes | str, bytes | str]] | Mapping[str, str]


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """What the signatures said about one request."""

    blocked: bool
    anomaly_score: int = 0
    threshold: int = CRS_INBOUND_THRESHOLD
    hits: tuple[Hit, ...] = ()
    failed: bool = False  # the engine raised: let through, see the log

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(hit.rule_id for hit in self.hits)

    @property
    def top(self) -> Hit | None:
        """The hit that weighs most (the first such by rule id): what an operator reads first."""
        return max(self.hits, key=lambda hit: hit.anomaly_score, default=None)

    @property
    def family(self) -> str | None:
        top = self.top
        return None if top is None else top.family

    @property
    def field(self) -> str | None:
        top = self.top
        return None if top is None else top.variable

    @property
    def matched(self) -> str | None:
        top = self.top
        return None if top is None else top.matched


_CLEAN: Final = GuardVerdict(False)


def _headers(headers: HeaderPairs) -> dict[str, str]:
    """Headers as one text value per name (repeated ones joined as RFC 9110 section 5.3 allows, cookies with `; `),
    the original spelling of the first occurrence kept (CRS reports header names as sent)."""
    pairs: Iterable[tuple[bytes | str, bytes | str]] = headers.items() if isinstance(headers, Mapping) else headers
    joined: dict[str, str] = {}
    spelling: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name
        value = raw_value.decode("utf-8", "surrogateescape") if isinstance(raw_value, bytes) else raw_value
        lower = name.lower()
        if lower in spelling:
            first = spelling[lower]
            joined[first] += ("; " if lower == "cookie" else ", ") + value
        else:
            spelling[lower] = name
            joined[name] = value
    return joined


class InlineGuard:
    """The CRS signatures on single requests. `enabled = False` (from `[detect] signatures = false`) lets all by."""

    def __init__(
        self,
        engine: SignatureEngine | None,
        threshold: int = CRS_INBOUND_THRESHOLD,
        max_body_bytes: int = 128 * 1024,
    ) -> None:
        self.engine = engine
        self.threshold = threshold
        self.max_body_bytes = max_body_bytes
        self.failures = 0
        self.exact_matches = 0  # requests the first pass could not clear
        self._clear: dict[tuple[str, str | None, str], bool] = {}  # (variable, key, value) -> may a rule fire on it
        self._header_clear: dict[tuple[bytes | str, bytes | str], bool] = {}  # raw header -> no rule can fire on it

    @classmethod
    def from_settings(
        cls, settings: DetectSettings, *, paranoia: int = 1, threshold: int = CRS_INBOUND_THRESHOLD
    ) -> InlineGuard:
        """The guard the config asks for; loads (or compiles once, then caches on disk) the CRS database."""
        if not settings.signatures:
            return cls(None, threshold)
        cache = settings.signatures_cache
        return cls(load_engine(paranoia=paranoia, cache_dir=Path(cache) if cache else "default"), threshold)

    def _may_fire(self, values: list[Occurrence], *, all_of_them: bool = False) -> list[Occurrence]:
        """The values some rule may fire on: the first one found, or with `all_of_them` every one (what the exact
        match then scans; the others only feed its chained conditions)."""
        assert self.engine is not None
        memo: Memo = {}
        clear = self._clear
        found: list[Occurrence] = []
        for occurrence in values:
            var, key, raw = occurrence
            lower = key.lower() if key is not None else None
            entry = (var, lower, raw)
            verdict = clear.get(entry)
            if verdict is None:
                verdict = _first_pass(self.engine, var, lower, raw, memo)
                if len(raw) <= _MEMO_VALUE_CHARS:
                    if len(clear) >= _MEMO_ENTRIES:
                        clear.clear()
                    clear[entry] = verdict
            if verdict:
                found.append(occurrence)
                if not all_of_them:
                    break
        return found

    def _clear_without_body(
        self, method: str, path: str, query: str | None, headers: HeaderPairs, protocol: str | None
    ) -> bool:
        """The first pass header by header, each header's verdict remembered on its raw bytes: a reader's request
        repeats its browser's headers, and most of the guard's work was decoding and splitting them again. False
        means "look closer" (also for a header name sent twice, which the rules read joined)."""
        pairs: Iterable[tuple[bytes | str, bytes | str]] = headers.items() if isinstance(headers, Mapping) else headers
        names: set[bytes | str] = set()
        for name, value in pairs:
            lower = name.lower()
            if lower in names and lower not in (b"cookie", "cookie"):
                return False
            names.add(lower)
            verdict = self._header_clear.get((name, value))
            if verdict is None:
                verdict = not self._may_fire(_header_values(name, value))
                if len(value) <= _MEMO_VALUE_CHARS:
                    if len(self._header_clear) >= _MEMO_ENTRIES:
                        self._header_clear.clear()
                    self._header_clear[(name, value)] = verdict
            if not verdict:
                return False
        return not self._may_fire(request_values(method, path, query, protocol, None, None, None, None, None))

    @property
    def enabled(self) -> bool:
        return self.engine is not None

    def check(
        self,
        method: str,
        path: str,
        query: str | None,
        headers: HeaderPairs = (),
        body: bytes | str | None = None,
        protocol: str | None = "HTTP/1.1",
    ) -> GuardVerdict:
        """The verdict on one request. `path` and `query` are as sent (percent-encoded: the rules decode them
        themselves), `query` None when the target had no `?`."""
        if self.engine is None:
            return _CLEAN
        try:
            if not body and self._clear_without_body(method, path, query, headers, protocol):
                return _CLEAN
            fields = _headers(headers)
            lowered = {name.lower(): value for name, value in fields.items()}
            others = {name: value for name, value in fields.items() if name.lower() not in _OWN}
            text: str | None = None
            if body:
                head = body[: self.max_body_bytes]
                text = head.decode("utf-8", "surrogateescape") if isinstance(head, bytes) else head
            values = request_values(
                method,
                path,
                query,
                protocol,
                lowered.get("user-agent"),
                lowered.get("referer"),
                lowered.get("host"),
                others,
                text,
            )
            if text is not None and "json" in lowered.get("content-type", "").lower():
                values += _json_arguments(text)
            maybe = self._may_fire(values, all_of_them=True)
            if not maybe:
                return _CLEAN
            self.exact_matches += 1
            hits = match_inline(self.engine, values, scan=maybe)
        except Exception:
            self.failures += 1
            _log.exception("inline signatures failed on a request; let through")
            return GuardVerdict(False, failed=True)
        if not hits:
            return _CLEAN
        score = sum(hit.anomaly_score for hit in hits)
        return GuardVerdict(score >= self.threshold, score, self.threshold, tuple(hits))


#: Values up to this long are remembered by the first pass, in at most `_MEMO_ENTRIES` entries (then forgotten all
#: at once: a cache-busting flood's one-off values must not grow it without bound).
_MEMO_VALUE_CHARS: Final = 512
_MEMO_ENTRIES: Final = 100_000

#: Passed to `request_values` on their own; every other header goes in its `headers` mapping.
_OWN: Final = frozenset({"user-agent", "referer", "host"})
_WITHOUT_HEADERS: Final = frozenset(request_values("GET", "/", None, None, None, None, None, {}, None))


def _json_arguments(text: str) -> list[tuple[str, str | None, str]]:
    """A JSON body's leaves as ARGS_POST, named the way ModSecurity's JSON body processor names them (`json.a.b`),
    so an injection inside an API call's JSON is read like one in a form. A body that is not JSON gives none."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return []
    found: list[tuple[str, str | None, str]] = []
    pending: list[tuple[str, Any]] = [("json", document)]
    while pending and len(found) < 2 * _JSON_LEAVES:
        name, node = pending.pop()
        if isinstance(node, dict):
            pending += [(f"{name}.{key}", value) for key, value in reversed(node.items())]
        elif isinstance(node, list):
            pending += [(name, value) for value in reversed(node)]
        elif node is not None:
            value = node if isinstance(node, str) else json.dumps(node)
            found += [("ARGS_POST", name, value), ("ARGS_POST_NAMES", name, name)]
    return found


#: Most JSON leaves read from one body (a document with more is read up to there).
_JSON_LEAVES: Final = 1000


def _header_values(name: bytes | str, value: bytes | str) -> list[tuple[str, str | None, str]]:
    """The variables one header gives the rules (REQUEST_HEADERS, its name, cookies), as `request_values` makes
    them: the values of a request with this header alone, less those of the same request without it."""
    fields = _headers([(name, value)])
    (text_name, text), *_ = fields.items()
    lower = text_name.lower()
    own = {key: (text if lower == key else None) for key in _OWN}
    others = {} if lower in _OWN else fields
    values = request_values("GET", "/", None, None, own["user-agent"], own["referer"], own["host"], others, None)
    return [value for value in values if value not in _WITHOUT_HEADERS]


@dataclass(frozen=True, slots=True)
class _Bucket:
    """The groups reading one variable that share one chain trigger: (group index, plan) each."""

    trigger: re.Pattern[str] | None
    members: tuple[tuple[int, Any], ...]
    # when the trigger does not match: the members reading the value as it is, those reading it lower-cased, and
    # their injection detectors with whether each reads it lower-cased
    as_is: tuple[tuple[int, Any], ...]
    lowering: tuple[tuple[int, Any], ...]
    detectors: tuple[tuple[bool, Any], ...]


@lru_cache(maxsize=8)
def _readers(engine: SignatureEngine) -> dict[tuple[str, str | None], tuple[_Bucket, ...] | None]:
    """Per (variable, key), the groups reading it bucketed by trigger (None: a group checks rules in Python, which
    the first pass does not do); filled as variables are met."""
    return {}


def _buckets(engine: SignatureEngine, var: str, key: str | None) -> tuple[_Bucket, ...] | None:
    readers = _readers(engine)
    if (var, key) in readers:
        return readers[(var, key)]
    plans = [
        (group, plan)
        for group, plan in enumerate(_plan(engine))
        if var in plan.whole or (key is not None and (var, key) in plan.keyed)
    ]
    found: tuple[_Bucket, ...] | None = None
    if not any(plan.python_only for _, plan in plans):
        by_trigger: dict[str | None, list[tuple[int, Any]]] = {}
        for group, plan in plans:
            by_trigger.setdefault(plan.trigger.pattern if plan.trigger else None, []).append((group, plan))
        found = tuple(
            _Bucket(
                members[0][1].trigger,
                tuple(members),
                tuple((group, plan) for group, plan in members if not plan.lowering),
                tuple((group, plan) for group, plan in members if plan.lowering),
                tuple((plan.lowering, detect) for _, plan in members for _, detect, _ in plan.injection),
            )
            for members in by_trigger.values()
        )
    readers[(var, key)] = found
    return found


def _first_pass(engine: SignatureEngine, var: str, key: str | None, raw: str, memo: Memo) -> bool:
    """True when some rule's pattern could fire on this one value: `match_inline`'s first stage (the same selectors,
    transformations, databases, confirmation regexes and injection detectors) without the evidence and the chained
    conditions, so a superset of it. The 25 groups' chains leave most values as they are or lower-cased (a chain's
    trigger says when it would change one), so there are only a few distinct spellings, each scanned once."""
    buckets = _buckets(engine, var, key)
    if buckets is None:
        return True
    readers: dict[str, list[tuple[int, Any]]] = {}
    lowered = raw.lower()
    for bucket in buckets:
        if bucket.trigger is None or bucket.trigger.search(raw) is None:
            if bucket.as_is:
                readers.setdefault(raw, []).extend(bucket.as_is)
            if bucket.lowering:
                readers.setdefault(lowered, []).extend(bucket.lowering)
            for reads_lowered, detect in bucket.detectors:
                value = lowered if reads_lowered else raw
                if _INJECTION_PLAIN.fullmatch(value) is None and detect(value):
                    return True
            continue
        for group, plan in bucket.members:
            value = apply_memo(raw, plan.chain, memo)
            readers.setdefault(value, []).append((group, plan))
            injection = plan.injection and _INJECTION_PLAIN.fullmatch(value) is None
            if injection and any(detect(value) for _, detect, _ in plan.injection):
                return True
    scanners = engine.patterns.scanners
    for value, members in readers.items():
        data = to_bytes(value)
        for number, scanner in enumerate(scanners):
            found = _scan(scanner.database, data)
            if not found:
                continue
            prefiltered = scanner.prefiltered
            for expression in found:
                for group, plan in members:
                    for index in plan.targets[number].get(expression, ()):
                        if not prefiltered[expression]:
                            return True  # an exact hyperscan match always makes evidence
                        if evidence(engine.groups[group].signatures[index], value, data, None, True) is not None:
                            return True
    return False
