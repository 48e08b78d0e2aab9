"""Helpers for the simulator's tests: a strict nginx `combined` line pattern and a log parser."""

from __future__ import annotations

import gzip
import re
from datetime import datetime
from pathlib import Path

#: nginx's `combined` format as the simulator promises to write it, nothing looser.
COMBINED = re.compile(
    r"^(?P<client>[0-9a-f.:]+) - - "
    r"\[(?P<time>\d{2}/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "
    r'"(?P<method>GET|HEAD|POST) (?P<target>/[!-~]*) (?P<protocol>HTTP/1\.1|HTTP/2\.0)" '
    r"(?P<status>[1-5]\d{2}) (?P<bytes>0|[1-9]\d*) "
    r'"(?P<referer>-|https?://[!-~]+|android-app://[!-~]+)" "(?P<agent>[ -!#-~]+)"$'
)


def read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


def parse(path: Path) -> list[dict[str, object]]:
    """Every line of a simulated log, parsed strictly; fails on the first line that does not match."""
    rows: list[dict[str, object]] = []
    for number, line in enumerate(read_lines(path), 1):
        match = COMBINED.match(line)
        assert match is not None, f"{path.name}:{number} is not nginx combined: {line!r}"
        row: dict[str, object] = dict(match.groupdict())
        row["ts"] = datetime.strptime(str(row["time"]), "%d/%b/%Y:%H:%M:%S %z").timestamp()
        row["line"] = line
        rows.append(row)
    return rows
