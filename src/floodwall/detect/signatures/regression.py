"""The OWASP CRS 3.3 regression suite (go-ftw/ftw YAML) run through Floodwall's signatures, read in place.

Only tests whose payload sits where an access log or the edge sees it are selected: method, URI (path and query),
User-Agent and Referer, with nothing in the body and no other header than the ordinary ones. Each selected stage
says a rule must fire (`log_contains: id "942100"`) or must not (`no_log_contains`); CRS runs its suite at
paranoia level 4, and so does `run_suite` by default.

`run_whole_suite` runs the others, whose payload sits in the body or in other headers (what the edge sees), through
the one-request path (`inline.match_inline`, as the edge's guard does).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import polars as pl

from floodwall.detect.signatures.engine import SignatureEngine, load_engine
from floodwall.detect.signatures.families import CRS_FILES, family_of
from floodwall.errors import InputError

__all__ = [
    "Case",
    "FamilyScore",
    "SuiteResult",
    "WholeCase",
    "load_cases",
    "load_whole_cases",
    "run_suite",
    "run_whole_suite",
]

_RULE_ID: Final = re.compile(r'id\s*"?(\d{6})')
#: Headers every test sends that carry no payload.
_ORDINARY_HEADERS: Final = frozenset(
    {
        "host",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "keep-alive",
        "proxy-connection",
        "content-length",
        "content-type",
    }
)


@dataclass(frozen=True, slots=True)
class Case:
    title: str
    rule_id: str
    family: str
    vector: str
    must_fire: bool
    method: str
    uri: str
    protocol: str | None
    user_agent: str | None
    referer: str | None
    host: str | None


@dataclass(slots=True)
class FamilyScore:
    must_fire: int = 0
    detected: int = 0
    must_not_fire: int = 0
    left_alone: int = 0
    missed: list[str] = field(default_factory=list)  # titles of must-fire tests not detected
    false_alarms: list[str] = field(default_factory=list)  # titles of must-not-fire tests that fired

    def count(self, title: str, must_fire: bool, hit: bool) -> None:
        """One test's outcome."""
        if must_fire:
            self.must_fire += 1
            self.detected += hit
            if not hit:
                self.missed.append(title)
        else:
            self.must_not_fire += 1
            self.left_alone += not hit
            if hit:
                self.false_alarms.append(title)

    @property
    def detected_share(self) -> float:
        return self.detected / self.must_fire if self.must_fire else 1.0

    @property
    def left_alone_share(self) -> float:
        return self.left_alone / self.must_not_fire if self.must_not_fire else 1.0


@dataclass(slots=True)
class SuiteResult:
    families: dict[str, FamilyScore]
    skipped: Counter[str]


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as error:  # a development dependency: the suite is a test and benchmark input
        raise InputError("reading the CRS regression suite needs PyYAML (pip install pyyaml)") from error
    return yaml


def _stage_cases(title: str, stage: dict[str, Any], skipped: Counter[str]) -> list[Case]:
    given: dict[str, Any] = stage.get("input") or {}
    expected: dict[str, Any] = stage.get("output") or {}
    if given.get("raw_request") or given.get("encoded_request"):
        skipped["raw request"] += 1
        return []
    if given.get("data"):
        skipped["payload in the body"] += 1
        return []
    headers = {str(k).lower(): str(v) for k, v in (given.get("headers") or {}).items()}
    if set(headers) - _ORDINARY_HEADERS - {"user-agent", "referer"}:
        skipped["payload in other headers"] += 1
        return []
    expectations = [(True, m) for m in _RULE_ID.findall(str(expected.get("log_contains", "")))]
    expectations += [(False, m) for m in _RULE_ID.findall(str(expected.get("no_log_contains", "")))]
    if not expectations:
        skipped["no rule expectation (status or error only)"] += 1
        return []
    cases = []
    for must_fire, rule_id in expectations:
        family = family_of(rule_id)
        if family is None:
            skipped["rule outside the breach-attempt families"] += 1
            continue
        cases.append(
            Case(
                title=title,
                rule_id=rule_id,
                family=family[0],
                vector=family[1].value,
                must_fire=must_fire,
                method=str(given.get("method", "GET")),
                uri=str(given.get("uri", "/")),
                protocol=str(given["version"]) if given.get("version") else None,
                user_agent=headers.get("user-agent"),
                referer=headers.get("referer"),
                host=headers.get("host"),
            )
        )
    return cases


def load_cases(tests_dir: Path) -> tuple[list[Case], Counter[str]]:
    """The selected cases of the suite under `tests_dir` (…/tests/regression/tests) and the skipped, by reason."""
    if not tests_dir.is_dir():
        raise InputError(f"{tests_dir}: CRS regression tests not found")
    yaml = _yaml()
    cases: list[Case] = []
    skipped: Counter[str] = Counter()
    for path in sorted(tests_dir.glob("REQUEST-*/*.yaml")):
        if path.parent.name[8:11] not in CRS_FILES:
            continue
        document = yaml.safe_load(path.read_text(encoding="utf-8", errors="surrogateescape"))
        for test in document.get("tests") or []:
            for number, item in enumerate(test.get("stages") or [], 1):
                title = str(test.get("test_title", path.stem)) + (f"#{number}" if number > 1 else "")
                cases += _stage_cases(title, item.get("stage") or {}, skipped)
    return cases, skipped


