"""One request at the edge, in plain Python: the same variables, transformations (with the same bulk shortcut,
`transforms.PLAIN_TRIGGERS`), databases and rules as the columnar engine, without a DataFrame: building and joining
frames costs tens of milliseconds for one request, this path a fraction of one. tests/detect/test_signatures_inline.py
checks that both paths agree on the CRS regression suite.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from floodwall.detect.signatures.engine import (
    EVIDENCE_BYTES,
    PUBLIC_NAMES,
    Memo,
    SignatureEngine,
    apply_memo,
    clean,
    evidence,
    key_matches,
)
from floodwall.detect.signatures.fields import arg_decode, path_decode
from floodwall.detect.signatures.links import link_matches
from floodwall.detect.signatures.ruleset import Selector
from floodwall.detect.signatures.transforms import LOWERING, chain_trigger, to_bytes

__all__ = ["Hit", "match_inline", "request_values"]

#: One request's variables: (stored collection, key, value), in the order `fields.occurrences` lists them.
Occurrence = tuple[str, str | None, str]

_BASENAME: Final = re.compile(r"([^/]*)$")
_INJECTION_PLAIN: Final = re.compile(r"[A-Za-z0-9_.]*")
_KNOWN_HEADERS: Final = (("user-agent", "User-Agent"), ("referer", "Referer"), ("host", "Host"))


@dataclass(frozen=True, slots=True)
class Hit:
    """One signature that fired on one request, with its evidence."""

    rule_id: str
    family: str
    vector: str
    paranoia: int
    anomaly_score: int
    variable: str
    matched: str
    message: str


def _pairs(text: str, separator: str, strip: bool) -> list[tuple[str, str]]:
    pairs = []
    for pair in text.split(separator):
        pair = pair.strip() if strip else pair  # noqa: PLW2901 (the pair as parsed)
        if pair:
            key, _, value = pair.partition("=")
            pairs.append((key, value))
    return pairs


def _arguments(text: str, values_var: str, names_var: str) -> list[Occurrence]:
    decoded = [
        (arg_decode(k) if "%" in k or "+" in k else k, arg_decode(v) if "%" in v or "+" in v else v)
        for k, v in _pairs(text, "&", strip=False)
    ]
    values: list[Occurrence] = [(values_var, k, v) for k, v in decoded]
    return values + [(names_var, k, k) for k, _ in decoded]


def request_values(
    method: str,
    path: str,
    query: str | None,
    protocol: str | None,
    user_agent: str | None,
    referer: str | None,
    host: str | None,
    headers: Mapping[str, str] | None,
    body: str | None,
) -> list[Occurrence]:
    """What `fields.occurrences` gives for a one-row frame of these fields (see its docstring)."""
    uri = path if query is None else f"{path}?{query}"
    line = " ".join(part for part in (method, uri, protocol) if part is not None)
    if protocol is None:  # Polars' concat_str(ignore_nulls) keeps the separators
        line += " "
    filename = path_decode(path) if "%" in path else path
    basename = _BASENAME.search(filename)
    found: list[tuple[str, str | None, str | None]] = [
        ("REQUEST_METHOD", None, method),
        ("REQUEST_FILENAME", None, filename),
        ("REQUEST_BASENAME", None, basename.group(1) if basename else None),
        ("QUERY_STRING", None, query),
        ("REQUEST_URI", None, uri),
        ("REQUEST_LINE", None, line),
        ("REQUEST_PROTOCOL", None, protocol),
        ("REQUEST_HEADERS", "user-agent", user_agent),
        ("REQUEST_HEADERS", "referer", referer),
        ("REQUEST_HEADERS", "host", host),
        ("REQUEST_BODY", None, body),
    ]
    for (key, name), value in zip(_KNOWN_HEADERS, (user_agent, referer, host), strict=True):
        if value is not None:
            found.append(("REQUEST_HEADERS_NAMES", key, name))
    values: list[Occurrence] = [(var, key, value) for var, key, value in found if value is not None]
    if query is not None:
        values += _arguments(query, "ARGS_GET", "ARGS_GET_NAMES")
    others = [(name.lower(), name, value) for name, value in (headers or {}).items()]
    others = [(key, name, value) for key, name, value in others if key not in ("user-agent", "referer", "host")]
    values += [("REQUEST_HEADERS", key, value) for key, _, value in others]
    values += [("REQUEST_HEADERS_NAMES", key, name) for key, name, _ in others]
    cookies = [pair for key, _, value in others if key == "cookie" for pair in _pairs(value, ";", strip=True)]
    values += [("REQUEST_COOKIES", k, v) for k, v in cookies] + [("REQUEST_COOKIES_NAMES", k, k) for k, _ in cookies]
    if body is not None:
        types = [value for key, _, value in others if key == "content-type"]
        if headers is None or not types or any("application/x-www-form-urlencoded" in t.lower() for t in types):
            values += _arguments(body, "ARGS_POST", "ARGS_POST_NAMES")
    return values


def _applies(selector: Selector, key: str | None) -> bool:
    if selector.key_regex is not None:
        return key_matches(selector.key_regex, key)
    return selector.key is None or (key or "").lower() == selector.key.lower()


def _reads(selectors: tuple[Selector, ...], exclusions: tuple[Selector, ...], var: str, key: str | None) -> bool:
    return any(s.var == var and _applies(s, key) for s in selectors) and not any(
        s.var == var and _applies(s, key) for s in exclusions
    )


@dataclass(frozen=True, slots=True)
class _GroupPlan:
    whole: frozenset[str]  # collections read whole
    keyed: frozenset[tuple[str, str]]  # (collection, lower-case key) read
    chain: tuple[str, ...]
    trigger: re.Pattern[str] | None  # values it does not match are the chain's output as they are, or lowered
    lowering: bool
    targets: tuple[dict[int, list[int]], ...]  # per scanner: expression id -> this group's signature indexes
    python_only: tuple[int, ...]
    injection: tuple[tuple[int, Callable[[str], bool], str], ...]  # (signature index, detector, kind)


@lru_cache(maxsize=8)
def _plan(engine: SignatureEngine) -> tuple[_GroupPlan, ...]:
    plans = []
    for index, group in enumerate(engine.groups):
        whole, keyed = engine.selected(index)
        targets: list[dict[int, list[int]]] = []
        for scanner in engine.patterns.scanners:
            mine: dict[int, list[int]] = {}
            if scanner.groups is None or index in scanner.groups:
                for expression, pairs in enumerate(scanner.targets):
                    for target_group, signature in pairs:
                        if target_group == index:
                            mine.setdefault(expression, []).append(signature)
            targets.append(mine)
        python_only = tuple(signature for g, signature in engine.patterns.python_only if g == index)
        injection = tuple((i, detect, group.signatures[i].detector) for i, detect in group.injection)
        trigger = chain_trigger(group.chain)
        plans.append(
            _GroupPlan(
                whole,
                keyed,
                group.chain,
                re.compile(trigger) if trigger is not None else None,
                bool(set(group.chain) & LOWERING),
                tuple(targets),
                python_only,
                injection,
            )
        )
    return tuple(plans)


def match_inline(engine: SignatureEngine, values: list[Occurrence], scan: list[Occurrence] | None = None) -> list[Hit]:
    """The hits `engine.match` would give for a request with these variables, as `Hit`s sorted by rule id. `scan`: the
    values that may match at all, in `values`' order (the edge's guard knows; none: all); the rest only feed chains."""
    memo: Memo = {}
    scanners = engine.patterns.scanners
    scanned: list[dict[bytes, list[int]]] = [{} for _ in scanners]
    verdicts: dict[tuple[str, str], bool] = {}
    lowered = [(var, key, key.lower() if key is not None else None, raw) for var, key, raw in scan or values]
    hits: dict[str, tuple[str, str | None, str, str, str | None]] = {}  # rule id -> (var, key, text, matched, capture)
    for group_index, plan in enumerate(_plan(engine)):
        signatures = engine.groups[group_index].signatures
        for var, key, key_lower, raw in lowered:
            if var not in plan.whole and (key_lower is None or (var, key_lower) not in plan.keyed):
                continue
            if plan.trigger is None or plan.trigger.search(raw) is None:
                value = raw.lower() if plan.lowering else raw
            else:
                value = apply_memo(raw, plan.chain, memo)
            data = to_bytes(value)
            found: list[tuple[int, bool]] = []  # (signature index, prefiltered)
            for number, targets in enumerate(plan.targets):
                if not targets:
                    continue
                expressions = scanned[number].get(data)
                if expressions is None:
                    expressions = scanned[number][data] = _scan(scanners[number].database, data)
                for expression in expressions:
                    prefiltered = scanners[number].prefiltered[expression]
                    found += [(index, prefiltered) for index in targets.get(expression, ())]
            found += [(index, True) for index in plan.python_only]
            for index, confirm in found:
                signature = signatures[index]
                if signature.id in hits or not _reads(signature.selectors, signature.exclusions, var, key):
                    continue
                match = evidence(signature, value, data, None, confirm)
                if match is not None:
                    hits[signature.id] = (var, key, value, match.matched, match.capture)
            if plan.injection and _INJECTION_PLAIN.fullmatch(value) is None:
                for index, detect, kind in plan.injection:
                    signature = signatures[index]
                    if signature.id in hits or not _reads(signature.selectors, signature.exclusions, var, key):
                        continue
                    verdict = verdicts.get((kind, value))
                    if verdict is None:
                        verdict = verdicts[(kind, value)] = detect(value)
                    if verdict:
                        hits[signature.id] = (var, key, value, value[:EVIDENCE_BYTES], None)
    return _hits(engine, values, hits) if hits else []


def _hits(
    engine: SignatureEngine,
    values: list[Occurrence],
    hits: dict[str, tuple[str, str | None, str, str, str | None]],
) -> list[Hit]:
    """Chained rules checked against the request, then each hit with its rule's facts."""
    per_variable: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for var, key, value in values:
        per_variable[(var, key.lower() if var == "REQUEST_HEADERS" and key else key)].append(value)
    result = []
    for rule_id, (var, key, value, matched, capture) in sorted(hits.items()):
        signature = engine.by_id[rule_id]
        rule = signature.rule
        if rule.chain and not all(link_matches(link, clean(value), capture, per_variable) for link in rule.chain):
            continue
        name = PUBLIC_NAMES.get(var, var)
        result.append(
            Hit(
                rule_id=rule_id,
                family=signature.family,
                vector=signature.vector.value,
                paranoia=rule.paranoia,
                anomaly_score=rule.anomaly_score,
                variable=name if key is None else f"{name}:{key}",
                matched=clean(matched),
                message=rule.message,
            )
        )
    return result


def _scan(database: Any, data: bytes) -> list[int]:
    found: list[int] = []
    database.scan(data, match_event_handler=lambda expression, *_: found.append(expression))
    return found
