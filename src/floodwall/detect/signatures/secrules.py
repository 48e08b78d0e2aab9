"""A reader for the subset of ModSecurity's `SecRule` language that the OWASP Core Rule Set 3.3 uses.

It turns a `.conf` file into `Rule` objects: variables (with exclusions such as `!REQUEST_COOKIES:/__utm/`),
one operator with its argument, the transformation chain, the paranoia level (from the `TX:EXECUTING_PARANOIA_LEVEL
"@lt N"` markers CRS puts before each level's rules), the severity and the chain links. It does not judge whether
a rule can run on what Floodwall sees; `engine.py` does that.

Syntax reference: https://github.com/SpiderLabs/ModSecurity/wiki/Reference-Manual-(v2.x)#secrule
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from floodwall.errors import InputError

__all__ = ["ChainLink", "Rule", "Variable", "parse_rules", "read_rules_file"]

#: Anomaly points per severity, as CRS 3.3's REQUEST-901-INITIALIZATION sets them by default.
SEVERITY_SCORES = {"CRITICAL": 5, "ERROR": 4, "WARNING": 3, "NOTICE": 2}

_PARANOIA_MARKER = re.compile(r'^SecRule\s+TX:EXECUTING_PARANOIA_LEVEL\s+"@lt\s+(\d)"')


@dataclass(frozen=True, slots=True)
class Variable:
    """One entry of a rule's variable list: `ARGS`, `REQUEST_HEADERS:User-Agent`, `!REQUEST_COOKIES:/__utm/`."""

    collection: str  # upper case, e.g. "ARGS", "REQUEST_HEADERS"
    key: str | None = None  # a literal key (lower-cased for headers), or a /regex/ as written
    exclude: bool = False  # a leading "!": drop these members from the collection
    count: bool = False  # a leading "&": the number of members

    @property
    def key_regex(self) -> re.Pattern[str] | None:
        if self.key is not None and len(self.key) > 1 and self.key.startswith("/") and self.key.endswith("/"):
            return re.compile(self.key[1:-1], re.IGNORECASE)
        return None


@dataclass(frozen=True, slots=True)
class ChainLink:
    """A rule after the first in a `chain`: all links must match for the rule to fire."""

    variables: tuple[Variable, ...]
    operator: str  # "rx", "pm", "endsWith", ...
    argument: str
    negated: bool
    transforms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    """One CRS rule as written (the first link of a chain, with the others in `chain`)."""

    id: str
    file: str  # the .conf file name it came from
    variables: tuple[Variable, ...]
    operator: str
    argument: str
    negated: bool
    transforms: tuple[str, ...]  # after the last t:none, in order
    paranoia: int
    severity: str
    message: str
    multi_match: bool = False
    capture: bool = False
    tags: tuple[str, ...] = ()
    chain: tuple[ChainLink, ...] = field(default_factory=tuple)

    @property
    def anomaly_score(self) -> int:
        return SEVERITY_SCORES.get(self.severity, 0)


