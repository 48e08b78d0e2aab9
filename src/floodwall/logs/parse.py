"""Chunks of log lines to Request frames: the fast path first, the strict parser for the lines it rejects.

The fast path for the Common Log Format family is `_clfscan`, a small C scanner that fills Arrow columns for a
whole chunk at once (Python never touches a line it accepts). Lines it is unsure of, and every line when the
extension is not built, go to `clf.parse_line`; a line neither accepts is counted and, for the first
`BAD_SAMPLES`, kept with its number for the report. No line is ever fatal.
"""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass, field
from datetime import tzinfo
from types import ModuleType
from typing import Final

import polars as pl

from floodwall.logs import clf
from floodwall.logs.formats import FormatGuess
from floodwall.logs.frame import CORE_FIELDS, apply_extras_columnar, finish_frame, rows_to_frame
from floodwall.logs.jsonlog import JsonParser
from floodwall.model import REQUEST_SCHEMA

_clfscan: ModuleType | None
try:  # the C fast path; optional so that a machine without a compiler still installs Floodwall
    _clfscan = importlib.import_module("floodwall.logs._clfscan")
except ImportError:  # pragma: no cover - depends on the build
    _clfscan = None

__all__ = ["BAD_SAMPLES", "BadLine", "ChunkParser", "ParseStats", "fast_path_available"]

log = logging.getLogger(__name__)

BAD_SAMPLES: Final = 20
_SAMPLE_CHARS: Final = 300
_FORMAT_CODES: Final = {"combined": 0, "common": 1, "vhost_combined": 2}


