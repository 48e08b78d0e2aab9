"""The two ways in: a batch of requests (columnar), or one request's fields (inline, at the edge)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from floodwall.detect.signatures.engine import SignatureEngine, load_engine
from floodwall.detect.signatures.inline import Hit, match_inline, request_values
from floodwall.detect.signatures.ruleset import DEFAULT_CRS_RULES

__all__ = ["Hit", "match_request", "match_requests"]


def match_requests(
    frame: pl.DataFrame,
    *,
    paranoia: int = 1,
    rules_dir: Path = DEFAULT_CRS_RULES,
    engine: SignatureEngine | None = None,
) -> pl.DataFrame:
    """Signature hits on a Request frame: one row per (request, rule), see `HIT_SCHEMA`.

    Reads `method`, `path`, `query`, `protocol`, `user_agent`, `referer`, `host` where present, and `headers`
    (a list of `{name, value}` structs) and `body` when the source has them. `row` is the request's position in
    `frame`; `source` and `line` are copied from it for evidence.
    """
    return (engine or load_engine(rules_dir, paranoia)).match(frame)


def match_request(
    method: str,
    path: str,
    query: str | None = None,
    *,
    user_agent: str | None = None,
    referer: str | None = None,
    host: str | None = None,
    protocol: str | None = "HTTP/1.1",
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    paranoia: int = 1,
    engine: SignatureEngine | None = None,
) -> list[Hit]:
    """Signature hits on one request, for inline use; the same engine and rules as `match_requests`, sorted by rule
    id, computed without a DataFrame (`inline.match_inline`)."""
    values = request_values(method, path, query, protocol, user_agent, referer, host, headers, body)
    return match_inline(engine or load_engine(paranoia=paranoia), values)
