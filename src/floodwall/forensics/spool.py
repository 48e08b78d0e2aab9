"""Request batches kept on disk between detection and the forensic pass: Arrow IPC files with LZ4, in a temporary
folder, read back in order. Writing and reading them back costs about a third of parsing the log again, at about
60 bytes of disk per request (benchmarks/bench_report.py measures both ways).

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
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

import polars as pl

__all__ = ["FORENSIC_COLUMNS", "FrameSpool"]

#: The Request frame's columns the forensic pass reads (`Collector`, `FingerprintAccumulator`): what is worth spooling.
FORENSIC_COLUMNS: Final = (
    "ts", "client", "method", "path", "query", "protocol", "status", "bytes", "referer", "user_agent", "host",
    "request_time", "cache_status", "forwarded_for", "source", "line",
)  # fmt: skip


class FrameSpool:
    """See the module docstring. The folder is removed by `close` (or leaving the `with` block)."""

    def __init__(self, directory: Path | None = None, columns: Sequence[str] | None = None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="floodwall-spool-", dir=directory))
        self.columns = list(columns) if columns is not None else None  # None: every column
        self._files: list[Path] = []
        self.rows = 0
        self.bytes = 0

    def add(self, frame: pl.DataFrame) -> None:
        """Keep one batch."""
        if frame.height == 0:
            return
        path = self.directory / f"{len(self._files):06d}.arrow"
        if self.columns is not None:
            frame = frame.select(name for name in self.columns if name in frame.columns)
        frame.write_ipc(path, compression="lz4")
        self._files.append(path)
        self.rows += frame.height
        self.bytes += path.stat().st_size

    def frames(self) -> Iterator[pl.DataFrame]:
        """The batches, in the order they were added."""
        for path in self._files:
            yield pl.read_ipc(path)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self._files = []

    def __enter__(self) -> FrameSpool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
