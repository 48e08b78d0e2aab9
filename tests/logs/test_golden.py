"""Golden samples: every line of tests/data/logs/*.log gives the parse written above it.

Each file names its format in a `# format:` line; each log line follows `# expect: {json}` with the values it must
give (a subset of the Request frame's columns, times as ISO 8601 UTC) or `{"bad": "reason"}` when it must be
counted as unreadable. Lines starting with `RAW ` hold bytes written with Python escapes.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from floodwall.logs import LogReader, parse_bytes, sniff_format

GOLDEN = Path(__file__).parent.parent / "data" / "logs"
FILES = sorted(GOLDEN.glob("*.log"))


@dataclass
class Golden:
    fmt: str
    data: bytes
    expected: dict[int, dict[str, object]]


def load(path: Path) -> Golden:
    fmt = ""
    lines: list[bytes] = []
    expected: dict[int, dict[str, object]] = {}
    pending: dict[str, object] | None = None
    for text in path.read_text(encoding="utf-8").split("\n")[:-1]:
        if text.startswith("# format:"):
            fmt = text.split(":", 1)[1].strip()
        elif text.startswith("# expect:"):
            pending = json.loads(text.split(":", 1)[1])
        elif text.startswith("#"):
            continue
        else:
            raw = codecs.escape_decode(text[4:].encode())[0] if text.startswith("RAW ") else text.encode()
            lines.append(raw)
            if pending is not None:
                expected[len(lines)] = pending
                pending = None
    assert fmt, f"{path.name}: no '# format:' line"
    assert len(expected) == len(lines), f"{path.name}: every log line needs an expectation"
    return Golden(fmt, b"\n".join(lines) + b"\n", expected)


def _value(value: object) -> object:
    if isinstance(value, datetime):
        text = value.isoformat().replace("+00:00", "Z")
        return text
    return value


def _expected_time(text: str) -> str:
    moment = datetime.fromisoformat(text)
    return moment.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "strict"])
def test_golden_sample(path: Path, fast: bool) -> None:
    golden = load(path)
    frame, parser = parse_bytes(golden.data, site="golden", source=path.name, fmt=golden.fmt)
    if not fast:
        parser_strict = type(parser)(parser.guess, site="golden", source=path.name, use_fast_path=False)
        frame = parser_strict.parse(golden.data, 1)
        parser = parser_strict
    rows = {row["line"]: row for row in frame.iter_rows(named=True)}
    bad = {sample.line: sample.reason for sample in parser.stats.bad_samples}
    for line, expect in golden.expected.items():
        if "bad" in expect:
            assert line not in rows, f"{path.name}:{line} should be unreadable, got {rows.get(line)}"
            assert bad.get(line) == expect["bad"], f"{path.name}:{line}"
            continue
        assert line in rows, f"{path.name}:{line} was not read ({bad.get(line)})"
        for column, value in expect.items():
            got = _value(rows[line][column])
            want = _expected_time(value) if column == "ts" and isinstance(value, str) else value
            assert got == want, f"{path.name}:{line} {column}: got {got!r}, want {want!r}"
    assert parser.stats.bad_lines == sum("bad" in e for e in golden.expected.values())
    assert frame["site"].unique().to_list() == ["golden"]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_auto_detection_chooses_the_golden_format(path: Path) -> None:
    golden = load(path)
    assert sniff_format(golden.data, "auto", path.name).name == golden.fmt


def test_golden_files_exist_for_every_format() -> None:
    formats = {load(path).fmt for path in FILES}
    assert formats >= {"combined", "common", "vhost_combined", "json"}


def test_reader_reads_a_golden_file_from_disk(tmp_path: Path) -> None:
    golden = load(GOLDEN / "combined.log")
    log = tmp_path / "access.log"
    log.write_bytes(golden.data)
    reader = LogReader([log], site="golden")
    frames = list(reader)
    assert sum(f.height for f in frames) == len(golden.expected)
    assert reader.inputs[0].format == "combined"
