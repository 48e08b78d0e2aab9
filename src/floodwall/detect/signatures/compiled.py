"""Every signature's pattern in a pooled hyperscan database, compiled once per rule set and cached on disk.

Signatures are grouped by transformation chain (`CompiledGroup`); their patterns are pooled into one database (two,
see `Patterns`) so that a transformed value shared by several chains (most values: no chain changes a plain path or
argument) is scanned once. A pattern expression maps back to every (group, signature) that uses it.

`@pm` phrase lists become one expression per phrase (CRS's lfi-os-files.data and php-function-names lists are too
long for one hyperscan pattern; as phrases they stay exact). Patterns hyperscan rejects (lookarounds, possessive
quantifiers, sizes) are compiled in its prefilter mode, which may over-match, and each prefilter hit is confirmed
with Python's `re`; a pattern even the prefilter mode rejects is matched by `re` alone. `CompileReport` counts each
kind so the fallbacks are visible.

Compiling takes seconds; the databases are serialised (`hyperscan.dumpb`) into a cache directory under a key made of
every expression and flag compiled (so of the rule files and the paranoia level), the format version, the hyperscan
binding version and the machine, written atomically, and loaded (`hyperscan.loadb`) on the next start.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import logging
import platform
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import hyperscan

from floodwall.detect.signatures.ruleset import Ruleset, Signature, python_pattern
from floodwall.errors import InputError

__all__ = [
    "CompileReport",
    "CompiledGroup",
    "Patterns",
    "Scanner",
    "compile_groups",
    "default_cache_dir",
    "evidence_regex",
    "load_libinjection",
]

log = logging.getLogger(__name__)

_BASE_FLAGS: Final = hyperscan.HS_FLAG_DOTALL | hyperscan.HS_FLAG_SINGLEMATCH
_PHRASE_OPERATORS: Final = frozenset({"pm", "pmFromFile", "pmf"})
_PHRASE: Final = re.compile(rb"(?:[A-Za-z0-9]|\\x[0-9a-f]{2})+")
_CACHE_FORMAT: Final = 2
_CACHE_KEEP: Final = 8  # cache files kept (rule sets x paranoia levels x versions)
_CACHE_MAGIC: Final = b"floodwall-signatures\n"

EXACT, PREFILTER, PYTHON, UNUSABLE = "exact", "prefilter", "python", "unusable"


@dataclass(slots=True)
class CompileReport:
    hyperscan: int = 0  # signatures (per chain group) hyperscan matches exactly
    prefiltered: int = 0  # hyperscan prefilter + Python re confirmation
    python_only: int = 0  # Python re alone
    unusable: list[str] = field(default_factory=list)  # rule ids neither could compile
    libinjection: int = 0  # @detectSQLi / @detectXSS signatures run through libinjection
    libinjection_missing: list[str] = field(default_factory=list)  # rule ids skipped for want of libinjection
    cached: bool = False  # the database came from the on-disk cache


@dataclass(slots=True)
class CompiledGroup:
    """The signatures scanned under one transformation chain."""

    chain: tuple[str, ...]
    signatures: list[Signature]
    injection: list[tuple[int, Callable[[str], bool]]] = field(default_factory=list)  # libinjection detectors


@dataclass(slots=True)
class Scanner:
    """One hyperscan database and what each of its expression ids stands for."""

    database: Any  # hyperscan.Database
    targets: list[tuple[tuple[int, int], ...]]  # expression id -> (group index, signature index) pairs
    prefiltered: list[bool]  # expression id -> its hits must be confirmed by `re`
    groups: frozenset[int] | None  # scan only the values of these groups; None: every value


@dataclass(slots=True)
class Patterns:
    """The databases every distinct transformed value goes through, and the signatures left to `re` alone.

    Exact expressions share one database, scanned over every value. Prefiltered ones (which over-match: CRS's long
    932100/932105/932150 command lists match in prefilter mode on most text with a `;`, `&` or `=`) have their own,
    scanned only over the values of the groups that use them, so that few hits need `re`.
    """

    scanners: list[Scanner]
    python_only: list[tuple[int, int]]  # (group, signature) pairs matched by `re` alone


def load_libinjection() -> ModuleType | None:
    """The `libinjection` binding (PyPI `libinjection-python`), when it is installed."""
    try:
        return importlib.import_module("libinjection")
    except ImportError:
        return None


def default_cache_dir() -> Path:
    """`~/.cache/floodwall`; `$XDG_CACHE_HOME` is read by the CLI alone and arrives as `[detect] signatures_cache`
    (STYLE.md item 5: no module reads the environment on its own)."""
    return Path.home() / ".cache" / "floodwall"


@lru_cache(maxsize=1024)
def _evidence(pattern: str, caseless: bool) -> re.Pattern[str] | None:
    return python_pattern(pattern, caseless)


def evidence_regex(signature: Signature) -> re.Pattern[str] | None:
    """The signature's pattern for Python `re` (compiled on first use: only hits need it), or None."""
    return _evidence(signature.pattern, signature.caseless)


