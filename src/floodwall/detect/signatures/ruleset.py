"""From CRS `.conf` files to the signatures Floodwall can run, and an account of those it cannot.

A signature is a rule restated for the engine: the collections it reads, the transformation chains it is scanned
under (several for `multiMatch` rules: the value after each step), its pattern for hyperscan and for Python `re`,
or its libinjection detector.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from floodwall.detect.signatures.families import CRS_FILES, FLOODWALL_RULES, family_of
from floodwall.detect.signatures.fields import collection_names
from floodwall.detect.signatures.secrules import ChainLink, Rule, Variable, parse_rules, read_rules_file
from floodwall.detect.signatures.transforms import is_supported
from floodwall.errors import InputError
from floodwall.model import Vector

__all__ = ["DEFAULT_CRS_RULES", "Ruleset", "Selector", "Signature", "load_ruleset", "python_pattern"]

#: Where Debian's `modsecurity-crs` package puts the rules.
DEFAULT_CRS_RULES: Final = Path("/usr/share/modsecurity-crs/rules")

_REGEX_OPERATORS: Final = frozenset({"rx", "pm", "pmFromFile", "pmf", "beginsWith", "endsWith", "contains", "streq"})
_LINK_OPERATORS: Final = _REGEX_OPERATORS | {"within"}
_LINK_COLLECTIONS: Final = frozenset({"MATCHED_VAR", "MATCHED_VARS", "TX"})


@dataclass(frozen=True, slots=True)
class Selector:
    """Members of a stored collection a signature reads: all of them, one key, or keys matching a regex."""

    var: str
    key: str | None = None
    key_regex: str | None = None


@dataclass(frozen=True, slots=True)
class Signature:
    rule: Rule
    family: str
    vector: Vector
    selectors: tuple[Selector, ...]
    exclusions: tuple[Selector, ...]
    chains: tuple[tuple[str, ...], ...]  # transformation chains the value is matched under
    detector: str  # "regex", "sqli" or "xss" (libinjection)
    pattern: str = ""  # PCRE as hyperscan takes it
    caseless: bool = False

    @property
    def id(self) -> str:
        return self.rule.id


@dataclass(slots=True)
class Ruleset:
    signatures: list[Signature]
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> number of rules


def _literal(text: str) -> str:
    """A PCRE pattern matching `text` literally, every non-alphanumeric byte as \\xHH (hyperscan and re agree)."""
    return "".join(
        char if char.isascii() and char.isalnum() else "".join(f"\\x{b:02x}" for b in char.encode()) for char in text
    )


def _phrases(rule_operator: str, argument: str, rules_dir: Path) -> list[str]:
    if rule_operator == "pm":
        return argument.split()
    phrases: list[str] = []
    for name in argument.split():
        path = rules_dir / name
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise InputError(f"{path}: cannot read CRS data file ({error.strerror})") from error
        phrases += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return phrases


def operator_pattern(operator: str, argument: str, rules_dir: Path) -> tuple[str, bool] | None:
    """The operator as a (PCRE pattern, caseless) pair, or None when it is not a pattern operator."""
    if operator == "rx":
        return argument, False
    if operator in ("pm", "pmFromFile", "pmf"):
        phrases = _phrases(operator, argument, rules_dir)
        # Longest first, then by text: the same pattern (and the same compile cache key) in every process.
        return "(?:" + "|".join(sorted({_literal(p) for p in phrases}, key=lambda p: (-len(p), p))) + ")", True
    if "%{" in argument:
        return None  # a macro (%{tx.…}) depends on a transaction we do not have
    wrapped = {"beginsWith": "^{}", "endsWith": "{}$", "contains": "{}", "streq": "^{}$"}
    if operator in wrapped:
        return wrapped[operator].format(_literal(argument)), False
    return None


def python_pattern(pattern: str, caseless: bool) -> re.Pattern[str] | None:
    """The same pattern for Python's `re` (PCRE's `\\z` is `\\Z` there), or None when `re` cannot take it."""
    flags = re.DOTALL | (re.IGNORECASE if caseless else 0)
    try:
        return re.compile(pattern.replace(r"\z", r"\Z"), flags)
    except (re.error, OverflowError):
        return None


def _selectors(variables: tuple[Variable, ...]) -> tuple[tuple[Selector, ...], tuple[Selector, ...]]:
    included: list[Selector] = []
    excluded: list[Selector] = []
    for variable in variables:
        if variable.count:
            continue
        regex = variable.key[1:-1] if variable.key_regex is not None and variable.key is not None else None
        key = None if regex is not None else variable.key
        for var in collection_names(variable.collection):
            (excluded if variable.exclude else included).append(Selector(var, key, regex))
    return tuple(included), tuple(excluded)


def _link_supported(link: ChainLink) -> bool:
    if link.operator not in _LINK_OPERATORS or not all(is_supported(t) for t in link.transforms):
        return False
    collections = {v.collection for v in link.variables if not v.exclude}
    return bool(collections & _LINK_COLLECTIONS) or any(collection_names(c) for c in collections)


def _chains(rule: Rule) -> tuple[tuple[str, ...], ...]:
    if not rule.multi_match:
        return (rule.transforms,)
    return tuple(rule.transforms[:end] for end in range(len(rule.transforms) + 1))


def prepare(rule: Rule, rules_dir: Path, skipped: Counter[str]) -> Signature | None:
    """The signature for `rule`, or None (and a reason counted in `skipped`) when Floodwall cannot run it."""
    family = family_of(rule.id)
    if family is None:
        skipped["outside the breach-attempt families"] += 1
        return None
    selectors, exclusions = _selectors(rule.variables)
    if not selectors:
        skipped["reads only what a request log or the edge does not have"] += 1
        return None
    if not all(is_supported(t) for t in rule.transforms):
        skipped["unsupported transformation"] += 1
        return None
    if not all(_link_supported(link) for link in rule.chain):
        skipped["unsupported chained rule"] += 1
        return None
    common = {"rule": rule, "family": family[0], "vector": family[1], "selectors": selectors}
    if rule.operator in ("detectSQLi", "detectXSS") and not rule.negated:
        detector = "sqli" if rule.operator == "detectSQLi" else "xss"
        return Signature(**common, exclusions=exclusions, chains=_chains(rule), detector=detector)  # type: ignore[arg-type]
    compiled = operator_pattern(rule.operator, rule.argument, rules_dir) if not rule.negated else None
    if compiled is None:
        skipped[f"operator @{rule.operator}{' (negated)' if rule.negated else ''}"] += 1
        return None
    pattern, caseless = compiled
    return Signature(
        **common,  # type: ignore[arg-type]
        exclusions=exclusions,
        chains=_chains(rule),
        detector="regex",
        pattern=pattern,
        caseless=caseless,
    )


def load_ruleset(rules_dir: Path = DEFAULT_CRS_RULES, paranoia: int = 1, *, own_rules: bool = True) -> Ruleset:
    """The CRS breach-attempt rules at or below `paranoia` (1 to 4), plus Floodwall's own, ready for the engine."""
    if not 1 <= paranoia <= 4:
        raise InputError(f"paranoia level {paranoia} is out of range: CRS levels are 1 to 4")
    files = (
        sorted(p for p in rules_dir.glob("REQUEST-9*.conf") if p.name[8:11] in CRS_FILES) if rules_dir.is_dir() else []
    )
    if not files:
        raise InputError(
            f"no OWASP CRS rules in {rules_dir}: install Debian's modsecurity-crs package "
            "(`make sysdeps` does it) or point Floodwall at a CRS 3.3 rules directory"
        )
    rules = [rule for path in files for rule in read_rules_file(path)]
    if own_rules:
        rules += parse_rules(FLOODWALL_RULES, "floodwall")
    ruleset = Ruleset([])
    for rule in rules:
        if rule.paranoia > paranoia:
            ruleset.skipped[f"above paranoia level {paranoia}"] += 1
            continue
        signature = prepare(rule, rules_dir, ruleset.skipped)
        if signature is not None:
            ruleset.signatures.append(signature)
    return ruleset
