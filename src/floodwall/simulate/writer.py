"""Writing: event frames to nginx `combined` lines (plain or gzip), streamed slice by slice; `truth.json`.

Lines are built with Polars string expressions, a slice at a time; time stamps are formatted once per second of the
slice, in the site's time zone with its offset (`[05/Nov/2024:10:05:03 +0100]`), then gathered.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import IO, Any

import numpy as np
import polars as pl

from floodwall.errors import InputError

__all__ = ["LogWriter", "format_lines", "write_truth"]


def _seconds_table(first_s: int, count: int, timezone: str) -> pl.Series:
    seconds = pl.Series("s", np.arange(first_s, first_s + count, dtype=np.int64))
    return (
        pl.select(
            pl.from_epoch(seconds, time_unit="s")
            .dt.replace_time_zone("UTC")
            .dt.convert_time_zone(timezone)
            .dt.strftime("%d/%b/%Y:%H:%M:%S %z")
        )
        .to_series()
        .alias("time_local")
    )


def format_lines(frame: pl.DataFrame, timezone: str) -> pl.DataFrame:
    """One column, `line`: the frame (sorted by `ts`) as nginx `combined` log lines."""
    if frame.height == 0:
        return pl.DataFrame({"line": pl.Series([], dtype=pl.String)})
    seconds = frame["ts"] // 1_000_000
    first = int(seconds[0])
    table = _seconds_table(first, int(seconds[-1]) - first + 1, timezone)
    time_local = table.gather((seconds - first).to_numpy())
    return frame.select(
        pl.concat_str(
            [
                pl.col("client"),
                pl.lit(" - - ["),
                pl.lit(time_local),
                pl.lit('] "'),
                pl.col("method"),
                pl.lit(" "),
                pl.col("target"),
                pl.lit(" "),
                pl.col("protocol"),
                pl.lit('" '),
                pl.col("status").cast(pl.String),
                pl.lit(" "),
                pl.col("bytes").cast(pl.String),
                pl.lit(' "'),
                pl.col("referer"),
                pl.lit('" "'),
                pl.col("user_agent"),
                pl.lit('"'),
            ]
        ).alias("line")
    )


class LogWriter:
    """An access log being written, plain or gzip-compressed; counts the lines it wrote."""

    def __init__(self, path: Path, compress: bool) -> None:
        self.path = path
        self.lines = 0
        try:
            self._raw: IO[bytes] = path.open("wb")
        except OSError as exc:
            raise InputError(f"{path}: cannot write the log: {exc.strerror}") from None
        # mtime=0 keeps .gz output byte-identical for a seed.
        self._gz = (
            gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=4, mtime=0) if compress else None
        )

    def write(self, lines: pl.DataFrame) -> None:
        if lines.height == 0:
            return
        if self._gz is None:
            lines.write_csv(self._raw, include_header=False, quote_style="never")
        else:
            buffer = io.BytesIO()
            lines.write_csv(buffer, include_header=False, quote_style="never")
            self._gz.write(buffer.getbuffer())
        self.lines += lines.height

    def close(self) -> None:
        if self._gz is not None:
            self._gz.close()
        self._raw.close()


def write_truth(path: Path, truth: dict[str, Any]) -> None:
    """`truth.json`, keys in a stable order, so the file is byte-identical for a seed."""
    path.write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