def cases_frame(cases: list[Case]) -> pl.DataFrame:
    """The cases as a Request frame (method, path, query, protocol, user_agent, referer, host)."""
    paths, queries = [], []
    for case in cases:
        path, mark, query = case.uri.partition("?")
        paths.append(path)
        queries.append(query if mark else None)
    return pl.DataFrame(
        {
            "method": [c.method for c in cases],
            "path": paths,
            "query": queries,
            "protocol": [c.protocol for c in cases],
            "user_agent": [c.user_agent for c in cases],
            "referer": [c.referer for c in cases],
            "host": [c.host for c in cases],
        },
        schema={k: pl.String for k in ("method", "path", "query", "protocol", "user_agent", "referer", "host")},
    )


def run_suite(tests_dir: Path, *, paranoia: int = 4, engine: SignatureEngine | None = None) -> SuiteResult:
    """Every selected case through the signatures at once; per family, the shares detected and left alone."""
    cases, skipped = load_cases(tests_dir)
    engine = engine or load_engine(paranoia=paranoia)
    hits = engine.match(cases_frame(cases))
    fired = set(zip(hits.get_column("row").to_list(), hits.get_column("rule_id").to_list(), strict=True))
    families: dict[str, FamilyScore] = {}
    for row, case in enumerate(cases):
        families.setdefault(case.family, FamilyScore()).count(case.title, case.must_fire, (row, case.rule_id) in fired)
    return SuiteResult(families, skipped)


@dataclass(frozen=True, slots=True)
class WholeCase:
    """A test whose payload is in the body or in headers other than the user agent and referer."""

    title: str
    rule_id: str
    family: str
    must_fire: bool
    method: str
    uri: str
    headers: tuple[tuple[str, str], ...]
    body: str | None


#: Headers that do not make a test a whole-request one (the log-based suite reads these itself).
_LOG_HEADERS: Final = frozenset({"host", "accept", "user-agent", "referer", "connection", "accept-encoding"})


def load_whole_cases(tests_dir: Path) -> list[WholeCase]:
    """The suite's tests with a body or other headers (the ones `load_cases` skips), raw and encoded requests aside."""
    if not tests_dir.is_dir():
        raise InputError(f"{tests_dir}: CRS regression tests not found")
    yaml = _yaml()
    cases: list[WholeCase] = []
    for path in sorted(tests_dir.glob("REQUEST-*/*.yaml")):
        if path.parent.name[8:11] not in CRS_FILES:
            continue
        document = yaml.safe_load(path.read_text(encoding="utf-8", errors="surrogateescape"))
        for test in document.get("tests") or []:
            for item in test.get("stages") or []:
                given = (item.get("stage") or {}).get("input") or {}
                expected = (item.get("stage") or {}).get("output") or {}
                if given.get("raw_request") or given.get("encoded_request"):
                    continue
                data = given.get("data")
                body = "\r\n".join(map(str, data)) if isinstance(data, list) else (str(data) if data else None)
                headers = tuple((str(k), str(v)) for k, v in (given.get("headers") or {}).items())
                if body is None and not {name.lower() for name, _ in headers} - _LOG_HEADERS:
                    continue
                for must_fire, key in ((True, "log_contains"), (False, "no_log_contains")):
                    for rule_id in _RULE_ID.findall(str(expected.get(key, ""))):
                        family = family_of(rule_id)
                        if family is not None:
                            title = str(test.get("test_title", path.stem))
                            uri = str(given.get("uri", "/"))
                            method = str(given.get("method", "GET"))
                            cases.append(WholeCase(title, rule_id, family[0], must_fire, method, uri, headers, body))
    return cases


def run_whole_suite(tests_dir: Path, *, paranoia: int = 4, engine: SignatureEngine | None = None) -> SuiteResult:
    """Every whole-request case through the one-request path; per family, the shares detected and left alone."""
    from floodwall.detect.signatures.inline import match_inline, request_values

    engine = engine or load_engine(paranoia=paranoia)
    families: dict[str, FamilyScore] = {}
    for case in load_whole_cases(tests_dir):
        path, mark, query = case.uri.partition("?")
        named = {name.lower(): value for name, value in case.headers}
        values = request_values(
            case.method,
            path,
            query if mark else None,
            "HTTP/1.1",
            named.get("user-agent"),
            named.get("referer"),
            named.get("host"),
            dict(case.headers),
            case.body,
        )
        hit = case.rule_id in {h.rule_id for h in match_inline(engine, values)}
        families.setdefault(case.family, FamilyScore()).count(case.title, case.must_fire, hit)
    return SuiteResult(families, Counter())
