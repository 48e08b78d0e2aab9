"""What ModSecurity calls variables, cut out of a Request frame: one long table of (row, collection, key, value).

Collections follow ModSecurity v2's names. `ARGS` is the union of `ARGS_GET` (the query) and `ARGS_POST` (a form body);
argument names and values are URL-decoded the way ModSecurity parses them (`+` is a space, bad escapes stay).
`REQUEST_FILENAME` and `REQUEST_BASENAME` hold the path with its %XX escapes decoded (`path_decode`), as the web server
hands it to ModSecurity; `REQUEST_URI` and `REQUEST_LINE` keep it as sent.
User agent, referer and host come from the frame's columns; a source that has more (the edge) adds a `headers`
column (a list of `{name, value}` structs) and a `body` column.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

import polars as pl

from floodwall.detect.signatures.transforms import url_decode

__all__ = [
    "COLLECTIONS",
    "OCCURRENCE_SCHEMA",
    "arg_decode",
    "collection_names",
    "map_unique",
    "occurrences",
    "path_decode",
]

OCCURRENCE_SCHEMA: Final = {"row": pl.UInt32(), "var": pl.String(), "key": pl.String(), "value": pl.String()}

#: Collections Floodwall can fill from what it sees; a selector name maps to the stored collections it covers.
COLLECTIONS: Final[dict[str, tuple[str, ...]]] = {
    "ARGS": ("ARGS_GET", "ARGS_POST"),
    "ARGS_NAMES": ("ARGS_GET_NAMES", "ARGS_POST_NAMES"),
    "ARGS_GET": ("ARGS_GET",),
    "ARGS_POST": ("ARGS_POST",),
    "ARGS_GET_NAMES": ("ARGS_GET_NAMES",),
    "ARGS_POST_NAMES": ("ARGS_POST_NAMES",),
    "QUERY_STRING": ("QUERY_STRING",),
    "REQUEST_METHOD": ("REQUEST_METHOD",),
    "REQUEST_PROTOCOL": ("REQUEST_PROTOCOL",),
    "REQUEST_FILENAME": ("REQUEST_FILENAME",),
    "REQUEST_BASENAME": ("REQUEST_BASENAME",),
    "REQUEST_URI": ("REQUEST_URI",),
    "REQUEST_URI_RAW": ("REQUEST_URI",),
    "REQUEST_LINE": ("REQUEST_LINE",),
    "REQUEST_HEADERS": ("REQUEST_HEADERS",),
    "REQUEST_HEADERS_NAMES": ("REQUEST_HEADERS_NAMES",),
    "REQUEST_COOKIES": ("REQUEST_COOKIES",),
    "REQUEST_COOKIES_NAMES": ("REQUEST_COOKIES_NAMES",),
    "REQUEST_BODY": ("REQUEST_BODY",),
}

_NEEDS_URL_DECODE: Final = r"[%+]"


def collection_names(selector: str) -> tuple[str, ...]:
    """The stored collections a rule's variable name reads ("" when Floodwall never sees it, like XML:/*)."""
    return COLLECTIONS.get(selector, ())


def map_unique(values: pl.Series, function: Callable[[str], str], needs: pl.Series | None = None) -> pl.Series:
    """`function` over the distinct values only (those where `needs` holds), mapped back onto every row.

    A flood of identical requests costs one call; rows where `needs` is false keep their value.
    """
    selected = values if needs is None else values.filter(needs)
    distinct = selected.drop_nulls().unique()
    if distinct.len() == 0:
        return values
    old = distinct.to_list()
    new = [function(value) for value in old]
    return values.replace(old, new)


