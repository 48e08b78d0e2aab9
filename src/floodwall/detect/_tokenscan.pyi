"""Per-request tokens of paths and queries in C (reference: `floodwall.detect.windows`)."""

from typing import Any, final

import polars as pl

@final
class Tokens:
    """Token columns, one row per input value, handed on through the Arrow C Data Interface (once)."""

    def __len__(self) -> int: ...
    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[Any, Any]: ...

def path_tokens(paths: pl.Series) -> Tokens:
    """Columns done (false: left to the reference), kind, template, plain_path."""

def query_tokens(queries: pl.Series) -> Tokens:
    """Columns cache_bust, query_keys, plain_query."""

def dictionary_codes(values: pl.Series) -> tuple[bytes, bytes]:
    """Uint32 codes: each row's (0, 1, ... in order of first appearance; null is a value) and each code's first row."""
