"""Write a file completely or not at all: a temporary file in the same folder, flushed, then renamed over."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "write_atomic", "write_json"]


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside `target`; renamed to `target` when the block ends without an exception."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        with temporary.open("rb") as handle:
            os.fsync(handle.fileno())
        temporary.chmod(0o644)
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(target: Path, data: str | bytes) -> None:
    """Write `data` to `target` atomically."""
    with atomic_path(target) as temporary:
        if isinstance(data, str):
            temporary.write_text(data, encoding="utf-8")
        else:
            temporary.write_bytes(data)


def write_json(target: Path, value: object) -> None:
    """Write `value` as indented UTF-8 JSON, atomically."""
    write_atomic(target, json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
