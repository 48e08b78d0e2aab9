"""Request batches kept on disk between detection and the forensic pass: uncompressed Parquet files in a temporary
folder, read back in order, at about 35 bytes of disk per request.

Parquet rather than Arrow IPC with LZ4 (the spool's first format): its dictionary pages hold a log's repeated
strings (user agents, referers, addresses) once per page, with no compressor to run, and reading them back costs a
fifth of decoding LZ4-compressed IPC. On a 1M-line hano-like log: write 0.36 and read 0.09 CPU-s, against 0.43 and
0.44 for IPC with LZ4, and 34 MB on disk against 61 MB (benchmarks/bench_report.py --spool measures both).
An input's name, the same on every row of a batch read from one input, is kept once per batch, not per row.

With `background=True` (what `analyze` uses) a batch is written on a thread of the spool's own while the caller
goes on detecting the next one: Polars writes Parquet without holding the GIL, so on two cores the write leaves
the detection's critical path. At most one batch waits to be written (memory stays bounded); a failed write is
raised by the next `add`, `frames` or `flush`. `write_wall` says how long the writes took (their CPU is spent on
Polars' threads, which the process's CPU clock counts in whatever stage of the caller runs beside them).

    with FrameSpool() as spool:
        for frame in reader:
            engine.feed(frame)
            spool.add(frame)
        detection = engine.finish()
        account = account_from_logs(spool.frames, ...)
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

import polars as pl

from floodwall.logs.frame import constant_string

__all__ = ["FORENSIC_COLUMNS", "FrameSpool", "SpoolFormat"]

#: The Request frame's columns the forensic pass reads (`Collector`, `FingerprintAccumulator`): what is worth spooling.
FORENSIC_COLUMNS: Final = (
    "ts", "client", "method", "path", "query", "protocol", "status", "bytes", "referer", "user_agent", "host",
    "request_time", "cache_status", "forwarded_for", "source", "line",
)  # fmt: skip

#: "parquet" (the default) or "ipc-lz4" (the spool's first format, kept for benchmarks/bench_report.py's comparison).
SpoolFormat = Literal["parquet", "ipc-lz4"]
_CONSTANT: Final = "source"  # a column usually constant within a batch (one input), stored once when it is


class FrameSpool:
    """See the module docstring. The folder is removed by `close` (or leaving the `with` block)."""

    def __init__(
        self,
        directory: Path | None = None,
        columns: Sequence[str] | None = None,
        fmt: SpoolFormat = "parquet",
        *,
        background: bool = False,
    ) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="floodwall-spool-", dir=directory))
        self.columns = list(columns) if columns is not None else None  # None: every column
        self.format: SpoolFormat = fmt
        # Per batch: its file, the value of `_CONSTANT` when it was the same on every row (then not stored), its
        # columns in order, and those that were null on every row (not stored either) with their types.
        self._files: list[tuple[Path, str | None, list[str], list[tuple[str, pl.DataType]]]] = []
        self.rows = 0
        self.bytes = 0
        self.write_wall = 0.0  # seconds the writes took, wherever they ran
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="floodwall-spool") if background else None
        self._pending: Future[None] | None = None

    def add(self, frame: pl.DataFrame) -> None:
        """Keep one batch (written by the time `frames` or `flush` returns)."""
        if frame.height == 0:
            return
        self.flush()  # one batch in flight at most
        self.rows += frame.height
        if self._writer is None:
            self._write(frame)
        else:
            self._pending = self._writer.submit(self._write, frame)

    def flush(self) -> None:
        """Wait for the batch being written, and raise its error if its write failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _write(self, frame: pl.DataFrame) -> None:
        wall = time.perf_counter()
        if self.columns is not None:
            frame = frame.select(name for name in self.columns if name in frame.columns)
        order = frame.columns
        constant = self._constant(frame)
        if constant is not None:
            frame = frame.drop(_CONSTANT)
        # A column a log format does not have (host, request time, cache status, X-Forwarded-For in a combined log)
        # is null on every row: Parquet still encoded it, 0.02 CPU-s per million rows each. Kept as its type alone.
        empty = [(name, frame.schema[name]) for name in frame.columns if frame[name].null_count() == frame.height]
        if empty:
            frame = frame.drop(name for name, _ in empty)
        path = self.directory / f"{len(self._files):06d}.{'parquet' if self.format == 'parquet' else 'arrow'}"
        if self.format == "parquet":
            # One row group per batch, so that each column reads back as one chunk, like the columns the forensic
            # pass's joins add. With Polars' default row groups a 252k-row batch came back in two chunks, and the
            # first `with_columns` after a join copied the whole batch into one (`Collector._marked` at 5M lines:
            # 1.0-1.4 -> 0.4 CPU-s; reading back costs about 0.2 CPU-s more).
            frame.write_parquet(path, compression="uncompressed", statistics=False, row_group_size=max(frame.height, 1))
        else:
            frame.write_ipc(path, compression="lz4")
        self._files.append((path, constant, order, empty))
        self.bytes += path.stat().st_size
        self.write_wall += time.perf_counter() - wall

    @staticmethod
    def _constant(frame: pl.DataFrame) -> str | None:
        """The batch's one input name, when every row has the same (one comparison per row: cheaper than storing
        a long path per row, even dictionary-encoded)."""
        return constant_string(frame.get_column(_CONSTANT)) if _CONSTANT in frame.columns else None

    def frames(self) -> Iterator[pl.DataFrame]:
        """The batches, in the order they were added, with the columns they were added with."""
        self.flush()
        for path, constant, order, empty in self._files:
            frame = pl.read_parquet(path) if self.format == "parquet" else pl.read_ipc(path)
            restored = [pl.lit(None, dtype=dtype).alias(name) for name, dtype in empty]
            if constant is not None:
                restored.append(pl.lit(constant, dtype=pl.String).alias(_CONSTANT))
            if restored:
                frame = frame.with_columns(restored).select(order)
            yield frame

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)  # a write still running must not recreate a file in a removed folder
            self._writer = None
        self._pending = None
        shutil.rmtree(self.directory, ignore_errors=True)
        self._files = []

    def __enter__(self) -> FrameSpool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
