"""The reader's promises: every input kind, time order across files, bounded batches, odd lines never fatal."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floodwall.errors import ConfigError, LogFormatError
from floodwall.logs import LogReader, parse_bytes, read_ahead
from floodwall.model import REQUEST_SCHEMA

ELASTIC = Path(__file__).parents[2].parent / "shared" / "data" / "elastic-apache-sample" / "apache_logs"
START = datetime(2023, 9, 1, 8, 0, tzinfo=UTC)


def line(i: int, at: datetime, client: str = "203.0.113.7", path: str = "/") -> str:
    stamp = at.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{client} - - [{stamp}] "GET {path}?n={i} HTTP/1.1" 200 {100 + i} "-" "Mozilla/5.0"\n'


def write(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = "".join(lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_real_apache_sample_is_read_completely() -> None:
    if not ELASTIC.exists():
        pytest.skip(f"shared data not present: {ELASTIC}")
    reader = LogReader([ELASTIC], site="elastic")
    frame = pl.concat(list(reader))
    stats = reader.inputs[0]
    assert stats.format == "combined"
    assert (stats.lines, stats.parsed, stats.bad_lines) == (10_000, 10_000, 0)
    assert frame.height == 10_000
    assert frame.schema == pl.Schema(REQUEST_SCHEMA)
    assert frame["ts"].is_sorted()
    assert frame["ts"].min() == datetime(2015, 5, 17, 10, 5, tzinfo=UTC)
    assert frame["client"].null_count() == 0 and frame["client_net"].null_count() == 0
    assert frame["status"].null_count() == 0
    assert frame["method"].value_counts().sort("count")["method"][-1] == "GET"


def test_rotated_files_given_in_any_order_come_out_in_time_order(tmp_path: Path) -> None:
    old = write(tmp_path / "access.log.2.gz", [line(i, START + timedelta(seconds=i)) for i in range(100)], gz=True)
    mid = write(tmp_path / "access.log.1", [line(i, START + timedelta(seconds=100 + i)) for i in range(100)])
    new = write(tmp_path / "access.log", [line(i, START + timedelta(seconds=200 + i)) for i in range(100)])
    reader = LogReader([new, old, mid], site="s", chunk_bytes=1024, batch_rows=1000)
    frame = pl.concat(list(reader))
    assert frame.height == 300
    assert frame["ts"].is_sorted()
    assert frame.filter(pl.col("source") == str(old))["line"].to_list() == list(range(1, 101))


def test_overlapping_logs_of_two_hosts_are_merged_in_time_order(tmp_path: Path) -> None:
    a = write(tmp_path / "a.log", [line(i, START + timedelta(seconds=2 * i)) for i in range(500)])
    b = write(tmp_path / "b.log", [line(i, START + timedelta(seconds=2 * i + 1)) for i in range(500)])
    frames = list(LogReader([a, b], site="s", chunk_bytes=4096, batch_rows=1000))
    frame = pl.concat(frames)
    assert frame.height == 1000
    assert frame["ts"].is_sorted()
    assert all(f["ts"].is_sorted() for f in frames)


def test_batches_stay_bounded(tmp_path: Path) -> None:
    log = write(tmp_path / "a.log", [line(i, START + timedelta(seconds=i)) for i in range(5000)])
    frames = list(LogReader([log], site="s", chunk_bytes=8192, batch_rows=1000))
    assert sum(f.height for f in frames) == 5000
    assert max(f.height for f in frames) < 1000 + 200  # a batch plus at most one chunk


def test_stdin_is_read(tmp_path: Path) -> None:
    data = "".join(line(i, START + timedelta(seconds=i)) for i in range(50))
    result = subprocess.run(
        [sys.executable, "-m", "floodwall", "read", "-", "--site", "s"],
        input=data,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "50 lines, 50 read, 0 unreadable" in result.stdout


def test_odd_lines_are_counted_and_only_twenty_kept(tmp_path: Path) -> None:
    good = [line(i, START + timedelta(seconds=i)) for i in range(30)]
    junk = [f"junk line {i}\n" for i in range(30)]
    log = write(tmp_path / "a.log", [x for pair in zip(good, junk, strict=True) for x in pair])
    reader = LogReader([log], site="s")
    frame = pl.concat(list(reader))
    stats = reader.inputs[0]
    assert frame.height == 30
    assert stats.bad_lines == 30
    assert len(stats.bad_samples) == 20
    assert [s.line for s in stats.bad_samples[:3]] == [2, 4, 6]


def test_an_attackers_8kb_request_line_is_read() -> None:
    long_path = "/" + "A" * 8192
    data = line(1, START, path=long_path).encode()
    frame, parser = parse_bytes(data, site="s", source="t")
    assert frame["path"].to_list() == [long_path]
    assert parser.stats.bad_lines == 0


def test_no_trailing_newline_and_crlf() -> None:
    data = (line(1, START).replace("\n", "\r\n") + line(2, START)).rstrip("\n").encode()
    frame, _ = parse_bytes(data, site="s", source="t")
    assert frame["query"].to_list() == ["n=1", "n=2"]


def test_missing_file_and_unknown_format_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="no such file"):
        LogReader([tmp_path / "nope.log"], site="s")
    junk = write(tmp_path / "junk.log", ["this is not a log\n"] * 5)
    with pytest.raises(LogFormatError, match=r"junk.log: line 1: not a known access-log format"):
        LogReader([junk], site="s")
    with pytest.raises(ConfigError, match="time zone"):
        LogReader([junk], site="s", tz="Mars/Olympus")


def test_json_naive_times_use_tz(tmp_path: Path) -> None:
    log = write(tmp_path / "a.json", ['{"time_iso8601": "2023-09-01T10:00:00", "remote_addr": "192.0.2.1"}\n'])
    frame = pl.concat(list(LogReader([log], site="s", tz="Europe/Budapest")))
    assert frame["ts"].to_list() == [datetime(2023, 9, 1, 8, 0, tzinfo=UTC)]


def test_empty_input_gives_no_rows(tmp_path: Path) -> None:
    log = write(tmp_path / "empty.log", [])
    reader = LogReader([log], site="s")
    assert list(reader) == []
    assert reader.inputs[0].lines == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=200) | st.text(max_size=200).map(str.encode), max_size=20))
def test_any_bytes_are_never_fatal(chunks: list[bytes]) -> None:
    data = line(0, START).encode() + b"\n".join(chunks)
    frame, parser = parse_bytes(data, site="s", source="t", fmt="combined")
    assert frame.height + parser.stats.bad_lines == parser.stats.lines
    assert frame.height >= 1


def test_a_line_whose_extras_differ_from_the_logs_layout_keeps_them() -> None:
    plain = [line(i, START + timedelta(seconds=i)) for i in range(5)]
    odd = '203.0.113.9 - - [01/Sep/2023:08:00:09 +0000] "GET /b HTTP/1.1" 200 5 "-" "ua" 0.123 HIT\n'
    frame, _ = parse_bytes("".join([*plain, odd]).encode(), site="s", source="t")
    row = frame.filter(pl.col("line") == 6).row(0, named=True)
    assert (row["request_time"], row["cache_status"]) == (0.123, "HIT")


def test_json_logs_with_custom_time_field_are_ordered_by_time(tmp_path: Path) -> None:
    new = write(tmp_path / "new.log", ['{"when": "2023-09-01T12:00:00Z", "remote_addr": "192.0.2.1"}\n'])
    old = write(tmp_path / "old.log", ['{"when": "2023-09-01T11:00:00Z", "remote_addr": "192.0.2.2"}\n'])
    frame = pl.concat(list(LogReader([new, old], site="s", fmt="json", json_fields={"ts": "when"})))
    assert frame["client"].to_list() == ["192.0.2.2", "192.0.2.1"]


def test_reading_ahead_gives_the_same_batches_in_order(tmp_path: Path) -> None:
    log = write(tmp_path / "a.log", [line(i, START + timedelta(seconds=i)) for i in range(3000)])
    direct = list(LogReader([log], site="s", batch_rows=500, chunk_bytes=20_000))
    ahead = list(read_ahead(LogReader([log], site="s", batch_rows=500, chunk_bytes=20_000)))
    assert len(ahead) == len(direct) > 3
    assert all(a.equals(d) for a, d in zip(ahead, direct, strict=True))


def test_an_error_while_reading_ahead_reaches_the_reader_of_the_batches(tmp_path: Path) -> None:
    data = gzip.compress("".join(line(i, START) for i in range(20_000)).encode())
    log = tmp_path / "cut.log.gz"
    log.write_bytes(data[: len(data) // 2])  # a gzip file cut short: the reader fails half way
    with pytest.raises(LogFormatError, match="cannot read"):
        for _ in read_ahead(LogReader([log], site="s", batch_rows=100, chunk_bytes=4096)):
            pass


def test_a_consumer_that_stops_early_stops_the_reading_thread() -> None:
    def endless() -> Iterator[pl.DataFrame]:
        while True:
            yield pl.DataFrame({"n": [1]})

    batches = read_ahead(endless(), depth=2)
    assert next(batches).height == 1
    batches.close()
    assert not [t for t in threading.enumerate() if t.name == "floodwall-read-ahead"]
