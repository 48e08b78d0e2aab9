"""Which format a log is in: `--format auto` sniffs the first lines and says what it chose and why."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Final

from floodwall.errors import LogFormatError
from floodwall.logs import clf

__all__ = ["FORMATS", "FormatGuess", "sniff_format"]

FORMATS: Final = ("combined", "common", "vhost_combined", "json")
SAMPLE_LINES: Final = 200


@dataclass(frozen=True, slots=True)
class FormatGuess:
    """A format, the layout of its extra fields, and a sentence saying how it was chosen."""

    name: str
    reason: str
    layout: clf.ExtrasLayout = clf.NO_EXTRAS
    json_fields: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        extras = [column for column in self.layout.columns if column is not None]
        suffix = f", extra fields: {', '.join(extras)}" if extras else ""
        return f"{self.name}{suffix} ({self.reason})"


def _sample(probe: bytes) -> list[str]:
    lines = probe.split(b"\n")
    if len(lines) > 1 and probe and not probe.endswith(b"\n"):
        lines = lines[:-1]  # the probe may end mid-line
    text = [line.rstrip(b"\r").decode("utf-8", "replace") for line in lines[:SAMPLE_LINES]]
    return [line for line in text if line.strip()]


def _looks_json(line: str) -> bool:
    if not line.lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def sniff_format(probe: bytes, requested: str, source: str) -> FormatGuess:
    """Choose the format of a log from its first bytes; `requested` other than "auto" is kept, with its layout."""
    lines = _sample(probe)
    if requested == "json":
        return FormatGuess("json", "as requested")
    if requested == "auto" and lines:
        json_lines = sum(_looks_json(line) for line in lines)
        if json_lines * 2 > len(lines):
            return FormatGuess("json", f"{json_lines} of {len(lines)} sample lines are JSON objects")
    counts = dict.fromkeys(clf.CLF_FORMATS, 0)
    extras: dict[str, list[str]] = {name: [] for name in clf.CLF_FORMATS}
    for line in lines:
        # Each line counts for the richest format it fits: a combined line also fits `common`.
        for name in ("vhost_combined", "combined", "common"):
            m = clf.match_format(line, name)
            if m is not None:
                counts[name] += 1
                extras[name].append(m)
                break
    if requested != "auto":
        if requested not in clf.CLF_FORMATS:
            raise LogFormatError(f"{source}: unknown format {requested!r}; use one of {', '.join(FORMATS)}")
        return FormatGuess(requested, "as requested", clf.learn_layout(extras[requested]))
    if not lines:
        return FormatGuess("combined", "empty input; assumed nginx's default")
    best = max(clf.CLF_FORMATS, key=lambda name: counts[name])
    if counts[best] == 0:
        first = lines[0][:80]
        raise LogFormatError(
            f"{source}: line 1: not a known access-log format ({first!r}); "
            f"use --format with one of {', '.join(FORMATS)}"
        )
    reason = f"{counts[best]} of {len(lines)} sample lines"
    return FormatGuess(best, reason, clf.learn_layout(extras[best]))
