"""The forensic pass's tables: each one's batch aggregates, merged when they pile up, and the lossy counting that
keeps the tables of rare strings bounded (`floodwall.forensics.collect`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import polars as pl

from floodwall.logs.frame import compacted

__all__ = ["CANDIDATE_CAP", "Parts", "as_is", "prune", "summed"]

CANDIDATE_CAP: Final = 400_000  # rows of normal-traffic candidate strings kept before the rarest are pruned


class Parts:
    """Batch aggregates of one table, re-aggregated whenever they pile up."""

    def __init__(self, keys: Sequence[str], merge: Sequence[pl.Expr], limit: int = 24) -> None:
        self.keys = list(keys)
        self.merge = list(merge)
        self.limit = limit
        self.parts: list[pl.DataFrame] = []
        self.keep: Callable[[pl.DataFrame], pl.DataFrame] = compacted  # what a kept part goes through (`Collector`)

    def add(self, part: pl.DataFrame) -> None:
        if part.height:
            self.parts.append(self.keep(part))  # kept past its batch: let go of the batch's buffers
        merged = self.frame() if len(self.parts) > self.limit else None
        if merged is not None:
            self.parts = [self.keep(merged)]

    def frame(self) -> pl.DataFrame | None:
        if not self.parts:
            return None
        whole = pl.concat(self.parts, how="diagonal_relaxed")  # merged parts order their columns by key
        return whole.group_by(self.keys).agg(self.merge) if self.keys else whole


def prune(parts: Parts, by: list[str], cap: int = CANDIDATE_CAP) -> int:
    """Lossy counting: past `cap` rows, values (grouped by `by`) seen fewer times than a doubling threshold are
    dropped; returns the threshold (0 when nothing was pruned). Markers and the URLs an attack hammers recur, so
    they survive; an undercount of rare normal-traffic values only makes the marker test stricter."""
    if sum(p.height for p in parts.parts) <= cap:
        return 0
    merged = parts.frame()
    if merged is None or merged.height <= cap:
        if merged is not None:
            parts.parts = [parts.keep(merged)]
        return 0
    threshold = 1
    while merged.height > cap // 4:  # well below the cap, so pruning is rare
        threshold *= 2
        totals = merged.group_by(by).agg(pl.col("requests").sum().alias("_total"))
        keep = totals.filter(pl.col("_total") >= threshold).drop("_total")
        merged = merged.join(keep, on=by, how="semi")
    parts.parts = [parts.keep(merged)]
    return threshold


def as_is(frame: pl.DataFrame) -> pl.DataFrame:
    """A kept part as it is (batches read back from the spool hold no parser buffers to let go of)."""
    return frame


def summed(keys: Sequence[str], names: Sequence[str], extra: Sequence[pl.Expr] = ()) -> Parts:
    """A table whose columns `names` are summed per `keys` (and merged with `extra` besides)."""
    return Parts(keys, [*(pl.col(n).sum() for n in names), *extra])
