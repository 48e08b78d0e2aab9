"""Decisions to and from JSON (versioned), and targets in canonical form.

The JSON form is what the SQLite and Redis backends keep and what pub/sub carries, so nodes running different
versions can read each other: `{"v": 1, "target": ..., "action": ..., "created": ..., "expires": ...,
"reasons": [...], "site": ..., "origin": ..., "evidence": [[source, line], ...]}`, times as ISO 8601 UTC with `Z`.
Readers accept any version up to `FORMAT_VERSION` and refuse newer ones, naming the field at fault.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from typing import Any, Final

from floodwall.errors import InputError
from floodwall.model import Action, Decision

__all__ = [
    "FORMAT_VERSION",
    "decision_from_dict",
    "decision_from_json",
    "decision_to_dict",
    "decision_to_json",
    "format_time",
    "normalise_target",
    "parse_time",
]

FORMAT_VERSION: Final = 1


def normalise_target(target: str) -> str:
    """`target` as an address or CIDR in canonical form: a /32 or /128 becomes the bare address.

    Raises `InputError` for anything that is neither, or for a CIDR with host bits set (`10.0.0.1/24` is
    ambiguous: a typo for one address, or a prefix?).
    """
    try:
        if "/" not in target:
            return ipaddress.ip_address(target.strip()).compressed
        network = ipaddress.ip_network(target.strip(), strict=True)
    except ValueError as error:
        raise InputError(f"decision field 'target': {target!r} is not an address or CIDR ({error})") from None
    if network.prefixlen == network.max_prefixlen:
        return network.network_address.compressed
    return network.compressed


def format_time(when: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, microseconds kept when there are any."""
    text = when.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def parse_time(text: object, field: str) -> datetime:
    """An aware UTC datetime from ISO 8601 text; `field` names the field in the error."""
    if not isinstance(text, str):
        raise InputError(f"decision field {field!r}: expected an ISO 8601 time, got {text!r}")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"decision field {field!r}: {text!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise InputError(f"decision field {field!r}: {text!r} has no time zone")
    return when.astimezone(UTC)


def decision_to_dict(decision: Decision) -> dict[str, Any]:
    """The JSON-ready form of `decision`, with the format version."""
    return {
        "v": FORMAT_VERSION,
        "target": decision.target,
        "action": decision.action.value,
        "created": format_time(decision.created),
        "expires": format_time(decision.expires),
        "reasons": list(decision.reasons),
        "site": decision.site,
        "origin": decision.origin,
        "evidence": [[source, line] for source, line in decision.evidence],
    }


def decision_to_json(decision: Decision) -> str:
    return json.dumps(decision_to_dict(decision), separators=(",", ":"), ensure_ascii=False)


def _strings(value: object, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputError(f"decision field {field!r}: expected a list of strings, got {value!r}")
    return tuple(value)


def _evidence(value: object) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, list):
        raise InputError(f"decision field 'evidence': expected a list of [source, line] pairs, got {value!r}")
    pairs: list[tuple[str, int]] = []
    for index, item in enumerate(value):
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not isinstance(item[0], str)
            or not isinstance(item[1], int)
            or isinstance(item[1], bool)
        ):
            raise InputError(f"decision field 'evidence[{index}]': expected [source, line], got {item!r}")
        pairs.append((item[0], item[1]))
    return tuple(pairs)


def _optional_string(data: dict[str, Any], field: str, default: str | None) -> str | None:
    value = data.get(field, default)
    if value is not None and not isinstance(value, str):
        raise InputError(f"decision field {field!r}: expected a string, got {value!r}")
    return value


def decision_from_dict(data: object) -> Decision:
    """A `Decision` from its JSON form; `InputError` names the first field at fault."""
    if not isinstance(data, dict):
        raise InputError(f"decision: expected a JSON object, got {type(data).__name__}")
    version = data.get("v")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise InputError(f"decision field 'v': unsupported format version {version!r} (this reads 1..{FORMAT_VERSION})")
    for field in ("target", "action", "created", "expires"):
        if field not in data:
            raise InputError(f"decision field {field!r} is missing")
    target = data["target"]
    if not isinstance(target, str):
        raise InputError(f"decision field 'target': expected a string, got {target!r}")
    try:
        action = Action(data["action"])
    except ValueError:
        choices = ", ".join(a.value for a in Action)
        raise InputError(f"decision field 'action': {data['action']!r} is not one of {choices}") from None
    origin = _optional_string(data, "origin", "floodwall")
    return Decision(
        target=normalise_target(target),
        action=action,
        created=parse_time(data["created"], "created"),
        expires=parse_time(data["expires"], "expires"),
        reasons=_strings(data.get("reasons", []), "reasons"),
        site=_optional_string(data, "site", None),
        origin=origin if origin is not None else "floodwall",
        evidence=_evidence(data.get("evidence", [])),
    )


def decision_from_json(text: str | bytes) -> Decision:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"decision: not JSON ({error})") from None
    return decision_from_dict(data)
