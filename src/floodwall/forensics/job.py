"""The forensic step of `analyze`: a second pass over the Request batches after detection, then the account.

    account = account_from_logs(spool.frames, site=site, detection=detection, first_pass=reader.inputs,
                                timezone=settings.site.timezone, spooled=True)

The batches come back from the `FrameSpool` the detection pass filled (the parsed columns on disk: about a third
of the cost of parsing the log again, and the same for stdin), or from a new `LogReader` over the same inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol, runtime_checkable

import polars as pl

from floodwall.detect import DetectionResult
from floodwall.errors import FloodwallError
from floodwall.forensics.build import Forensics, InputFacts
from floodwall.forensics.fingerprints import FingerprintAccumulator
from floodwall.geo import GeoLookup, open_geo
from floodwall.report.account import Account

__all__ = ["SPOOLED_NOTE", "account_from_logs"]

log = logging.getLogger(__name__)

#: The methods section's word on the inputs when the account was built from the detection pass's own batches.
SPOOLED_NOTE: Final = (
    "Each input was read once and hashed as it was read; detection and this account rest on the same parsed "
    "requests (kept on disk between the two passes, then deleted)."
)


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
    spooled: bool = False,
    fingerprints: FingerprintAccumulator | None = None,
    geo: GeoLookup | None = None,
) -> Account:
    """Read the batches again through `open_reader()`: a new `LogReader` over the same inputs (hashed again and
    compared), or `FrameSpool.frames` (what the detection pass spooled; not possible for stdin unless spooled:
    `rereadable` false then; `spooled` true says the batches are the detection pass's own). Aggregate them against
    `detection`, look the attacking addresses up in the offline network database, and build the account.
    `fingerprints`, when given, is fed the attack rows of the same pass (see `Forensics`). `geo`, an open
    `floodwall.geo.GeoLookup`, is used (and left open) instead of opening the database again."""
    forensics = Forensics(site, detection, timezone=timezone, fingerprints=fingerprints, spooled=spooled)
    second: Sequence[InputFacts] = ()
    if rereadable and detection.requests:
        reader = open_reader()
        forensics.feed_all(reader)
        second = reader.inputs if isinstance(reader, _Reader) else ()
    note = SPOOLED_NOTE if spooled and rereadable and detection.requests else None
    if geo is not None:
        return forensics.finish(inputs=second, first_pass=first_pass, geo=geo, hash_note=note)
    try:
        geo = open_geo()
    except FloodwallError as exc:
        log.warning("no network data for the account: %s", exc)
        return forensics.finish(inputs=second, first_pass=first_pass, hash_note=note)
    with geo:
        return forensics.finish(inputs=second, first_pass=first_pass, geo=geo, hash_note=note)