def fast_path_available() -> bool:
    """Whether the C scanner was built (without it every line takes the strict per-line parser)."""
    return _clfscan is not None


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that could not be read: its number, the start of its text, and why."""

    line: int
    text: str
    reason: str


@dataclass(slots=True)
class ParseStats:
    """Counts for one input, filled as its chunks are parsed."""

    lines: int = 0
    parsed: int = 0
    bad_lines: int = 0
    fast: int = 0
    strict: int = 0
    bad_samples: list[BadLine] = field(default_factory=list)

    def merge(self, other: ParseStats) -> None:
        """Add the counts of a later chunk."""
        self.lines += other.lines
        self.parsed += other.parsed
        self.bad_lines += other.bad_lines
        self.fast += other.fast
        self.strict += other.strict
        self.bad_samples.extend(other.bad_samples[: BAD_SAMPLES - len(self.bad_samples)])

    def bad(self, line: int, text: str, reason: str) -> None:
        self.bad_lines += 1
        if len(self.bad_samples) < BAD_SAMPLES:
            self.bad_samples.append(BadLine(line, text[:_SAMPLE_CHARS], reason))


_BINARY_RX: Final = re.compile("[\ufffd\x00-\x08\x0a-\x1f]")


def _strict_reason(text: str) -> str:
    if not text.strip():
        return "empty line"
    if _BINARY_RX.search(text):
        return "binary or invalid UTF-8 data"
    return "does not match the log format"


class ChunkParser:
    """Parses chunks of one input in one format into Request frames."""

    def __init__(
        self,
        guess: FormatGuess,
        *,
        site: str,
        source: str,
        tz: tzinfo | None = None,
        json_fields: dict[str, str] | None = None,
        use_fast_path: bool = True,
    ) -> None:
        self.guess = guess
        self.site = site
        self.source = source
        self.stats = ParseStats()
        self.use_fast_path = use_fast_path and _clfscan is not None and guess.name in _FORMAT_CODES
        self.json = JsonParser(json_fields, tz) if guess.name == "json" else None

    def parse(self, data: bytes, first_line: int) -> pl.DataFrame:
        """A chunk of whole lines (numbered from `first_line`) to a Request frame sorted by time."""
        frame, stats = self.parse_chunk(data, first_line)
        self.stats.merge(stats)
        return frame

    def parse_chunk(self, data: bytes, first_line: int) -> tuple[pl.DataFrame, ParseStats]:
        """Like `parse`, with this chunk's counts returned instead of added: chunks can be parsed side by side
        on threads (the C scanner and Polars release the GIL) and their counts merged in order."""
        stats = ParseStats()
        if self.use_fast_path:
            frame = self._parse_fast(data, first_line, stats)
        else:
            lines = data.split(b"\n")
            if lines and lines[-1] == b"":
                lines.pop()
            stats.lines += len(lines)
            numbers = range(first_line, first_line + len(lines))
            texts = [line.rstrip(b"\r").decode("utf-8", "replace") for line in lines]
            frame = self._parse_strict(list(numbers), texts, stats)
        stats.parsed += frame.height
        return finish_frame(frame, self.site, self.source), stats

    def _parse_strict(self, numbers: list[int], texts: list[str], stats: ParseStats) -> pl.DataFrame:
        rows: list[clf.ParsedLine] = []
        kept: list[int] = []
        for number, text in zip(numbers, texts, strict=True):
            if self.json is not None:
                result = self.json.parse(text)
                if isinstance(result, str):
                    stats.bad(number, text, "empty line" if not text.strip() else result)
                    continue
                parsed: clf.ParsedLine | None = result
            else:
                parsed = clf.parse_line(text, self.guess.name, self.guess.layout)
            if parsed is None:
                stats.bad(number, text, _strict_reason(text))
                continue
            rows.append(parsed)
            kept.append(number)
        stats.strict += len(rows)
        return rows_to_frame(kept, rows)

    def _parse_fast(self, data: bytes, first_line: int, stats: ParseStats) -> pl.DataFrame:
        assert _clfscan is not None
        result = _clfscan.scan(data, _FORMAT_CODES[self.guess.name], first_line)
        scanned_rejected = result.rejected
        scanned = pl.DataFrame(result)
        stats.lines += scanned.height
        # Most chunks have no line the scanner rejected: then no copy of them.
        accepted = scanned.filter(pl.col("ok")) if scanned_rejected else scanned
        rejected = scanned.filter(~pl.col("ok")) if scanned_rejected else scanned.clear()
        fast = accepted.select(
            pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("ts"),
            *CORE_FIELDS,
            pl.col("vhost").alias("host"),
            "extras",
            "line",
            "client_net",  # the scanner's, for plain IPv4 and IPv6 clients; finish_frame fills the rest
        )
        fast, misfits = apply_extras_columnar(fast, self.guess.layout)
        parts = [fast]
        if misfits.any():
            parts = [fast.filter(~misfits), self._refit_extras(accepted.filter(misfits), fast.filter(misfits))]
        stats.fast += accepted.height
        if rejected.height:
            parts.append(self._parse_strict(rejected["line"].to_list(), rejected["raw"].to_list(), stats))
        # The parts may carry different extra columns (a line's extras need not fit the log's layout).
        return pl.concat(parts, how="diagonal_relaxed")

    def _refit_extras(self, scanned: pl.DataFrame, fast: pl.DataFrame) -> pl.DataFrame:
        """Rows whose extra fields do not fit the log's layout: classified one by one, as the strict parser does."""
        columns = clf.EXTRA_KINDS
        values: dict[str, list[object]] = {column: [] for column in columns}
        for extras, host in zip(scanned["extras"].to_list(), scanned["vhost"].to_list(), strict=True):
            holder = clf.ParsedLine(
                ts=None,  # type: ignore[arg-type]
                client="",
                method=None,
                path=None,
                query=None,
                protocol=None,
                status=None,
                bytes=None,
                referer=None,
                user_agent=None,
                host=host,
            )
            clf.apply_extras(holder, extras or "", clf.NO_EXTRAS)
            for column in columns:
                values[column].append(getattr(holder, column))
        refit = pl.DataFrame(values, schema={column: REQUEST_SCHEMA[column] for column in columns})
        return fast.with_columns(refit)