def _detector(module: ModuleType, kind: str) -> Callable[[str], bool]:
    """libinjection on a value; the binding takes text, so undecodable bytes are passed as U+FFFD."""
    function: Callable[[str], dict[str, Any]] = module.is_sql_injection if kind == "sqli" else module.is_xss
    field_name = "is_sqli" if kind == "sqli" else "is_xss"

    def detect(value: str) -> bool:
        if not value.isascii():
            value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return bool(function(value)[field_name])

    return detect


def _expressions(signature: Signature) -> list[str]:
    """The hyperscan expressions of a regex signature, which fires when any of them matches: one per phrase for
    `@pm` lists, else its pattern."""
    pattern = signature.pattern
    if signature.rule.operator in _PHRASE_OPERATORS and pattern.startswith("(?:") and pattern.endswith(")"):
        # ruleset.operator_pattern writes phrases with every non-alphanumeric byte as \xHH, so `|` splits exactly.
        return pattern[3:-1].split("|")
    return [pattern]


def _compiles(expression: bytes, flags: int) -> bool:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        database.compile(expressions=[expression], ids=[0], elements=1, flags=[flags])
    except hyperscan.error:
        return False
    return True


def _build_database(expressions: list[bytes], flags: list[int]) -> Any:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(expressions=expressions, ids=list(range(len(expressions))), elements=len(expressions), flags=flags)
    return database


def _modes(expressions: list[bytes], flags: list[int], regexes: list[re.Pattern[str] | None]) -> list[str]:
    """How each expression can be run: exactly, prefiltered and confirmed, by `re` alone, or not at all."""
    try:
        _build_database(expressions, flags)
        return [EXACT] * len(expressions)
    except hyperscan.error:
        pass
    modes = []
    for expression, flag, regex in zip(expressions, flags, regexes, strict=True):
        literal = _PHRASE.fullmatch(expression) is not None and len(expression) < 4096  # a @pm phrase, as written
        if literal or _compiles(expression, flag):
            modes.append(EXACT)
        elif regex is not None and _compiles(expression, flag | hyperscan.HS_FLAG_PREFILTER):
            modes.append(PREFILTER)
        else:
            modes.append(PYTHON if regex is not None else UNUSABLE)
    return modes


def _cache_key(expressions: list[bytes], flags: list[int]) -> str:
    digest = hashlib.sha256()
    header = [_CACHE_FORMAT, importlib.metadata.version("hyperscan"), platform.machine(), platform.system()]
    digest.update(json.dumps(header).encode())
    for expression, flag in zip(expressions, flags, strict=True):
        digest.update(b"\0%d\0" % flag + expression)
    return digest.hexdigest()[:32]


def _load_cached(path: Path, count: int) -> tuple[list[str], list[Any]] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        log.warning("signature cache %s unreadable, compiling instead: %s", path, error)
        return None
    try:
        if not data.startswith(_CACHE_MAGIC):
            raise ValueError("not a Floodwall signature cache")
        header_line, _, serialized = data[len(_CACHE_MAGIC) :].partition(b"\n")
        header = json.loads(header_line)
        modes: list[str] = header["modes"]
        if len(modes) != count or sum(header["sizes"]) != len(serialized):
            raise ValueError("expression count or size differs")
        databases, offset = [], 0
        for size in header["sizes"]:
            database = hyperscan.loadb(serialized[offset : offset + size], hyperscan.HS_MODE_BLOCK)
            database.scratch = hyperscan.Scratch(database)  # a loaded database comes without scratch space
            databases.append(database)
            offset += size
    except (ValueError, KeyError, TypeError, hyperscan.error) as error:
        log.warning("signature cache %s unusable, compiling instead: %s", path, error)
        return None
    return modes, databases


