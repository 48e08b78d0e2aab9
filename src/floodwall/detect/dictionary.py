"""A batch's distinct values of a string column and each row's code: derive once per value, then gather back.

Paths, queries, referers and user agents repeat a lot within a batch (a 238k-row batch of a cache-busting flood holds
about 48k paths, 1k referers and 70 agents), so detection derives their tokens per distinct value. Polars did that
with a hash per row, a `unique` and a left join per column, about 40 ms of the main thread per batch; the C scanner
`_tokenscan.dictionary_codes` numbers the values in one pass, and the way back is a `gather` by code.
`dictionary_reference` is the Polars version, kept for builds without the scanner and as the tests' reference.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import polars as pl

__all__ = ["Dictionary", "dictionary", "dictionary_reference"]

_tokenscan: ModuleType | None
try:  # optional, like the other C fast paths
    _tokenscan = importlib.import_module("floodwall.detect._tokenscan")
except ImportError:  # pragma: no cover - depends on the build
    _tokenscan = None


@dataclass(frozen=True)
class Dictionary:
    """`values`: the distinct values of a column in order of first appearance (null, if any, is one of them);
    `codes`: per row, the position of its value in `values` (UInt32)."""

    values: pl.Series
    codes: pl.Series

    def expand(self, derived: pl.DataFrame) -> list[pl.Series]:
        """`derived` (one row per distinct value, in `values`' order) as one row per row of the column."""
        return derived.select(pl.all().gather(self.codes)).get_columns()


def dictionary(column: pl.Series) -> Dictionary:
    """`column`'s `Dictionary`, by the C scanner when it is built (same result as `dictionary_reference`)."""
    if _tokenscan is None or column.dtype != pl.String:
        return dictionary_reference(column)
    codes, first = _tokenscan.dictionary_codes(column)
    first_rows = pl.Series("first", np.frombuffer(first, dtype=np.uint32))
    return Dictionary(column.gather(first_rows), pl.Series(column.name, np.frombuffer(codes, dtype=np.uint32)))


def dictionary_reference(column: pl.Series) -> Dictionary:
    """`dictionary` in Polars: first rows of each value, numbered in order, joined back to every row."""
    rows = column.to_frame("value").with_row_index("row")
    first = rows.filter(pl.col("value").is_first_distinct()).with_row_index("code")
    codes = rows.join(first.drop("row"), on="value", how="left", nulls_equal=True, maintain_order="left")
    return Dictionary(first.get_column("value").alias(column.name), codes.get_column("code").alias(column.name))
