"""The spool gives back exactly the batches it was given, whichever inputs they came from, and leaves nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from floodwall.forensics.spool import FORENSIC_COLUMNS, FrameSpool, SpoolFormat
from floodwall.testing import requests_frame

T0 = datetime(2024, 10, 29, 6, 40, tzinfo=UTC)


def _batch(sources: list[str], start: int) -> pl.DataFrame:
    rows = [
        {
            "ts": T0 + timedelta(seconds=start + i),
            "client": f"198.51.100.{i % 7}",
            "path": "/" if i % 3 else f"/2024/10/{i}/a-long-article-slug/",
            "query": None if i % 2 else f"k{i}=v{i}",
            "user_agent": None if i == 4 else "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
            "status": 200 if i % 5 else 503,
            "request_time": None if i % 4 else 0.25,
            "source": sources[i % len(sources)],
            "line": start + i + 1,
        }
        for i in range(40)
    ]
    return requests_frame(rows)


@pytest.mark.parametrize("background", [False, True], ids=["in-line", "background"])
@pytest.mark.parametrize("fmt", ["parquet", "ipc-lz4"])
def test_batches_come_back_equal_in_order(tmp_path: Path, fmt: SpoolFormat, background: bool) -> None:
    """Batches from one input (its name stored once) and from two merged inputs (stored per row) come back as
    they went in: same columns in the same order, same types, same values and nulls, same order of batches."""
    batches = [
        _batch(["/var/log/nginx/access.log.1"], 0),
        _batch(["/var/log/nginx/access.log.1", "/var/log/nginx/access.log"], 40),
        _batch(["/var/log/nginx/access.log"], 80),
    ]
    with FrameSpool(tmp_path, columns=FORENSIC_COLUMNS, fmt=fmt, background=background) as spool:
        for batch in batches:
            spool.add(batch)
        spool.add(batches[0].clear())  # an empty batch is not kept
        back = list(spool.frames())
        assert spool.rows == 120 and spool.bytes > 0
        assert spool.write_wall > 0
    assert len(back) == 3
    for got, sent in zip(back, batches, strict=True):
        expected = sent.select(FORENSIC_COLUMNS)
        assert got.schema == expected.schema
        assert got.equals(expected)


def test_columns_null_on_every_row_come_back_typed(tmp_path: Path) -> None:
    """A column the log format lacks (null on every row of a batch, like a combined log's host or request time) is
    not written, and still comes back as nulls of its type, in its place; the next batch that has values keeps
    them."""
    empty = _batch(["-"], 0).with_columns(pl.lit(None, dtype=pl.Float64).alias("request_time"))
    full = _batch(["-"], 40)
    assert empty.get_column("host").null_count() == empty.height
    with FrameSpool(tmp_path, columns=FORENSIC_COLUMNS) as spool:
        spool.add(empty)
        spool.add(full)
        back = list(spool.frames())
    for got, sent in zip(back, [empty, full], strict=True):
        expected = sent.select(FORENSIC_COLUMNS)
        assert got.schema == expected.schema
        assert got.equals(expected)
    assert back[1].get_column("request_time").null_count() < full.height


def test_every_column_is_kept_without_a_selection_and_the_folder_goes(tmp_path: Path) -> None:
    batch = _batch(["-"], 0)
    spool = FrameSpool(tmp_path)
    spool.add(batch)
    assert next(spool.frames()).equals(batch)
    folder = spool.directory
    assert folder.exists()
    spool.close()
    assert not folder.exists() and list(tmp_path.iterdir()) == []


def test_a_failed_background_write_is_raised_not_lost(tmp_path: Path) -> None:
    """A batch the spool's thread could not write fails the next call, so the report is never built on a spool
    that silently lacks a batch; the folder still goes."""
    spool = FrameSpool(tmp_path, background=True)
    spool.add(_batch(["-"], 0))
    spool.flush()
    for leftover in spool.directory.iterdir():
        leftover.unlink()
    spool.directory.rmdir()  # the disk the spool was on is gone, say
    spool.add(_batch(["-"], 40))
    with pytest.raises(OSError):
        spool.flush()
    spool.close()
    assert list(tmp_path.iterdir()) == []