def _store_cached(path: Path, modes: list[str], databases: list[Any]) -> None:
    """Write the cache file whole or not at all (a temporary file renamed over the target); keep the newest few."""
    blobs = [hyperscan.dumpb(database) for database in databases]
    header = json.dumps({"modes": modes, "sizes": [len(blob) for blob in blobs]}).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as handle:
            handle.write(_CACHE_MAGIC + header + b"\n" + b"".join(blobs))
        Path(handle.name).replace(path)
        older = sorted(path.parent.glob("signatures-*.hsdb"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in older[_CACHE_KEEP:]:
            stale.unlink(missing_ok=True)
    except OSError as error:  # a read-only home must not stop matching; the next start compiles again
        log.warning("signature cache %s not written: %s", path, error)


def compile_groups(
    ruleset: Ruleset, cache_dir: Path | None = None
) -> tuple[list[CompiledGroup], Patterns, CompileReport]:
    """One group per distinct transformation chain (multiMatch rules join one group per step of theirs), and the
    pooled database of their patterns; `cache_dir` None compiles without the on-disk cache."""
    by_chain: dict[tuple[str, ...], list[Signature]] = {}
    for signature in ruleset.signatures:
        for chain in signature.chains:
            by_chain.setdefault(tuple(t.lower() for t in chain), []).append(signature)
    report = CompileReport()
    libinjection = load_libinjection()
    groups = [CompiledGroup(chain, signatures) for chain, signatures in sorted(by_chain.items())]

    index: dict[tuple[str, bool], int] = {}  # (expression, caseless) -> expression id
    owners: list[list[tuple[int, int]]] = []
    regexes: list[re.Pattern[str] | None] = []
    members: dict[tuple[int, int], list[int]] = {}  # (group, signature) -> its expression ids
    for group_index, group in enumerate(groups):
        for signature_index, signature in enumerate(group.signatures):
            if signature.detector != "regex":
                if libinjection is None:
                    report.libinjection_missing.append(signature.id)
                else:
                    group.injection.append((signature_index, _detector(libinjection, signature.detector)))
                    report.libinjection += 1
                continue
            for expression in _expressions(signature):
                key = (expression, signature.caseless)
                if key not in index:
                    index[key] = len(owners)
                    owners.append([])
                    regexes.append(None)
                owners[index[key]].append((group_index, signature_index))
                members.setdefault((group_index, signature_index), []).append(index[key])
    expressions = [expression.encode("utf-8") for expression, _ in index]
    flags = [_BASE_FLAGS | (hyperscan.HS_FLAG_CASELESS if caseless else 0) for _, caseless in index]

    cache_path = cache_dir / f"signatures-{_cache_key(expressions, flags)}.hsdb" if cache_dir else None
    cached = _load_cached(cache_path, len(expressions)) if cache_path else None
    if cached is not None:
        modes, databases = cached
        report.cached = True
    else:
        for (expression, caseless), expression_id in index.items():
            regexes[expression_id] = _evidence(expression, caseless)
        modes = _modes(expressions, flags, regexes)
        databases = []
    parts = [
        [i for i, mode in enumerate(modes) if mode == EXACT],
        [i for i, mode in enumerate(modes) if mode == PREFILTER],
    ]
    parts = [part for part in parts if part]
    if cached is None:
        for part in parts:
            part_flags = [flags[i] | (hyperscan.HS_FLAG_PREFILTER if modes[i] == PREFILTER else 0) for i in part]
            try:
                databases.append(_build_database([expressions[i] for i in part], part_flags))
            except hyperscan.error as error:  # each compiled alone, so this is hyperscan's limit on the whole set
                raise InputError(f"hyperscan cannot compile the CRS signatures together: {error}") from error
        if cache_path is not None:
            _store_cached(cache_path, modes, databases)
    scanners = []
    for part, database in zip(parts, databases, strict=True):
        prefiltered = modes[part[0]] == PREFILTER
        targets = [tuple(owners[i]) for i in part]
        scope = frozenset(group for pairs in targets for group, _ in pairs) if prefiltered else None
        scanners.append(Scanner(database, targets, [prefiltered] * len(part), scope))

    python_only: list[tuple[int, int]] = []
    for (group_index, signature_index), ids in sorted(members.items()):
        kinds = {modes[i] for i in ids}
        signature = groups[group_index].signatures[signature_index]
        if UNUSABLE in kinds:
            report.unusable.append(signature.id)
        elif PYTHON in kinds:
            python_only.append((group_index, signature_index))
            report.python_only += 1
        elif PREFILTER in kinds:
            report.prefiltered += 1
        else:
            report.hyperscan += 1
    return groups, Patterns(scanners, python_only), report
