"""Chained rules: the links after a rule's first match, checked on the few requests that matched it.

A link reads the value that matched (`MATCHED_VAR`, `MATCHED_VARS`), the first capture of the rule's pattern
(`TX:1`, `TX:/rfi_parameter_.*/`), or other collections of the same request, and applies its own operator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

from floodwall.detect.signatures.fields import collection_names
from floodwall.detect.signatures.secrules import ChainLink
from floodwall.detect.signatures.transforms import apply_chain

__all__ = ["RequestValues", "link_matches"]

#: One request's values: (stored collection, key) -> values.
RequestValues = Mapping[tuple[str, str | None], Sequence[str]]

_MACRO = re.compile(r"%\{([^}]+)\}")


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern.replace(r"\z", r"\Z"), re.DOTALL)
    except re.error:
        return None


def _operator(operator: str, argument: str, value: str) -> bool:
    if operator == "rx":
        regex = _regex(argument)
        return regex is not None and regex.search(value) is not None
    if operator == "pm":
        lowered = value.lower()
        return any(phrase.lower() in lowered for phrase in argument.split())
    checks = {
        "beginsWith": value.startswith,
        "endsWith": value.endswith,
        "contains": value.__contains__,
        "streq": value.__eq__,
        "within": argument.__contains__,
    }
    return bool(checks[operator](argument if operator != "within" else value))


def _expand(argument: str, values: RequestValues) -> str | None:
    """Resolve %{request_headers.host}-style macros from the request; None when one is unknown."""
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        collection, _, key = match.group(1).partition(".")
        found = values.get(("REQUEST_HEADERS", key.lower())) if collection.lower() == "request_headers" else None
        if not found:
            missing = True
            return ""
        return found[0]

    expanded = _MACRO.sub(replace, argument)
    return None if missing else expanded


def _candidates(link: ChainLink, matched_value: str, capture: str | None, values: RequestValues) -> list[str]:
    found: list[str] = []
    for variable in link.variables:
        if variable.exclude or variable.count:
            continue
        if variable.collection in ("MATCHED_VAR", "MATCHED_VARS"):
            found.append(matched_value)
        elif variable.collection == "TX" and capture is not None:
            # CRS stores the capture with a leading dot (931130: setvar tx.rfi_parameter_…=.%{tx.1}).
            found.append("." + capture if variable.key and variable.key.startswith("/") else capture)
        else:
            for var in collection_names(variable.collection):
                for (stored, key), members in values.items():
                    if stored == var and (variable.key is None or (key or "").lower() == variable.key.lower()):
                        found.extend(members)
    return found


def link_matches(link: ChainLink, matched_value: str, capture: str | None, values: RequestValues) -> bool:
    """Whether `link` holds for a request whose rule matched `matched_value` (after the rule's transformations)."""
    argument = _expand(link.argument, values) if "%{" in link.argument else link.argument
    if argument is None:  # a macro we cannot resolve: a negated test cannot be disproved, a plain one not proved
        return link.negated
    candidates = [apply_chain(value, link.transforms) for value in _candidates(link, matched_value, capture, values)]
    if link.negated:
        return bool(candidates) and not all(_operator(link.operator, argument, value) for value in candidates)
    return any(_operator(link.operator, argument, value) for value in candidates)