def arg_decode(value: str) -> str:
    """ModSecurity's argument decoding; bytes that are not UTF-8 become U+FFFD (Polars holds text only)."""
    return url_decode(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


_PERCENT_ESCAPE: Final = re.compile(rb"%([0-9A-Fa-f]{2})")


def path_decode(value: str) -> str:
    """A request path as ModSecurity's `REQUEST_FILENAME` holds it: %XX escapes decoded, `+` kept (a space only in
    form data), bad escapes kept. Apache (`ap_unescape_url` before phase 2) and libmodsecurity (`uri_decode`) both
    decode the path; CRS 933151-1 (`/array_diff%20foo%20%28`: a PHP function name and a `(`) only fires on the
    decoded path. Bytes that are not UTF-8 become U+FFFD, as in `arg_decode`."""
    decoded = _PERCENT_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), value.encode("utf-8", "surrogateescape"))
    return decoded.decode("utf-8", "replace")


def _decode(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    series = frame.get_column(column)
    decoded = map_unique(series, arg_decode, series.str.contains(_NEEDS_URL_DECODE).fill_null(False))
    return frame.with_columns(decoded.alias(column))


def _arguments(rows: pl.DataFrame, column: str, values_var: str, names_var: str) -> list[pl.DataFrame]:
    """`a=1&b=2` in `column` -> ARGS_* (key = name, value) and ARGS_*_NAMES (value = name) rows."""
    pairs = (
        rows.select("row", pl.col(column).str.split("&").alias("pair"))
        .explode("pair")
        .filter(pl.col("pair").str.len_bytes() > 0)
        .select(
            "row",
            pl.col("pair").str.extract(r"^([^=]*)", 1).alias("key"),
            pl.when(pl.col("pair").str.contains("=", literal=True))
            .then(pl.col("pair").str.extract(r"^[^=]*=(.*)$", 1))
            .otherwise(pl.lit(""))
            .alias("value"),
        )
    )
    pairs = _decode(_decode(pairs, "key"), "value")
    return [
        pairs.select("row", pl.lit(values_var).alias("var"), "key", "value"),
        pairs.select("row", pl.lit(names_var).alias("var"), "key", pl.col("key").alias("value")),
    ]


def _column(frame: pl.DataFrame, name: str) -> pl.Expr:
    return pl.col(name) if name in frame.columns else pl.lit(None, dtype=pl.String())


def occurrences(frame: pl.DataFrame) -> pl.DataFrame:
    """Every (row, collection, key, value) a signature may look at; `row` is the position in `frame`."""
    base = frame.select(
        pl.int_range(pl.len(), dtype=pl.UInt32()).alias("row"),
        _column(frame, "method").alias("method"),
        _column(frame, "path").alias("path"),
        _column(frame, "query").alias("query"),
        _column(frame, "protocol").alias("protocol"),
        _column(frame, "user_agent").alias("user_agent"),
        _column(frame, "referer").alias("referer"),
        _column(frame, "host").alias("host"),
        _column(frame, "body").alias("body"),
    ).with_columns(
        pl.when(pl.col("query").is_null())
        .then(pl.col("path"))
        .otherwise(pl.concat_str(pl.col("path"), pl.lit("?"), pl.col("query")))
        .alias("uri")
    )
    path = base.get_column("path")
    filename = map_unique(path, path_decode, path.str.contains("%", literal=True).fill_null(False))
    base = base.with_columns(filename.alias("filename"))

    def single(var: str, expression: pl.Expr, key: str | None = None) -> pl.DataFrame:
        return base.select(
            "row", pl.lit(var).alias("var"), pl.lit(key, dtype=pl.String()).alias("key"), expression.alias("value")
        )

    parts = [
        single("REQUEST_METHOD", pl.col("method")),
        single("REQUEST_FILENAME", pl.col("filename")),
        single("REQUEST_BASENAME", pl.col("filename").str.extract(r"([^/]*)$", 1)),
        single("QUERY_STRING", pl.col("query")),
        single("REQUEST_URI", pl.col("uri")),
        single(
            "REQUEST_LINE",
            pl.concat_str(
                pl.col("method"), pl.lit(" "), pl.col("uri"), pl.lit(" "), pl.col("protocol"), ignore_nulls=True
            ),
        ),
        single("REQUEST_PROTOCOL", pl.col("protocol")),
        single("REQUEST_HEADERS", pl.col("user_agent"), "user-agent"),
        single("REQUEST_HEADERS", pl.col("referer"), "referer"),
        single("REQUEST_HEADERS", pl.col("host"), "host"),
        single("REQUEST_BODY", pl.col("body")),
    ]
    for key, column in (("User-Agent", "user_agent"), ("Referer", "referer"), ("Host", "host")):
        parts.append(
            base.filter(pl.col(column).is_not_null()).select(
                "row",
                pl.lit("REQUEST_HEADERS_NAMES").alias("var"),
                pl.lit(key.lower()).alias("key"),
                pl.lit(key).alias("value"),
            )
        )
    parts += _arguments(base.filter(pl.col("query").is_not_null()), "query", "ARGS_GET", "ARGS_GET_NAMES")
    headers = _headers(frame)
    if headers is not None:
        parts.append(headers.select("row", pl.lit("REQUEST_HEADERS").alias("var"), "key", "value"))
        parts.append(
            headers.select("row", pl.lit("REQUEST_HEADERS_NAMES").alias("var"), "key", pl.col("name").alias("value"))
        )
        parts += _cookies(headers)
    form = _form_bodies(base, headers)
    parts += _arguments(form, "body", "ARGS_POST", "ARGS_POST_NAMES")
    table = pl.concat([part.cast(OCCURRENCE_SCHEMA) for part in parts], how="vertical")  # type: ignore[arg-type]
    return table.filter(pl.col("value").is_not_null())


def _headers(frame: pl.DataFrame) -> pl.DataFrame | None:
    """Rows of the optional `headers` column, without the ones the frame already has as columns."""
    if "headers" not in frame.columns:
        return None
    rows = (
        frame.select(pl.int_range(pl.len(), dtype=pl.UInt32()).alias("row"), pl.col("headers"))
        .explode("headers")
        .filter(pl.col("headers").is_not_null())
        .unnest("headers")
        .with_columns(pl.col("name").str.to_lowercase().alias("key"))
    )
    columns = (("user-agent", "user_agent"), ("referer", "referer"), ("host", "host"))
    present = [key for key, column in columns if column in frame.columns]
    return rows.filter(~pl.col("key").is_in(present))


def _cookies(headers: pl.DataFrame) -> list[pl.DataFrame]:
    cookies = (
        headers.filter(pl.col("key") == "cookie")
        .select("row", pl.col("value").str.split(";").alias("pair"))
        .explode("pair")
        .with_columns(pl.col("pair").str.strip_chars())
        .filter(pl.col("pair").str.len_bytes() > 0)
        .select(
            "row",
            pl.col("pair").str.extract(r"^([^=]*)", 1).alias("key"),
            pl.col("pair").str.extract(r"^[^=]*=(.*)$", 1).fill_null("").alias("value"),
        )
    )
    return [
        cookies.select("row", pl.lit("REQUEST_COOKIES").alias("var"), "key", "value"),
        cookies.select("row", pl.lit("REQUEST_COOKIES_NAMES").alias("var"), "key", pl.col("key").alias("value")),
    ]


def _form_bodies(base: pl.DataFrame, headers: pl.DataFrame | None) -> pl.DataFrame:
    """Bodies ModSecurity would parse as ARGS_POST: form-encoded ones, or any body when the type is unknown."""
    with_body = base.filter(pl.col("body").is_not_null())
    if headers is None:
        return with_body
    typed = headers.filter(pl.col("key") == "content-type").select("row", pl.col("value").alias("content_type"))
    return (
        with_body.join(typed, on="row", how="left")
        .filter(
            pl.col("content_type").is_null()
            | pl.col("content_type").str.to_lowercase().str.contains("application/x-www-form-urlencoded", literal=True)
        )
        .drop("content_type")
    )
