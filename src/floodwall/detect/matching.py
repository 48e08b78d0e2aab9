"""The engine's breach signatures over request batches: each distinct request matched once, its hits given to every
copy and aggregated per batch (`breach.aggregate_hits`).

The signature matcher costs about the same for 300 distinct requests as for 1,300 (some 200 small Polars calls per
call, one chain per rule family: 40-50 ms of CPU either way), and a 238k-row batch of a flood holds about 300. The
live judge needs each batch's hits as it comes (`match`); batch analysis needs them only at the end, so it keeps the
batches' suspects (`defer`) and matches several batches' distinct requests in one call (`flush`), still aggregating
each batch on its own, as `match` would have.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import polars as pl

from floodwall.detect.breach import BREACH_SCHEMA, aggregate_hits, candidates
from floodwall.logs.frame import compacted

__all__ = ["BatchMatcher", "SignatureMatcher"]

#: Signature hits of a Request frame (`floodwall.detect.signatures.HIT_SCHEMA` rows).
SignatureMatcher = Callable[[pl.DataFrame], pl.DataFrame]

_MATCH_KEYS: Final = ("method", "path", "query", "user_agent", "referer")
#: What the signatures read of a request (`signatures.fields.occurrences`, their evidence) and `aggregate_hits`.
_READ: Final = (
    *("method", "path", "query", "protocol", "user_agent", "referer", "host", "headers", "body"),
    *("ts", "client", "status", "source", "line"),
)
#: What `aggregate_hits` and the hits' evidence read of each suspect request.
_KEPT: Final = ("_key", "ts", "client", "status", "source", "line")
#: Deferred batches are matched together once there are this many, or this many distinct requests among them.
_DEFER_BATCHES: Final = 8
_DEFER_DISTINCT: Final = 8_000


@dataclass(frozen=True)
class _Suspects:
    """One batch's requests the signatures must see (`keyed`, by match key) and its distinct ones (`distinct`)."""

    keyed: pl.DataFrame
    distinct: pl.DataFrame


def _suspects(frame: pl.DataFrame, plain: pl.Series, browser: pl.Series | None) -> _Suspects | None:
    """`frame`'s candidate requests, keyed; None when there are none. `plain` and `browser`: see `breach.candidates`."""
    wanted = candidates(frame, plain, browser)
    # Only what the signatures and the aggregation read is copied: a log's other columns (bytes, timings, upstream,
    # cache, forwarded-for, site) would be filtered for nothing.
    suspects = frame.select(name for name in _READ if name in frame.columns).filter(wanted)
    if suspects.height == 0:
        return None
    # Match each distinct request once (monitors and floods repeat theirs), then give its hits to every copy.
    # A plain request (nothing in method, path or query to match) is a candidate for its user agent alone: it
    # is matched as "GET /" with that agent, so a flood's tool agent costs one match, not one per URL.
    is_plain = pl.lit(plain.filter(wanted))
    suspects_for_matching = suspects.with_columns(
        pl.when(is_plain).then(pl.lit("/")).otherwise(pl.col("path")).alias("path"),
        pl.when(is_plain).then(pl.lit(None, pl.String)).otherwise(pl.col("query")).alias("query"),
        pl.when(is_plain).then(pl.lit(None, pl.String)).otherwise(pl.col("referer")).alias("referer"),
        pl.when(is_plain).then(pl.lit("GET")).otherwise(pl.col("method")).alias("method"),
    )
    keyed = suspects_for_matching.with_columns(pl.struct(_MATCH_KEYS).hash(seed=3).alias("_key"))
    distinct = keyed.unique(subset="_key", keep="first", maintain_order=True)
    return _Suspects(keyed.select(_KEPT), distinct)


def _aggregated(batch: _Suspects, by_key: pl.DataFrame, hit_columns: list[str]) -> pl.DataFrame:
    """`batch`'s hits aggregated (`BREACH_SCHEMA`); `by_key`: the hits of each match key (`_key` and the hit columns
    but `row`, `source` and `line`)."""
    rows = batch.distinct.select(pl.col("_key")).join(by_key, on="_key", maintain_order="left")
    expanded = (
        batch.keyed.with_row_index("copy")
        .join(rows, on="_key", maintain_order="left")
        .with_columns(pl.col("copy").alias("row"))
        .select(hit_columns)
    )
    return aggregate_hits(batch.keyed, expanded)


def _match_together(matcher: SignatureMatcher, batches: list[_Suspects]) -> list[pl.DataFrame]:
    """Each of `batches`' aggregated hits, from one call of `matcher` on their distinct requests."""
    distinct = batches[0].distinct if len(batches) == 1 else pl.concat([b.distinct for b in batches], how="vertical")
    if len(batches) > 1:
        distinct = distinct.unique(subset="_key", keep="first", maintain_order=True)
    hits = matcher(distinct.drop("_key"))
    if hits.height == 0:
        return [pl.DataFrame(schema=BREACH_SCHEMA) for _ in batches]
    by_key = distinct.select(pl.col("_key")).with_row_index("row")
    by_key = by_key.join(hits.drop("source", "line"), on="row", maintain_order="right")
    by_key = by_key.drop("row")
    return [_aggregated(batch, by_key, list(hits.columns)) for batch in batches]


class BatchMatcher:
    """Signature hits of request batches, aggregated per batch (`BREACH_SCHEMA`); see the module docstring."""

    def __init__(self, matcher: SignatureMatcher) -> None:
        self._matcher = matcher
        self._pending: list[_Suspects] = []
        self._pending_distinct = 0

    def match(self, frame: pl.DataFrame, plain: pl.Series, browser: pl.Series | None = None) -> pl.DataFrame:
        """`frame`'s hits, aggregated, now; `plain` and `browser` per row (see `breach.candidates`)."""
        batch = _suspects(frame, plain, browser)
        if batch is None:
            return pl.DataFrame(schema=BREACH_SCHEMA)
        return _match_together(self._matcher, [batch])[0]

    def defer(self, frame: pl.DataFrame, plain: pl.Series, browser: pl.Series | None = None) -> list[pl.DataFrame]:
        """Keep `frame`'s suspects for a later match; returns the aggregated hits of the batches matched now (none,
        or every batch kept so far once they are enough)."""
        batch = _suspects(frame, plain, browser)
        if batch is None:
            return []
        # Compacted: the few rows kept must not hold the whole batch's string buffers (see `compacted`).
        self._pending.append(_Suspects(compacted(batch.keyed), compacted(batch.distinct)))
        self._pending_distinct += batch.distinct.height
        if len(self._pending) >= _DEFER_BATCHES or self._pending_distinct >= _DEFER_DISTINCT:
            return self.flush()
        return []

    def flush(self) -> list[pl.DataFrame]:
        """The aggregated hits of every batch kept by `defer`, in their order."""
        batches, self._pending, self._pending_distinct = self._pending, [], 0
        return _match_together(self._matcher, batches) if batches else []
