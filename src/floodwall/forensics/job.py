"""The forensic step of `analyze`: a second pass over the inputs after detection, then the account.

account = account_from_logs(lambda: LogReader(logs, site=site, ...), site=site, detection=detection,
                            first_pass=reader.inputs, timezone=settings.site.timezone, rereadable=True)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

import polars as pl

from floodwall.detect import DetectionResult
from floodwall.errors import FloodwallError
from floodwall.forensics.build import Forensics, InputFacts
from floodwall.geo import open_geo
from floodwall.report.account import Account

__all__ = ["account_from_logs"]

log = logging.getLogger(__name__)


@runtime_checkable
class _Reader(Iterable[pl.DataFrame], Protocol):
    @property
    def inputs(self) -> Sequence[InputFacts]: ...


def account_from_logs(
    open_reader: Callable[[], Iterable[pl.DataFrame]],
    *,
    site: str,
    detection: DetectionResult,
    first_pass: Sequence[InputFacts],
    timezone: str = "UTC",
    rereadable: bool = True,
) -> Account:
    """Read the batches again through `open_reader()`: a new `LogReader` over the same inputs (hashed again and
    compared), or `FrameSpool.frames` (what the detection pass spooled; not possible for stdin unless spooled:
    `rereadable` false then). Aggregate them against `detection`, look the attacking addresses up in the offline
    network database, and build the account."""
    forensics = Forensics(site, detection, timezone=timezone)
    second: Sequence[InputFacts] = ()
    if rereadable and detection.requests:
        reader = open_reader()
        for frame in reader:
            forensics.feed(frame)
        second = reader.inputs if isinstance(reader, _Reader) else ()
    try:
        geo = open_geo()
    except FloodwallError as exc:
        log.warning("no network data for the account: %s", exc)
        return forensics.finish(inputs=second, first_pass=first_pass)
    with geo:
        return forensics.finish(inputs=second, first_pass=first_pass, geo=geo)
