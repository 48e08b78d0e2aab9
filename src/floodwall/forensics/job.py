"""The forensic step of `analyze`: a second pass over the inputs after detection, then the account.

account = account_from_logs(lambda: LogReader(logs, site=site, ...), site=site, detection=detection,
                            first_pass=reader.inputs, timezone=settings.site.timezone, rereadable=True)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import polars as pl

from floodwall.detect import DetectionResult
from floodwall.errors import FloodwallError
from floodwall.forensics.build import Forensics, InputFacts
from floodwall.geo import open_geo
from floodwall.report.account import Account

__all__ = ["account_from_logs"]

log = logging.getLogger(__name__)


class _Reader(Iterable[pl.DataFrame], Protocol):
    @property
    def inputs(self) -> Sequence[InputFacts]: ...


def account_from_logs(
    open_reader: Callable[[], _Reader],
    *,
    site: str,
    detection: DetectionResult,
    first_pass: Sequence[InputFacts],
    timezone: str = "UTC",
    rereadable: bool = True,
) -> Account:
    """Re-read the inputs through `open_reader()` (unless they came from stdin: `rereadable` false), aggregate them
    against `detection`, look the attacking addresses up in the offline network database, and build the account."""
    forensics = Forensics(site, detection, timezone=timezone)
    second: Sequence[InputFacts] = ()
    if rereadable and detection.requests:
        reader = open_reader()
        for frame in reader:
            forensics.feed(frame)
        second = reader.inputs
    try:
        geo = open_geo()
    except FloodwallError as exc:
        log.warning("no network data for the account: %s", exc)
        return forensics.finish(inputs=second, first_pass=first_pass)
    with geo:
        return forensics.finish(inputs=second, first_pass=first_pass, geo=geo)
