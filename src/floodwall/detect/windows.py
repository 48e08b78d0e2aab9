"""Columnar aggregates of the request stream: per-second site counts and per-client windows.

Both are incremental. A window is emitted only once it is complete (a later row has been seen), so cutting the
stream into batches anywhere gives the same aggregates; the rows of the window still open are carried to the next
batch. State is the open window's rows plus one row per second and per (client, window) already closed.

Per request, `tokens` derives the columns every layer reads: the kind of resource (page, asset, feed, API), a path
template (digits and slugs folded, so all articles share one), the set of query keys, a cache-busting flag (a query
value that looks random), the referer's kind and a hash of the user agent.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from types import ModuleType
from typing import Final, NamedTuple

import numpy as np
import polars as pl

from floodwall.detect import windowagg
from floodwall.detect.breach import browser_agent, plain_method, plain_path, plain_query
from floodwall.detect.dictionary import dictionary
from floodwall.logs.frame import compacted

__all__ = ["WINDOW_SCHEMA", "BatchTokens", "ClientWindows", "SecondCounter", "batch_tokens", "request_tokens", "tokens"]

_tokenscan: ModuleType | None
try:  # the C fast path of the path and query tokens; optional, like the log scanner
    _tokenscan = importlib.import_module("floodwall.detect._tokenscan")
except ImportError:  # pragma: no cover - depends on the build
    _tokenscan = None

_ASSET_EXT: Final = r"\.(?:css|js|mjs|png|jpe?g|gif|webp|avif|svg|ico|woff2?|ttf|eot|otf|mp4|webm|mp3|map|json)$"
_ASSET_DIR: Final = r"^/(?:wp-content|wp-includes|static|assets|_next|media|images|img|css|js|fonts)/"
_FEED: Final = r"(?:/feed/?$|/rss|\.xml$|\.rss$|/atom)"
_API: Final = r"^/(?:wp-json|api|graphql|ajax|wp-admin/admin-ajax\.php)"
_SOCIAL: Final = (
    r"(?:facebook\.com|fb\.com|t\.co/|twitter\.com|x\.com|instagram\.com|telegram|t\.me|reddit\.com|linkedin\.com|"
    r"vk\.com|tiktok\.com|news\.google|google\.|bing\.com|duckduckgo|yandex\.|whatsapp|viber|flipboard|msn\.com)"
)
# A query value that looks random: 6+ characters mixing letters and digits, or a long run of digits (a timestamp).
_RANDOM_VALUE: Final = (
    r"(?:^|[=&])(?:[A-Za-z0-9_\-]*[0-9][A-Za-z0-9_\-]*[A-Za-z]|[A-Za-z][A-Za-z0-9_\-]*[0-9])[A-Za-z0-9_\-]{3,}(?:&|$)"
)
_ROBOT: Final = r"(?i)(?:bot|crawler|spider|slurp|\+https?://|feed|monitor|pingdom|uptime)"
_TIMESTAMP_VALUE: Final = r"(?:^|[=&])[0-9]{8,}(?:&|$)"

#: (column of `_aggregate`'s narrow frame, window column): per-window counts of the requests that have a flag.
_COUNTED: Final = (
    ("_page", "pages"),
    ("_asset", "assets"),
    ("is_post", "posts"),
    ("_3xx", "s3xx"),
    ("_4xx", "s4xx"),
    ("_5xx", "s5xx"),
    ("_with_query", "with_query"),
    ("cache_bust", "cache_bust"),
    ("no_referer", "no_referer"),
    ("social_referer", "social_referer"),
    ("declared_bot", "bot_requests"),
)
#: (column, window column): per-window counts of distinct values.
_DISTINCT: Final = (("_path", "paths"), ("_query", "queries"), ("ua_id", "user_agents"))

#: One row per (client, window): what the client did in those `window_s` seconds.
WINDOW_SCHEMA: Final[dict[str, pl.DataType]] = {
    "client": pl.String(),
    "window": pl.Datetime("us", "UTC"),
    "client_net": pl.String(),
    "requests": pl.UInt32(),
    "pages": pl.UInt32(),
    "assets": pl.UInt32(),
    "posts": pl.UInt32(),
    "s3xx": pl.UInt32(),
    "s4xx": pl.UInt32(),
    "s5xx": pl.UInt32(),
    "with_query": pl.UInt32(),
    "cache_bust": pl.UInt32(),
    "no_referer": pl.UInt32(),
    "social_referer": pl.UInt32(),
    "bot_requests": pl.UInt32(),  # from user agents that declare a robot ("bot", "crawler", "spider", a +http URL)
    "paths": pl.UInt32(),
    "queries": pl.UInt32(),
    "user_agents": pl.UInt32(),
    "gap_mean_s": pl.Float64(),
    "gap_std_s": pl.Float64(),
    "first_ts": pl.Datetime("us", "UTC"),
    "last_ts": pl.Datetime("us", "UTC"),
    "ua_id": pl.UInt64(),
    "query_keys": pl.String(),
    "template": pl.String(),
    "source": pl.String(),
    "line": pl.Int64(),
}


def _query_keys(query: pl.Series) -> pl.Series:
    """Each query's distinct keys, sorted, joined with ','."""
    # Most queries hold one parameter (a cache-busting flood makes every one of them distinct): their key is one
    # extract, and only queries with an `&` need the list of keys (a third of the cost of tokens() went there).
    joined = query.str.extract(r"^([^=&]{1,40})", 1).fill_null("")
    several_params = query.str.contains("&", literal=True).fill_null(False)
    if several_params.any():
        keys = (
            query.filter(several_params)
            .str.extract_all(r"(?:^|&)([^=&]{1,40})")
            .list.eval(pl.element().str.strip_chars("&"))
            .list.unique()
        )
        # Sorting lists is costly per list and few queries have two keys or more: sort only those.
        several = (keys.list.len() > 1).fill_null(False)
        listed = keys.list.join(",").fill_null("")
        if several.any():
            listed = listed.scatter(several.arg_true(), keys.filter(several).list.sort().list.join(","))
        joined = joined.scatter(several_params.arg_true(), listed)
    return joined.alias("query_keys")


