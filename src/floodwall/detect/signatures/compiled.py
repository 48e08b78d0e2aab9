"""Signatures grouped by transformation chain, each group compiled into one hyperscan database.

Every distinct transformed value of a group is scanned once against all of the group's patterns. Patterns
hyperscan rejects (lookarounds, possessive quantifiers, sizes) are compiled in its prefilter mode, which may
over-match, and each prefilter hit is confirmed with Python's `re`; a pattern even the prefilter mode rejects is
matched by `re` alone. `CompileReport` counts each kind so the fallbacks are visible.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import hyperscan

from floodwall.detect.signatures.ruleset import Ruleset, Signature, python_pattern
from floodwall.errors import InputError

__all__ = ["CompileReport", "CompiledGroup", "compile_groups", "load_libinjection"]

_BASE_FLAGS = hyperscan.HS_FLAG_DOTALL | hyperscan.HS_FLAG_SINGLEMATCH


@dataclass(slots=True)
class CompileReport:
    hyperscan: int = 0  # patterns hyperscan matches exactly
    prefiltered: int = 0  # hyperscan prefilter + Python re confirmation
    python_only: int = 0  # Python re alone
    unusable: list[str] = field(default_factory=list)  # rule ids neither could compile
    libinjection: int = 0  # @detectSQLi / @detectXSS signatures run through libinjection
    libinjection_missing: list[str] = field(default_factory=list)  # rule ids skipped for want of libinjection


@dataclass(slots=True)
class CompiledGroup:
    """The signatures scanned under one transformation chain."""

    chain: tuple[str, ...]
    signatures: list[Signature]
    database: Any = None  # hyperscan.Database over `hs_members`, or None
    hs_members: list[int] = field(default_factory=list)  # hyperscan id -> index into `signatures`
    confirm: dict[int, re.Pattern[str]] = field(default_factory=dict)  # signature index -> re, for prefilter hits
    python_only: dict[int, re.Pattern[str]] = field(default_factory=dict)
    evidence: dict[int, re.Pattern[str] | None] = field(default_factory=dict)  # signature index -> re for the text
    injection: list[tuple[int, Callable[[str], bool]]] = field(default_factory=list)


def load_libinjection() -> ModuleType | None:
    """The `libinjection` binding (PyPI `libinjection-python`), when it is installed."""
    try:
        return importlib.import_module("libinjection")
    except ImportError:
        return None


def _detector(module: ModuleType, kind: str) -> Callable[[str], bool]:
    """libinjection on a value; the binding takes text, so undecodable bytes are passed as U+FFFD."""
    function: Callable[[str], dict[str, Any]] = module.is_sql_injection if kind == "sqli" else module.is_xss
    field_name = "is_sqli" if kind == "sqli" else "is_xss"

    def detect(value: str) -> bool:
        if not value.isascii():
            value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return bool(function(value)[field_name])

    return detect


def _compiles(pattern: bytes, flags: int) -> bool:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        database.compile(expressions=[pattern], ids=[0], elements=1, flags=[flags])
    except hyperscan.error:
        return False
    return True


def _build_database(expressions: list[bytes], flags: list[int]) -> Any:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(expressions=expressions, ids=list(range(len(expressions))), elements=len(expressions), flags=flags)
    return database


def _compile_group(group: CompiledGroup, report: CompileReport, libinjection: ModuleType | None) -> None:
    expressions: list[bytes] = []
    flags: list[int] = []
    for index, signature in enumerate(group.signatures):
        if signature.detector != "regex":
            if libinjection is None:
                report.libinjection_missing.append(signature.id)
            else:
                group.injection.append((index, _detector(libinjection, signature.detector)))
                report.libinjection += 1
            continue
        group.evidence[index] = python_pattern(signature.pattern, signature.caseless)
        group.hs_members.append(index)
        expressions.append(signature.pattern.encode("utf-8"))
        flags.append(_BASE_FLAGS | (hyperscan.HS_FLAG_CASELESS if signature.caseless else 0))
    try:
        group.database = _build_database(expressions, flags) if expressions else None
        report.hyperscan += len(expressions)
        return
    except hyperscan.error:
        pass
    # One pattern or more was rejected: find them, prefilter what can be, leave the rest to `re`.
    kept_expressions, kept_flags, kept_members = [], [], []
    for index, expression, flag in zip(group.hs_members, expressions, flags, strict=True):
        evidence = group.evidence[index]
        if _compiles(expression, flag):
            report.hyperscan += 1
        elif evidence is not None and _compiles(expression, flag | hyperscan.HS_FLAG_PREFILTER):
            flag = flag | hyperscan.HS_FLAG_PREFILTER  # noqa: PLW2901 (the flag this pattern is compiled with)
            group.confirm[index] = evidence
            report.prefiltered += 1
        elif evidence is not None:
            group.python_only[index] = evidence
            report.python_only += 1
            continue
        else:
            report.unusable.append(group.signatures[index].id)
            continue
        kept_expressions.append(expression)
        kept_flags.append(flag)
        kept_members.append(index)
    group.hs_members = kept_members
    try:
        group.database = _build_database(kept_expressions, kept_flags) if kept_expressions else None
    except hyperscan.error as error:  # each compiled alone, so this is hyperscan's limit on the whole set
        raise InputError(f"hyperscan cannot compile the CRS signatures for chain {group.chain}: {error}") from error


def compile_groups(ruleset: Ruleset) -> tuple[list[CompiledGroup], CompileReport]:
    """One group per distinct transformation chain (multiMatch rules join one group per step of theirs)."""
    by_chain: dict[tuple[str, ...], list[Signature]] = {}
    for signature in ruleset.signatures:
        for chain in signature.chains:
            by_chain.setdefault(tuple(t.lower() for t in chain), []).append(signature)
    report = CompileReport()
    libinjection = load_libinjection()
    groups = []
    for chain, signatures in sorted(by_chain.items()):
        group = CompiledGroup(chain, signatures)
        _compile_group(group, report, libinjection)
        groups.append(group)
    return groups, report