def _logical_lines(text: str) -> list[str]:
    """Join backslash-continued lines and drop comments and blank lines."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def _tokens(line: str) -> list[str]:
    """Split a directive into words the way Apache reads a directive's arguments (`ap_getword_conf`): inside double
    quotes, `\\"` is a quote and `\\\\` one backslash; any other backslash is kept. CRS relies on it: 941330 writes
    `\\\\\\\\u006C` in the file for the regex `\\\\u006C` (a literal backslash before `u006C`, the IE filter evasion
    its test 941330-1 sends). The same reading turns 941170's `\\\\[ux]\\d` into `\\[ux]\\d` and 942440's `\\\\x00`
    into a NUL byte, as Apache ModSecurity runs them (libmodsecurity 3's own parser may differ; CRS 4 writes `\\x5c`
    instead)."""
    tokens: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        if line[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n and line[i + 1] in '"\\':
                    chars.append(line[i + 1])
                    i += 2
                    continue
                chars.append(line[i])
                i += 1
            tokens.append("".join(chars))
            i += 1
        else:
            start = i
            while i < n and not line[i].isspace():
                i += 1
            tokens.append(line[start:i])
    return tokens


def _split_actions(text: str) -> list[tuple[str, str]]:
    """`id:1,t:none,msg:'a, b'` -> [("id", "1"), ("t", "none"), ("msg", "a, b")]."""
    actions: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " ,":
            i += 1
        start = i
        while i < n and text[i] not in ":,":
            i += 1
        name = text[start:i].strip()
        value = ""
        if i < n and text[i] == ":":
            i += 1
            if i < n and text[i] == "'":
                end = i + 1
                while end < n and not (text[end] == "'" and text[end - 1] != "\\"):
                    end += 1
                value = text[i + 1 : end]
                i = end + 1
            else:
                start = i
                while i < n and text[i] != ",":
                    i += 1
                value = text[start:i].strip()
        if name:
            actions.append((name, value))
    return actions


def _variables(text: str) -> tuple[Variable, ...]:
    variables: list[Variable] = []
    for written in text.split("|"):
        exclude, count = written.startswith("!"), written.startswith("&")
        collection, _, key = written.lstrip("!&").partition(":")
        collection = collection.upper()
        key_value: str | None = key or None
        if key_value is not None and collection.startswith("REQUEST_HEADERS") and not key_value.startswith("/"):
            key_value = key_value.lower()
        variables.append(Variable(collection, key_value, exclude, count))
    return tuple(variables)


def _operator(text: str) -> tuple[str, str, bool]:
    negated = text.startswith("!")
    text = text.removeprefix("!")
    if not text.startswith("@"):
        return "rx", text, negated  # a bare pattern is @rx
    name, _, argument = text[1:].partition(" ")
    return name, argument, negated


def _transforms(actions: list[tuple[str, str]]) -> tuple[str, ...]:
    chain: list[str] = []
    for name, value in actions:
        if name == "t":
            if value.lower() == "none":
                chain.clear()
            else:
                chain.append(value)
    return tuple(chain)


def parse_rules(text: str, file: str = "<string>") -> list[Rule]:
    """Every `SecRule` of `text` with an `id`, with its chain links attached.

    Rules whose variables or operators Floodwall cannot evaluate are returned too; the engine counts and skips them.
    """
    rules: list[Rule] = []
    paranoia = 1
    open_rule: dict[str, object] | None = None
    links: list[ChainLink] = []

    def close() -> None:
        nonlocal open_rule, links
        if open_rule is not None:
            rules.append(Rule(**open_rule, chain=tuple(links)))  # type: ignore[arg-type]
        open_rule, links = None, []

    for line in _logical_lines(text):
        marker = _PARANOIA_MARKER.match(line)
        if marker:
            close()
            paranoia = int(marker.group(1))
            continue
        tokens = _tokens(line)
        if not tokens or tokens[0] != "SecRule" or len(tokens) < 3:
            if tokens and tokens[0] in ("SecMarker", "SecAction"):
                close()
            continue
        actions = _split_actions(tokens[3]) if len(tokens) > 3 else []
        names = {name for name, _ in actions}
        operator, argument, negated = _operator(tokens[2])
        variables = _variables(tokens[1])
        if open_rule is not None:  # a chain link of the rule above
            links.append(ChainLink(variables, operator, argument, negated, _transforms(actions)))
            if "chain" not in names:
                close()
            continue
        rule_id = next((value for name, value in actions if name == "id"), None)
        if rule_id is None:
            continue
        tags = tuple(value for name, value in actions if name == "tag")
        level = next((int(t.rsplit("/", 1)[1]) for t in tags if t.startswith("paranoia-level/")), paranoia)
        open_rule = {
            "id": rule_id,
            "file": file,
            "variables": variables,
            "operator": operator,
            "argument": argument,
            "negated": negated,
            "transforms": _transforms(actions),
            "paranoia": level,
            "severity": next((value.upper() for name, value in actions if name == "severity"), ""),
            "message": next((value for name, value in actions if name == "msg"), ""),
            "multi_match": "multiMatch" in names,
            "capture": "capture" in names,
            "tags": tags,
        }
        if "chain" not in names:
            close()
    close()
    return rules


def read_rules_file(path: Path) -> list[Rule]:
    """Parse one CRS `.conf` file; an unreadable file is an InputError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"{path}: cannot read CRS rules file ({error.strerror})") from error
    return parse_rules(text, path.name)