_Reference = Callable[[pl.DataFrame], pl.DataFrame]


def _path_tokens_reference(paths: pl.DataFrame) -> pl.DataFrame:
    """`paths` (a `path` column) with each path's `kind`, `template` and `plain_path` (nothing in it for a breach
    signature: `breach.plain_path`), by regular expressions: the reference `_tokenscan.path_tokens` follows."""
    path = pl.col("path").fill_null("").str.to_lowercase()
    kind = (
        pl.when(path.str.contains(_ASSET_EXT) | path.str.contains(_ASSET_DIR))
        .then(pl.lit("asset"))
        .when(path.str.contains(_FEED))
        .then(pl.lit("feed"))
        .when(path.str.contains(_API))
        .then(pl.lit("api"))
        .otherwise(pl.lit("page"))
    )
    template = (
        path.str.replace(r"/[^/]+(\.(?:jpe?g|png|gif|webp|avif|svg|css|js|ico|woff2?|ttf|mp4|webm|map|html?))$", "/*$1")
        .str.replace_all(r"/[a-z0-9]+(?:-[a-z0-9]+){2,}", "/{slug}")
        .str.replace_all(r"/[^/]*[0-9][^/]*", "/0")
        .str.replace_all(r"/[a-z]{7,}(?:/|$)", "/{word}/")
        .str.slice(0, 60)
    )
    return paths.with_columns(kind.alias("kind"), template.alias("template"), plain_path().alias("plain_path"))


def _query_tokens_reference(queries: pl.DataFrame) -> pl.DataFrame:
    """`queries` (a `query` column) with each query's `cache_bust` flag, `query_keys` and `plain_query` (see
    `breach.plain_query`), by regular expressions: the reference `_tokenscan.query_tokens` follows."""
    query = pl.col("query")
    cache_bust = (query.str.contains(_RANDOM_VALUE) | query.str.contains(_TIMESTAMP_VALUE)).fill_null(False)
    return queries.with_columns(
        cache_bust.alias("cache_bust"), _query_keys(queries.get_column("query")), plain_query().alias("plain_query")
    )


def _by_scanner(values: pl.DataFrame, column: str, scanned: pl.DataFrame, reference: _Reference) -> pl.DataFrame:
    """`values` with the scanner's token columns; rows it left to the reference (`done` false) computed there."""
    out = values.hstack(scanned.drop("done", strict=False).get_columns())
    if "done" not in scanned.columns:
        return out
    done = scanned.get_column("done")
    if done.all():
        return out
    rows = (~done).arg_true()
    redone = reference(values.filter(~done).select(column))
    return out.with_columns(out.get_column(name).scatter(rows, redone.get_column(name)) for name in scanned.columns[1:])


