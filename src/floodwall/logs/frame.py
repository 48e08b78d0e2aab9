"""Turning parsed values into Request frames (model.REQUEST_SCHEMA), columnar wherever the data is large."""

from __future__ import annotations

import io
import ipaddress
from collections.abc import Sequence
from functools import lru_cache
from typing import Final

import numpy as np
import polars as pl

from floodwall.logs import clf
from floodwall.model import REQUEST_SCHEMA

__all__ = [
    "CORE_FIELDS",
    "PARSED_FIELDS",
    "apply_extras_columnar",
    "client_networks",
    "compacted",
    "constant_string",
    "finish_frame",
    "rows_to_frame",
]

_OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_NET_RX: Final = rf"^({_OCTET}\.{_OCTET}\.{_OCTET})\.{_OCTET}$"
#: The columns every CLF parser fills, after `ts`.
CORE_FIELDS: Final = ("client", "method", "path", "query", "protocol", "status", "bytes", "referer", "user_agent")
#: The columns a parsed request carries, in order (`line` and the derived columns are added after).
PARSED_FIELDS: Final = (
    "ts",
    *CORE_FIELDS,
    "host",
    "request_time",
    "upstream_time",
    "upstream_status",
    "cache_status",
    "forwarded_for",
)


@lru_cache(maxsize=65536)
def _network_of(address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def client_networks(clients: pl.Series) -> pl.Series:
    """Each client's /24 (IPv4) or /48 (IPv6) as a CIDR; null for what is not an address (a hostname).

    Computed once per distinct client (a batch repeats each client many times), then mapped back.
    """
    distinct = clients.drop_nulls().unique()
    v4 = distinct.str.extract(_IPV4_NET_RX, 1)
    others = distinct.filter(v4.is_null())
    nets = (v4 + ".0/24").scatter(
        np.flatnonzero(v4.is_null().to_numpy()), [_network_of(address) for address in others.to_list()]
    )
    return clients.replace_strict(distinct, nets, default=None, return_dtype=pl.String).rename("client_net")


def rows_to_frame(lines: Sequence[int], rows: Sequence[clf.ParsedLine]) -> pl.DataFrame:
    """Rows from the strict parser (few: only the lines the fast path rejected) as a partial frame."""
    data: dict[str, list[object]] = {name: [getattr(row, name) for row in rows] for name in PARSED_FIELDS}
    data["line"] = list(lines)
    schema = {name: REQUEST_SCHEMA[name] for name in (*PARSED_FIELDS, "line")}
    return pl.DataFrame(data, schema=schema)


def _token_value(token: pl.Expr, keyed: bool, column: str) -> pl.Expr:
    """The value of one extra token for `column`, as `clf.apply_extras` computes it."""
    if keyed:
        key = token.str.extract(r"^([A-Za-z_]+)=", 1).str.to_lowercase()
        value = token.str.extract(r"(?s)^[A-Za-z_]+=(.*)$", 1)
        unquoted = value.str.extract(r'(?s)^"(.*)"$', 1)
        value = pl.when(unquoted.is_not_null()).then(unquoted).otherwise(value)
        right_key = key.replace_strict(clf.EXTRA_KEYS, default=None, return_dtype=pl.String) == column
        value = pl.when(right_key).then(value).otherwise(None)
    else:
        unquoted = token.str.extract(r'(?s)^"((?:[^"\\]|\\.)*)"$', 1)
        value = pl.when(unquoted.is_not_null()).then(unquoted).otherwise(token)
    fits = value.str.contains(f"^(?:{clf.SHAPES[column].pattern})$") & ~value.is_in(["", "-"])
    if column in ("request_time", "upstream_time", "upstream_status"):
        last = value.str.split(", ").list.last().str.split(" : ").list.last()
        dtype = REQUEST_SCHEMA[column]
        return pl.when(fits).then(last.cast(dtype, strict=False)).otherwise(None)
    if column == "host":
        stripped = value.str.strip_chars_end(".")
        host = pl.when(stripped.str.contains(":")).then(stripped.str.replace(r":[^:]*$", "")).otherwise(stripped)
        return pl.when(fits).then(host.str.strip_chars_end(".").str.to_lowercase()).otherwise(None)
    return pl.when(fits).then(value).otherwise(None)


def apply_extras_columnar(frame: pl.DataFrame, layout: clf.ExtrasLayout) -> tuple[pl.DataFrame, pl.Series]:
    """Fill extra columns from the raw `extras` column where a row's tokens fit `layout`.

    Returns the frame (without `extras`) and a mask of rows whose extras did not fit, for `clf.apply_extras`.
    """
    extras = pl.col("extras")
    has_extras = extras.is_not_null() & (extras.str.strip_chars() != "")
    tokens = extras.str.extract_all(clf.TOKEN_PATTERN)
    count = tokens.list.len()
    fits = ~has_extras | (count == len(layout.columns))
    updates: list[pl.Expr] = []
    for position, (column, keyed) in enumerate(zip(layout.columns, layout.keyed, strict=True)):
        if column is None:
            continue
        value = _token_value(tokens.list.get(position, null_on_oob=True), keyed, column)
        current = pl.col(column) if column in frame.columns else pl.lit(None, dtype=REQUEST_SCHEMA[column])
        updates.append(pl.when(has_extras & fits).then(value).otherwise(current).alias(column))
    misfits = frame.select(has_extras & ~fits).to_series()
    out = frame.with_columns(updates) if updates else frame
    return out.drop("extras"), misfits


def _networks(frame: pl.DataFrame) -> pl.Series:
    """`client_networks` of the frame's clients; where the C scanner already gave a client's network (plain IPv4
    and IPv6 addresses: 8 of the 9 ms a 55k-line chunk spent here), only the other rows are worked out."""
    if "client_net" not in frame.columns:
        return client_networks(frame.get_column("client"))
    given = frame.get_column("client_net")
    missing = given.is_null() & frame.get_column("client").is_not_null()
    if not missing.any():
        return given
    rows = missing.arg_true()
    return given.scatter(rows, client_networks(frame.get_column("client").gather(rows)))


def finish_frame(frame: pl.DataFrame, site: str, source: str) -> pl.DataFrame:
    """Add `client_net`, `site` and `source`, fill absent columns with nulls, order and type as REQUEST_SCHEMA."""
    frame = frame.with_columns(
        _networks(frame).alias("client_net"),
        pl.lit(site, dtype=pl.String).alias("site"),
        pl.lit(source, dtype=pl.String).alias("source"),
    )
    columns = [
        (pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype=dtype)).alias(name)
        for name, dtype in REQUEST_SCHEMA.items()
    ]
    frame = frame.select(columns)
    # Logs are written in time order, nearly: sort only when they are not (the check is one cheap pass).
    in_order = frame.select((pl.col("ts").diff() >= pl.duration()).all() & (pl.col("line").diff() > 0).all()).item()
    return frame if in_order else frame.sort("ts", "line", maintain_order=True)


def compacted(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` copied into fresh, contiguous buffers (an Arrow IPC round trip in memory).

    A small aggregate of a big batch (a `first()` of a string column, a gather, a group-by result) can keep the
    batch's buffers alive: Polars' string views point into them, and the allocator cannot give back pages that a
    few long-lived values sit in. Aggregates kept across batches and copied this way stay as small as they look:
    analyze's forensic pass held 1.3 GB after 5M requests without it, 0.6 GB with it. Cheap for aggregates; not
    meant for whole batches."""
    if frame.height == 0:
        return frame
    buffer = io.BytesIO()
    frame.write_ipc(buffer)
    return pl.read_ipc(io.BytesIO(buffer.getvalue()))


def constant_string(column: pl.Series) -> str | None:
    """The one value of a string column when every row holds it (no nulls), else None: a batch's input name, say,
    which a file then stores once instead of per row."""
    first = column[0] if column.len() else None
    if not isinstance(first, str) or column.null_count() or not (column == first).all():
        return None
    return first