def _path_tokens(paths: pl.DataFrame) -> pl.DataFrame:
    """`_path_tokens_reference`'s columns, from the C scanner when it is built."""
    if _tokenscan is None:
        return _path_tokens_reference(paths)
    scanned = pl.DataFrame(_tokenscan.path_tokens(paths.get_column("path")))
    return _by_scanner(paths, "path", scanned, _path_tokens_reference)


def _query_tokens(queries: pl.DataFrame) -> pl.DataFrame:
    """`_query_tokens_reference`'s columns, from the C scanner when it is built."""
    if _tokenscan is None:
        return _query_tokens_reference(queries)
    return queries.hstack(pl.DataFrame(_tokenscan.query_tokens(queries.get_column("query"))).get_columns())


def tokens(frame: pl.DataFrame) -> pl.DataFrame:
    """The Request frame's columns that detection reads, plus the derived per-request tokens."""
    return request_tokens(frame)[0]


def request_tokens(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """`tokens(frame)`, and per request whether its method, path and query give a breach signature nothing to fire
    on (`breach.plain_request`): both read the same distinct paths and queries."""
    found = batch_tokens(frame)
    return found.toks, found.plain


class BatchTokens(NamedTuple):
    """What `batch_tokens` derives from a Request frame."""

    toks: pl.DataFrame  # `tokens(frame)`
    plain: pl.Series  # per request, `breach.plain_request()`
    browser: pl.Series  # per request, `breach.browser_agent()`
    agents: pl.DataFrame  # the distinct user agents (`user_agent`, `ua_id`)


def batch_tokens(frame: pl.DataFrame) -> BatchTokens:
    """`request_tokens(frame)`, with what the breach signatures' filter reads of the agents, and the agents: every
    column's derived values come from its distinct values (`detect.dictionary`)."""
    referer = pl.col("referer")
    agent = pl.col("user_agent").fill_null("")
    derivations: tuple[tuple[str, Callable[[pl.DataFrame], pl.DataFrame]], ...] = (
        ("path", lambda paths: _path_tokens(paths).drop("path")),
        ("query", lambda queries: _query_tokens(queries).drop("query")),
        (
            "referer",
            lambda referers: referers.select(
                (referer.is_null() | (referer == "-") | (referer == "")).alias("no_referer"),
                referer.str.contains(_SOCIAL).fill_null(False).alias("social_referer"),
            ),
        ),
        (
            "user_agent",
            lambda agents: agents.select(
                agent.str.contains(_ROBOT).alias("declared_bot"),
                agent.hash(seed=7).alias("ua_id"),
                browser_agent().alias("_browser"),
            ),
        ),
    )
    # Each column's tokens are derived once per distinct value and gathered back by the rows' codes.
    derived = []
    agents = pl.DataFrame()
    for name, derive in derivations:
        values = dictionary(frame.get_column(name))
        table = derive(values.values.to_frame(name))
        if name == "user_agent":
            agents = table.select(values.values, "ua_id")
        derived.append(values.expand(table))
    base = frame.hstack([column for columns in derived for column in columns])
    plain = base.select(pl.col("plain_path") & pl.col("plain_query") & plain_method()).to_series()
    toks = base.select(
        "ts",
        "client",
        "client_net",
        "status",
        "source",
        "line",
        pl.col("path").fill_null(""),
        pl.col("query").fill_null(""),
        "kind",
        (pl.col("method") == "POST").fill_null(False).alias("is_post"),
        "template",
        "query_keys",
        "cache_bust",
        "no_referer",
        "social_referer",
        "declared_bot",
        "ua_id",
        pl.col("method").fill_null("?").alias("method"),
    )
    return BatchTokens(toks, plain.alias("plain"), base.get_column("_browser").alias("browser"), agents)


class SecondCounter:
    """Requests per second of the whole site, by status class; merged across batches by summing."""

    def __init__(self) -> None:
        self._parts: list[pl.DataFrame] = []
        self._rows = 0

    def add(self, toks: pl.DataFrame) -> pl.DataFrame:
        """Count `toks` and return this batch's per-second counts (seconds cut by the batch are partial)."""
        counts = per_second(toks)
        self._parts.append(counts)
        self._rows += counts.height
        if len(self._parts) > 64:
            self._parts = [self.frame()]
        return counts

    def frame(self) -> pl.DataFrame:
        """Every second seen so far: ts, requests, s2xx, s3xx, s4xx, s5xx; sorted, one row per second."""
        if not self._parts:
            return per_second(pl.DataFrame(schema={"ts": pl.Datetime("us", "UTC"), "status": pl.Int16()}))
        merged = pl.concat(self._parts).group_by("ts").agg(pl.all().sum()).sort("ts")
        self._parts = [merged]
        return merged


def per_second(toks: pl.DataFrame) -> pl.DataFrame:
    """Requests per second by status class: ts, requests, s2xx, s3xx, s4xx, s5xx, sorted by second."""
    ts = toks.get_column("ts")
    if toks.height and ts.null_count() == 0 and ts.is_sorted():
        return _per_second_sorted(toks)
    status = pl.col("status").fill_null(0)
    return (
        toks.lazy()
        .group_by(pl.col("ts").dt.truncate("1s"))
        .agg(
            pl.len().cast(pl.UInt32).alias("requests"),
            (status < 300).sum().cast(pl.UInt32).alias("s2xx"),
            ((status >= 300) & (status < 400)).sum().cast(pl.UInt32).alias("s3xx"),
            ((status >= 400) & (status < 500)).sum().cast(pl.UInt32).alias("s4xx"),
            (status >= 500).sum().cast(pl.UInt32).alias("s5xx"),
        )
        .sort("ts")
        .collect()
    )


def _per_second_sorted(toks: pl.DataFrame) -> pl.DataFrame:
    """`per_second` of time-ordered rows, as runs of equal seconds summed with NumPy (half the CPU of the group-by
    it replaces, which gave the same frame)."""
    seconds = toks.get_column("ts").dt.truncate("1s")
    keys = seconds.cast(pl.Int64).to_numpy()
    status = toks.get_column("status").fill_null(0).to_numpy()
    starts = np.concatenate(([0], np.flatnonzero(keys[1:] != keys[:-1]) + 1))
    classes = {
        "s2xx": status < 300,
        "s3xx": (status >= 300) & (status < 400),
        "s4xx": (status >= 400) & (status < 500),
        "s5xx": status >= 500,
    }
    columns = {"requests": np.diff(np.append(starts, len(keys)))}
    columns |= {name: np.add.reduceat(mask.astype(np.uint32), starts) for name, mask in classes.items()}
    return pl.DataFrame(
        [seconds.gather(starts), *(pl.Series(name, values, dtype=pl.UInt32) for name, values in columns.items())]
    )


def _counted_flags() -> list[tuple[pl.Expr, str]]:
    """`_COUNTED` as per-row expressions over the token columns, for the C counter (`detect.windowagg`)."""
    status = pl.col("status").fill_null(0)
    kind = pl.col("kind")
    flags = {
        "_page": kind == "page",
        "_asset": kind == "asset",
        "_3xx": (status >= 300) & (status < 400),
        "_4xx": (status >= 400) & (status < 500),
        "_5xx": status >= 500,
        "_with_query": pl.col("query") != "",
    }
    return [(flags.get(column, pl.col(column)), name) for column, name in _COUNTED]


def _distinct_values() -> list[tuple[pl.Expr, str]]:
    """`_DISTINCT` as per-row expressions, for the C counter."""
    values = {"_path": pl.col("path").hash(), "_query": pl.col("query").hash()}
    return [(values.get(column, pl.col(column)), name) for column, name in _DISTINCT]


def _aggregate(toks: pl.DataFrame, window_s: int, *, fast: bool = True) -> pl.DataFrame:
    """One row per (client, window) of `toks`: by the C counter when it is built and `toks` is in time order (the
    engine's contract), else by the reference below; both give the same frame (tests/detect/test_windowagg.py)."""
    if fast and windowagg.available() and toks.get_column("ts").is_sorted():
        return windowagg.aggregate(toks, window_s, _counted_flags(), _distinct_values(), WINDOW_SCHEMA)
    return _aggregate_reference(toks, window_s)


def _aggregate_reference(toks: pl.DataFrame, window_s: int) -> pl.DataFrame:
    """One row per (client, window) of `toks`, in two passes over integer columns.

    The aggregation sees only numbers: the client as a hash, the window and times as integers, strings as hashes.
    Values a window takes from one request (its client, user agent, evidence line, the first page's
    template, the first query scheme) are gathered afterwards from the row its integer aggregation picked: the
    earliest (ties in time broken by input order), so the result does not depend on how the sort breaks ties.
    """
    status = pl.col("status").fill_null(0)
    kind = pl.col("kind")
    # Time-ordered input (the engine's contract) needs only a stable sort by client: its rows then stay in time order,
    # ties in input order. Anything else is sorted by client, time and input position, to the same effect.
    in_time_order = bool(toks.get_column("ts").is_sorted())
    narrow = (
        toks.lazy()
        .select(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"),
            pl.col("client").hash().alias("_c"),
            pl.col("ts").dt.truncate(f"{window_s}s").alias("window"),
            "ts",
            (kind == "page").alias("_page"),
            (kind == "asset").alias("_asset"),
            "is_post",
            ((status >= 300) & (status < 400)).alias("_3xx"),
            ((status >= 400) & (status < 500)).alias("_4xx"),
            (status >= 500).alias("_5xx"),
            (pl.col("query") != "").alias("_with_query"),
            "cache_bust",
            "no_referer",
            "social_referer",
            "declared_bot",
            pl.col("path").hash().alias("_path"),
            pl.col("query").hash().alias("_query"),
            "ua_id",
            (pl.col("query_keys") != "").alias("_has_keys"),
        )
        # Gaps between a client's consecutive requests in a window, on rows ordered by client then time.
        .sort(["_c"] if in_time_order else ["_c", "ts", "_row"], maintain_order=True)
        .with_columns(
            pl.when((pl.col("_c") == pl.col("_c").shift()) & (pl.col("window") == pl.col("window").shift()))
            .then(pl.col("ts").diff().dt.total_microseconds().cast(pl.Float64) / 1e6)
            .alias("_gap"),
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("_pos"),
        )
        .with_columns(
            pl.when(~pl.col("_asset")).then(pl.col("_pos")).alias("_page_pos"),
            pl.when(pl.col("_has_keys")).then(pl.col("_pos")).alias("_keys_pos"),
        )
        .collect()
    )
    # A proxy pool's address sends one or two requests per window: in a 5M-line cache-busting flood three windows
    # in four are a single row and most others two, and grouping pays per group. Windows of one or two rows are
    # read straight off their rows (sorted by client and time, a window's rows are consecutive); only longer ones are
    # grouped. Groups come out in order of first appearance, i.e. by `_first`.
    new_run = ((pl.col("_c") != pl.col("_c").shift()) | (pl.col("window") != pl.col("window").shift())).fill_null(True)
    next_new = new_run.shift(-1).fill_null(True)
    shape = narrow.select(
        (new_run & next_new).alias("single"),
        (new_run & ~next_new & new_run.shift(-2).fill_null(True)).alias("pair"),
    )
    single, pair = shape.get_column("single"), shape.get_column("pair")
    longer = ~(single | pair | pair.shift(1).fill_null(False))
    counts = [pl.col(column).sum().cast(pl.UInt32).alias(name) for column, name in _COUNTED]
    distinct = [pl.col(column).n_unique().cast(pl.UInt32).alias(name) for column, name in _DISTINCT]
    several = (
        narrow.lazy()
        .filter(longer)
        .group_by("_c", "window", maintain_order=True)  # windows in a stable order: by client hash, then time
        .agg(
            pl.len().cast(pl.UInt32).alias("requests"),
            *counts,
            *distinct,
            pl.col("_gap").mean().alias("gap_mean_s"),
            pl.col("_gap").std().alias("gap_std_s"),
            pl.col("ts").min().alias("first_ts"),
            pl.col("ts").max().alias("last_ts"),
            pl.col("_pos").min().alias("_first"),
            pl.col("_page_pos").min().alias("_first_page"),
            pl.col("_keys_pos").min().alias("_first_keys"),
        )
        .collect()
    )
    one = (
        narrow.lazy()
        .filter(single)
        .select(
            "_c",
            "window",
            pl.lit(1, pl.UInt32).alias("requests"),
            *(pl.col(column).cast(pl.UInt32).alias(name) for column, name in _COUNTED),
            *(pl.lit(1, pl.UInt32).alias(name) for _, name in _DISTINCT),
            pl.lit(None, pl.Float64).alias("gap_mean_s"),
            pl.lit(None, pl.Float64).alias("gap_std_s"),
            pl.col("ts").alias("first_ts"),
            pl.col("ts").alias("last_ts"),
            pl.col("_pos").alias("_first"),
            pl.col("_page_pos").alias("_first_page"),
            pl.col("_keys_pos").alias("_first_keys"),
        )
        .collect()
    )

    def second(column: str) -> pl.Expr:
        return pl.col(column).shift(-1)

    # A two-row window, on its first row: sums of both rows, distinct values 1 or 2, one gap (its mean; a standard
    # deviation of one value is null, as polars gives it), times and positions ascending within the window.
    two = (
        narrow.lazy()
        .with_columns(pair.alias("_pair"))
        .select(
            "_pair",
            "_c",
            "window",
            pl.lit(2, pl.UInt32).alias("requests"),
            *((pl.col(c).cast(pl.UInt32) + second(c).cast(pl.UInt32)).alias(name) for c, name in _COUNTED),
            *((pl.col(c) != second(c)).cast(pl.UInt32).add(1).alias(name) for c, name in _DISTINCT),
            second("_gap").alias("gap_mean_s"),
            pl.lit(None, pl.Float64).alias("gap_std_s"),
            pl.col("ts").alias("first_ts"),
            second("ts").alias("last_ts"),
            pl.col("_pos").alias("_first"),
            pl.min_horizontal("_page_pos", second("_page_pos")).alias("_first_page"),
            pl.min_horizontal("_keys_pos", second("_keys_pos")).alias("_first_keys"),
        )
        .filter(pl.col("_pair"))
        .drop("_pair")
        .collect()
    )
    grouped = pl.concat([several, two, one]).sort("_first")
    order = narrow.get_column("_row")
    # Gathering from string columns in several chunks (the open window's rows, then the batch's) cost 8 times more
    # than from one: 30 of 115 ms per 236k-row batch.
    picked = toks.select("client", "client_net", "ua_id", "source", "line", "template", "query_keys").rechunk()

    def pick(position: str, columns: list[str]) -> pl.DataFrame:
        """`columns` of the rows at sorted `position` (null where the window has no such row)."""
        rows = order.gather(grouped.get_column(position))
        return picked.select(pl.col(name).gather(rows) for name in columns)

    first = pick("_first", ["client", "client_net", "ua_id", "source", "line"])
    page = pick("_first_page", ["template"])
    keys = pick("_first_keys", ["query_keys"])
    template = page.get_column("template").fill_null("asset")
    query_keys = keys.get_column("query_keys").fill_null("")
    return (
        grouped.drop("_c", "_first", "_first_page", "_first_keys")
        .hstack([*first.get_columns(), template, query_keys])
        .cast(WINDOW_SCHEMA)  # type: ignore[arg-type]
        .select(list(WINDOW_SCHEMA))
    )


def _own_strings(windows: pl.DataFrame) -> pl.DataFrame:
    """`windows` with their addresses copied out of the batch they were read from.

    Polars' strings are views into the buffers they were read into: a window's `client` kept the log scanner's whole
    batch alive (some 30 MB per 16 MB chunk) for as long as the window history held it in memory, so the scanner could
    seldom reuse a batch and had the kernel fault in and zero fresh huge pages for the next (reading 5M lines with one
    address of each batch kept alive: 415k minor page faults instead of 280-330k; `analyze` at 5M lines: 4.1 -> 2.8
    s of system time with this copy). The copy costs ~2 ms a batch."""
    return windows.with_columns(compacted(windows.select("client", "client_net")).get_columns())


class ClientWindows:
    """Per-(client, window) aggregates, emitted when complete; see the module docstring."""

    def __init__(self, window_s: int) -> None:
        self.window_s = window_s
        self._open: pl.DataFrame | None = None  # token rows of the window not yet complete

    def add(self, toks: pl.DataFrame) -> pl.DataFrame:
        """Feed time-ordered token rows; returns the windows completed by them."""
        if toks.height == 0:
            return pl.DataFrame(schema=WINDOW_SCHEMA)
        rows = toks if self._open is None else pl.concat([self._open, toks])
        last = rows.get_column("ts").max()
        assert isinstance(last, datetime)
        cut = pl.Series([last]).dt.truncate(f"{self.window_s}s").item()
        done = rows.filter(pl.col("ts") < cut)
        self._open = rows.filter(pl.col("ts") >= cut)
        return _own_strings(_aggregate(done, self.window_s)) if done.height else pl.DataFrame(schema=WINDOW_SCHEMA)

    def flush(self) -> pl.DataFrame:
        """The still-open window's aggregates (at the end of the input)."""
        rows, self._open = self._open, None
        if rows is None or rows.height == 0:
            return pl.DataFrame(schema=WINDOW_SCHEMA)
        return _aggregate(rows, self.window_s)

    @property
    def open_rows(self) -> pl.DataFrame | None:
        return self._open
