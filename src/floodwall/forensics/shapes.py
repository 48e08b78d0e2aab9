"""Columnar descriptions of a request: its kind, what a cache could do with it, its user-agent family, the scheme of
its query string, and the strings it carries that could be an attacker's marker. Polars expressions only: they run
once per batch, never once per row in Python."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final

import polars as pl

__all__ = [
    "CLIENT_HASH",
    "KIND_VECTOR",
    "cacheable",
    "client_hash",
    "grouped",
    "looks_hostile",
    "marker_candidate_plan",
    "marker_candidates",
    "query_key_rows",
    "query_scheme",
    "request_kind",
    "request_kinds",
    "scheme_counts",
    "seen_columns",
    "ua_family",
    "with_query_scheme",
    "with_shaped_query",
]

_ASSET: Final = r"\.(?:css|js|mjs|png|jpe?g|gif|webp|avif|svg|ico|woff2?|ttf|otf|eot|map|mp4|webm|mp3|pdf)$"
_LOGIN: Final = r"wp-login\.php|/login|/signin|/user/login|/admin|/wp-admin|/account"
_SEARCH_QUERY: Final = r"(?:^|&)(?:s|q|search|query|keyword|term)="

#: The kind of a request as `request_kind` names it, and the flood vector it stands for when an attacker sends it.
KIND_VECTOR: Final[dict[str, str]] = {
    "page": "get-flood",
    "asset": "get-flood",
    "bust": "cache-bust",
    "notfound": "random-path",
    "search": "search-flood",
    "post": "post-flood",
    "login": "login-bruteforce",
    "xmlrpc": "xmlrpc-abuse",
}

# Query keys that sites and browsers use every day: a scheme built on them is not an attacker's signature.
_COMMON_KEYS: Final = (
    "p", "s", "q", "v", "t", "id", "page", "ver", "amp", "lang", "ref", "utm_source", "utm_medium", "utm_campaign",
    "utm_content", "utm_term", "fbclid", "gclid", "cat", "tag", "search", "query", "preview", "replytocom", "feed",
    "format", "callback", "output", "paged", "orderby", "order", "nocache", "cachebuster", "rand", "random", "rnd",
    "ts", "timestamp", "_", "redirect_to", "page_id", "action", "author", "attachment_id", "post", "post_type",
    "reauth", "loggedout", "interim-login", "rest_route", "doing_wp_cron", "share", "print", "comments", "offset",
)  # fmt: skip

# Path words every site serves: a flood on them is a vector (search flood, login brute force), not a signature.
_SITE_WORDS: Final = (
    "search", "login", "wp-login", "xmlrpc", "admin", "wp-admin", "wp-content", "wp-includes", "wp-json", "index",
    "feed", "page", "tag", "category", "author", "amp", "static", "assets", "images", "uploads", "themes",
    "plugins", "html", "www",
)  # fmt: skip

_QUERY_KEY: Final = r"^([a-z][a-z0-9_-]{2,31})$"  # a query key that could be a marker, lower-cased
_BROWSER_UA: Final = r"^mozilla/5\.0 \((?:windows nt|macintosh|x11|linux|iphone|ipad|android)"
_KNOWN_UA: Final = (
    r"bot|crawl|spider|slurp|pingdom|uptime|monitor|feed|curl|wget|python|go-http|java/|okhttp|libwww|scrapy|"
    r"headless|facebookexternalhit|twitterbot|whatsapp|telegrambot|slackbot|discordbot|apache-httpclient|axios|"
    r"node-fetch|postman|nikto|sqlmap|nmap|zgrab|masscan|wpscan|nuclei"
)


#: The column of the client's 64-bit hash (`pl.col("client").hash()`), when a frame carries it already: the forensic
#: pass's marked rows do (`Collector._marked`), so that the five queries grouping every row by client hash it once.
CLIENT_HASH: Final = "_hash_client"


def _hash_of(frame: pl.LazyFrame, name: str) -> pl.Expr:
    """`pl.col(name).hash()` as `_hash_{name}`, read from `frame` when it carries that column (`CLIENT_HASH`)."""
    column = f"_hash_{name}"
    return pl.col(column) if column in frame.collect_schema().names() else pl.col(name).hash().alias(column)


def client_hash(frame: pl.LazyFrame) -> pl.Expr:
    """The client's 64-bit hash (`pl.col("client").hash()`) on `frame`'s rows, computed once where it can be."""
    return _hash_of(frame, "client")


def grouped(
    frame: pl.LazyFrame, keys: Sequence[str | pl.Expr], hashed: Sequence[str], aggs: Sequence[pl.Expr]
) -> pl.LazyFrame:
    """`frame.group_by(keys + hashed).agg(aggs)`, with the `hashed` string columns grouped by their 64-bit hash and
    their text taken from each group's first row. Strings as group keys cost Polars about twice integers (a batch's
    (client, user agent) pairs: 0.15 s against 0.07 s per million rows), and hashing a column is cheap; a collision
    between two of a log's distinct values is a chance of about one in a million at ten million values. A hash
    `frame` carries already (`CLIENT_HASH`) is used as it is."""
    hashes = [_hash_of(frame, name) for name in hashed]
    return (
        frame.group_by([*keys, *hashes])
        .agg(*(pl.col(name).first() for name in hashed), *aggs)
        .drop([f"_hash_{name}" for name in hashed])
    )


def _one_of(expr: pl.Expr, values: Sequence[str]) -> pl.Expr:
    """`expr.is_in(values)` for a few short strings, as comparisons: on a batch's rows these cost Polars less than
    half of `is_in`'s hash lookups (0.8 against 2.0 ms for 240k methods)."""
    compared = expr == values[0]
    for value in values[1:]:
        compared = compared | (expr == value)
    return compared


def _reads(method: pl.Expr) -> pl.Expr:
    """GET or HEAD (`method` with nulls filled)."""
    return _one_of(method, ("GET", "HEAD"))


def request_kind() -> pl.Expr:
    """One of `KIND_VECTOR`'s keys: what the request does, in the terms of the flood vectors."""
    path = pl.col("path").fill_null("")  # case-insensitive patterns: no lower-cased copy of every path
    method = pl.col("method").fill_null("GET")
    query = pl.col("query")
    return (
        pl.when(path.str.contains(r"(?i)xmlrpc\.php"))
        .then(pl.lit("xmlrpc"))
        .when((method == "POST") & path.str.contains("(?i)" + _LOGIN))
        .then(pl.lit("login"))
        .when(path.str.contains(r"(?i)(?:^|/)search(?:/|$)") | query.fill_null("").str.contains(_SEARCH_QUERY))
        .then(pl.lit("search"))
        .when(~_reads(method))
        .then(pl.lit("post"))
        .when(path.str.contains("(?i)" + _ASSET))
        .then(pl.lit("asset"))
        .when(pl.col("status") == 404)
        .then(pl.lit("notfound"))
        .when(query.is_not_null())
        .then(pl.lit("bust"))
        .otherwise(pl.lit("page"))
    )


#: What a path must hold for its kind to be xmlrpc, login, search or asset (`request_kind`'s path tests, loosened):
#: a path without any of these is decided by method, status and query alone.
_SPECIAL_PATH: Final = (
    r"(?i:xmlrpc\.php|wp-login\.php|/login|/signin|/user/login|/admin|/wp-admin|/account|search)|\.[A-Za-z0-9]{2,5}$"
)


def request_kinds(frame: pl.DataFrame) -> pl.Series:
    """`request_kind()` of every row of `frame`, as a Series named "kind", for a third less work on a flood.

    `request_kind` tests every path against four case-insensitive patterns. Most paths of a flood (articles, the
    front page, random words) match none, so one looser pattern finds the paths that might, and only those rows
    go through `request_kind`; the rest are decided by their query, method and status."""
    path = pl.col("path").fill_null("")
    query = pl.col("query")
    plain = (
        pl.when(query.str.contains(_SEARCH_QUERY).fill_null(False))
        .then(pl.lit("search"))
        .when(~_reads(pl.col("method").fill_null("GET")))
        .then(pl.lit("post"))
        .when(pl.col("status") == 404)
        .then(pl.lit("notfound"))
        .when(query.is_not_null())
        .then(pl.lit("bust"))
        .otherwise(pl.lit("page"))
    )
    kinds, special = frame.select(plain.alias("kind"), path.str.contains(_SPECIAL_PATH).alias("special")).get_columns()
    rows = special.arg_true()
    if rows.len():
        special_rows = frame.select("path", "method", "query", "status")[rows]  # the columns it reads, not all
        kinds = kinds.scatter(rows, special_rows.select(request_kind()).to_series())
    return kinds


_SENSITIVE: Final = (
    r"(?i)(?:/\.(?:env|git|svn|hg|aws|ssh|htaccess|htpasswd|vscode|docker)|wp-config|config\.(?:php|json|ya?ml|ini)|"
    r"\.(?:sql|bak|old|orig|swp|save|dist|pem|key|sqlite|db)(?:$|[/?~])|phpinfo|phpmyadmin|adminer|shell|setup\.php|"
    r"install\.php|/etc/|/proc/|win\.ini|/cgi-bin/|xmlrpc\.php|server-status|actuator|/console|debug\.log)"
)
_PAYLOAD: Final = (
    r"(?i)(?:['\"<>`]|%27|%22|%3c|%3e|%60|\.\./|\.\.%2f|%2e%2e|\$\{|\$\(|union(?:\s|\+|%20)+(?:all|select)|"
    r"sleep\(|benchmark\(|/etc/passwd|;\s*(?:ls|cat|id|wget|curl|uname)\b|\|\s*(?:ls|cat|id|sh)\b|cmd=|exec=)"
)


def looks_hostile() -> pl.Expr:
    """True for a request that on its face probes or attacks: a sensitive file or admin tool, or injection
    characters in its path or query. A 2xx answer to one of these is a possible breach."""
    path = pl.col("path").fill_null("")
    query = pl.col("query").fill_null("")
    return path.str.contains(_SENSITIVE) | path.str.contains(_PAYLOAD) | query.str.contains(_PAYLOAD)


def cacheable(*, ignore_query: bool, kind: pl.Expr | None = None) -> pl.Expr:
    """True when a shared cache in front of the origin could have answered the request: a GET or HEAD of a page,
    asset or missing page that did not fail. With `ignore_query` the cache keys on the path alone (query strings
    it does not know are dropped), which is what defeats cache busting."""
    kind = request_kind() if kind is None else kind
    plain = _reads(pl.col("method").fill_null("GET")) & (pl.col("status").fill_null(200) < 500)
    kinds = ("page", "asset", "notfound", "bust") if ignore_query else ("page", "asset", "notfound")
    no_query = pl.lit(True) if ignore_query else pl.col("query").is_null()
    return plain & _one_of(kind, kinds) & no_query


def ua_family() -> pl.Expr:
    """A user agent's family and major version ("Chrome 103", "curl", "Googlebot"), or "(none)"."""
    ua = pl.col("user_agent").fill_null("")
    low = ua.str.to_lowercase()
    major = r"/(\d+)"
    return (
        pl.when(ua == "")
        .then(pl.lit("(none)"))
        .when(low.str.contains("googlebot"))
        .then(pl.lit("Googlebot"))
        .when(low.str.contains("bingbot"))
        .then(pl.lit("Bingbot"))
        .when(low.str.contains(r"bot|crawl|spider|slurp"))
        .then(pl.lit("other robot"))
        .when(low.str.starts_with("curl/"))
        .then(pl.lit("curl"))
        .when(low.str.starts_with("wget/"))
        .then(pl.lit("Wget"))
        .when(low.str.contains(r"python|go-http|java/|okhttp|libwww|scrapy|axios|node-fetch|apache-httpclient"))
        .then(pl.lit("HTTP library"))
        .when(low.str.contains("headless"))
        .then(pl.lit("headless browser"))
        .when(ua.str.contains(r"Edg/"))
        .then(pl.lit("Edge ") + ua.str.extract(r"Edg" + major, 1))
        .when(ua.str.contains(r"OPR/"))
        .then(pl.lit("Opera ") + ua.str.extract(r"OPR" + major, 1))
        .when(ua.str.contains(r"Firefox/"))
        .then(pl.lit("Firefox ") + ua.str.extract(r"Firefox" + major, 1))
        .when(ua.str.contains(r"Chrome/"))
        .then(pl.lit("Chrome ") + ua.str.extract(r"Chrome" + major, 1))
        .when(ua.str.contains(r"Version/\d+.*Safari/"))
        .then(pl.lit("Safari ") + ua.str.extract(r"Version" + major, 1))
        .when(ua.str.contains(r"MSIE |Trident/"))
        .then(pl.lit("Internet Explorer"))
        .when(low.str.starts_with("mozilla/"))
        .then(pl.lit("other browser"))
        .otherwise(pl.lit("other"))
        .fill_null(pl.lit("other"))
    )


def _scheme_part(key: pl.Expr, value: pl.Expr) -> pl.Expr:
    """One `key=value` part of a query string, shaped (see `query_scheme`)."""
    key = key.fill_null("").str.to_lowercase()
    key_shape = (
        pl.when(key.is_in(list(_COMMON_KEYS)) | (key.str.len_chars() <= 2))
        .then(key)
        .when(key.str.contains(r"^[a-z]+$"))
        .then(pl.format("[a-z]{{{}}}", key.str.len_chars()))
        .otherwise(pl.format("[…]{{{}}}", key.str.len_chars()))
    )
    value_shape = value.str.replace_all(r"[A-Za-z]+", "W").str.replace_all(r"[0-9]+", "N").str.slice(0, 24)
    return pl.when(value.is_null()).then(key_shape).otherwise(pl.concat_str([key_shape, pl.lit("="), value_shape]))


def query_scheme() -> pl.Expr:
    """The shape of a query string: common keys kept, other keys replaced by their shape (`[a-z]{6}`), values by
    runs of digits (`N`) and letters (`W`): `ver=N.N.N`, `q=W+W+N`, `[a-z]{6}=N`. Null without a query."""
    halves = pl.element().str.splitn("=", 2)  # a plain split: a quarter cheaper than two regular expressions
    part = _scheme_part(halves.struct.field("field_0"), halves.struct.field("field_1"))
    return pl.col("query").str.split("&").list.eval(part).list.join("&").str.slice(0, 80)


def with_shaped_query(
    frame: pl.LazyFrame, name: str, part: Callable[[pl.Expr, pl.Expr], pl.Expr], whole: pl.Expr, limit: int
) -> pl.LazyFrame:
    """`frame` with `whole` (a shape of its `query` made part by part with `part(key, value)`, at most `limit`
    characters) as column `name`, its rows in another order (for callers that group them).

    A query string of one part (`xk3q9z=1700000000`, what cache busters send) is shaped by `part` as a plain
    column; only the others go through the per-part list evaluation, whose overhead was a sixth of the work on a
    cache-busting flood's queries."""
    single = ~pl.col("query").str.contains("&", literal=True)
    halves = pl.col("query").str.splitn("=", 2)
    plain = part(halves.struct.field("field_0"), halves.struct.field("field_1")).str.slice(0, limit)
    return pl.concat(
        [
            frame.filter(single).with_columns(plain.alias(name)),
            frame.filter(~single | pl.col("query").is_null()).with_columns(whole.alias(name)),
        ]
    )


def with_query_scheme(frame: pl.LazyFrame, name: str = "scheme") -> pl.LazyFrame:
    """`frame` with `query_scheme()` as column `name` (see `with_shaped_query`)."""
    return with_shaped_query(frame, name, _scheme_part, query_scheme(), 80)


def scheme_counts(frame: pl.LazyFrame, keys: Sequence[str], weight: int = 1) -> pl.LazyFrame:
    """Requests (`weight` each) per (`keys`, scheme, client) of `frame`'s rows with a query string: what
    `grouped(with_query_scheme(frame), [*keys, "scheme"], ["client"], ...)` gives, for a third of the work on a
    cache-busting flood.

    A one-part query (`xk3q9z=1700000000`) is not shaped row by row: its rows are grouped first by what its scheme
    depends on (the key if it is a common one, else the key's length and whether it is all letters; the value's
    shape, "N" straight away for the usual all-digit value), and the scheme text is written once per group. Queries
    of several parts go through `with_query_scheme`."""
    rows = frame.filter(pl.col("query").is_not_null())
    single = ~pl.col("query").str.contains("&", literal=True)
    halves = pl.col("query").str.splitn("=", 2)
    one = rows.filter(single).with_columns(
        halves.struct.field("field_0").fill_null("").str.to_lowercase().alias("_key"),
        halves.struct.field("field_1").alias("_value"),
    )
    digits = pl.col("_value").str.contains(r"^[0-9]+$")
    value_shape = pl.col("_value").str.replace_all(r"[A-Za-z]+", "W").str.replace_all(r"[0-9]+", "N").str.slice(0, 24)
    shaped = pl.concat(
        [
            one.filter(digits).with_columns(pl.lit("N").alias("_value")),
            one.filter(~digits | pl.col("_value").is_null()).with_columns(value_shape.alias("_value")),
        ]
    )
    key = pl.col("_key")
    common = key.is_in(pl.Series(_COMMON_KEYS).implode()) | (key.str.len_chars() <= 2)
    by_shape = shaped.group_by(
        *keys,
        client_hash(frame).alias("_client"),
        pl.when(common).then(key).alias("_common"),
        key.str.len_chars().alias("_length"),
        key.str.contains(r"^[a-z]+$").alias("_letters"),
        "_value",
    ).agg(pl.col("client").first(), pl.len().alias("requests"))
    length = pl.col("_length")
    key_shape = (
        pl.when(pl.col("_common").is_not_null())
        .then(pl.col("_common"))
        .when(pl.col("_letters"))
        .then(pl.format("[a-z]{{{}}}", length))
        .otherwise(pl.format("[…]{{{}}}", length))
    )
    scheme = (
        pl.when(pl.col("_value").is_null()).then(key_shape).otherwise(pl.concat_str([key_shape, pl.lit("="), "_value"]))
    )
    singles = by_shape.with_columns(scheme.str.slice(0, 80).alias("scheme")).select(
        *keys, "scheme", "_client", "client", "requests"
    )
    several = (
        with_query_scheme(rows.filter(~single))
        .group_by(*keys, "scheme", client_hash(frame).alias("_client"))
        .agg(pl.col("client").first(), pl.len().alias("requests"))
    )
    return (
        pl.concat([singles, several], how="vertical_relaxed")
        .group_by(*keys, "scheme", "_client")
        .agg(pl.col("client").first(), (pl.col("requests").sum() * weight).cast(pl.Int64))
        .drop("_client")
    )


def _values(lazy: pl.LazyFrame, column: str) -> pl.LazyFrame:
    """The candidate strings of one column of `lazy` (one row per distinct value and key), as `kind, value`."""
    value = pl.col(column).str.to_lowercase()
    if column == "user_agent":
        return lazy.with_columns(pl.lit("user-agent").alias("kind"), value.alias("value")).filter(
            ~pl.col("value").str.contains(_BROWSER_UA)
            & ~pl.col("value").str.contains(_KNOWN_UA)
            & (pl.col("value").str.len_chars() >= 4)
        )
    if column == "query":
        keys = value.str.extract_all(r"(?:^|&)" + _QUERY_KEY[1:-1] + "=").list.eval(pl.element().str.strip_chars("&="))
        return (
            lazy.with_columns(pl.lit("query-key").alias("kind"), keys.alias("value"))
            .explode("value")
            .filter(pl.col("value").is_not_null() & ~pl.col("value").is_in(list(_COMMON_KEYS)))
        )
    if column == "path":
        return (
            lazy.with_columns(
                pl.lit("path").alias("kind"), value.str.extract_all(r"[a-z][a-z0-9_-]{3,40}").alias("value")
            )
            .explode("value")
            .filter(pl.col("value").is_not_null() & ~pl.col("value").is_in(list(_SITE_WORDS)))
        )
    return lazy.with_columns(pl.lit("referer").alias("kind"), value.alias("value")).filter(pl.col("value") != "-")


def marker_candidates(
    frame: pl.DataFrame,
    keys: Sequence[str] = ("client",),
    skip_paths: pl.Expr | None = None,
    count_clients: bool = False,
    per_row_queries: bool = False,
    query_keys: Sequence[str] | None = None,
) -> pl.DataFrame:
    """`marker_candidate_plan` of `frame`, run."""
    plan = marker_candidate_plan(frame.lazy(), keys, skip_paths, count_clients, per_row_queries, query_keys)
    return plan.collect(engine="in-memory")


def query_key_rows(frame: pl.LazyFrame, columns: Sequence[str]) -> pl.LazyFrame:
    """`columns` of `frame`'s rows with, as `value`, each query key that could be a marker (lower-cased, not an
    everyday key): one row per key a request carries. A one-part query's key is the text before its first `=`
    (what the regular expression of `_values` finds there); queries of several parts are searched with that
    expression. The rows are narrowed to the columns used before they are filtered: every filter copies what it
    carries."""
    columns = list(columns)
    rows = frame.select(*columns, "query").filter(pl.col("query").is_not_null())
    single = ~pl.col("query").str.contains("&", literal=True)
    halves = pl.col("query").str.splitn("=", 2)
    key = pl.when(single & halves.struct.field("field_1").is_not_null()).then(halves.struct.field("field_0"))
    one = rows.select(*columns, key.str.to_lowercase().alias("value")).filter(pl.col("value").str.contains(_QUERY_KEY))
    several = (
        rows.filter(~single)
        .select(
            *columns,
            pl.col("query")
            .str.to_lowercase()
            .str.extract_all(r"(?:^|&)" + _QUERY_KEY[1:-1] + "=")
            .list.eval(pl.element().str.strip_chars("&="))
            .alias("value"),
        )
        .explode("value")
    )
    return pl.concat([one, several]).filter(
        pl.col("value").is_not_null() & ~pl.col("value").is_in(pl.Series(_COMMON_KEYS).implode())
    )


def _query_keys_per_row(
    frame: pl.LazyFrame, keys: list[str], firsts: list[pl.Expr], only: Sequence[str] | None
) -> pl.LazyFrame:
    """The query keys of `frame`'s rows as marker candidates (kind "query-key"), each row's keys found on the row
    itself (`query_key_rows`): a cache-busting flood's query strings are all different, so grouping them first (the
    other columns' way) only adds a group-by over every row. With `only`, just those keys are looked for, and only
    in the rows whose query holds one of them followed by `=` (one multi-pattern search)."""
    if only is not None:
        wanted = pl.Series(sorted(only), dtype=pl.String)
        holds = pl.col("query").str.contains_any([f"{key}=" for key in wanted], ascii_case_insensitive=True)
        frame = frame.filter(holds) if wanted.len() else frame.head(0)
    found = query_key_rows(frame, [*keys, "ts", "source", "line", "client"])
    if only is not None:
        found = found.filter(pl.col("value").is_in(wanted.implode()))
    return (
        found.group_by([*keys, pl.col("value").hash().alias("_value")])
        .agg(pl.col("value").first(), *firsts)
        .drop("_value")
        .with_columns(pl.lit("query-key").alias("kind"))
    )


def seen_columns() -> list[pl.Expr]:
    """A group's requests, first and last seen, and its first request's source and line (the evidence columns
    every table of strings, URLs and agents carries)."""
    return [
        pl.len().cast(pl.Int64).alias("requests"),
        pl.col("ts").min().alias("first_ts"),
        pl.col("ts").max().alias("last_ts"),
        pl.col("source").first(),
        pl.col("line").first(),
    ]


def marker_candidate_plan(
    frame: pl.LazyFrame,
    keys: Sequence[str] = ("client",),
    skip_paths: pl.Expr | None = None,
    count_clients: bool = False,
    per_row_queries: bool = False,
    query_keys: Sequence[str] | None = None,
    grouped_values: Mapping[str, pl.LazyFrame] | None = None,
) -> pl.LazyFrame:
    """Strings a request carries that could be an attacker's signature, lower-cased: a user agent that is neither
    a browser's nor a known tool's, query keys that are not everyday ones, words of the path, referers. One row
    per (`keys`, kind, value) with requests, first_ts, last_ts and the first request's source and line.

    Each column is grouped to its distinct values before any string work, so a value repeated a million times
    (a popular page, a browser's user agent) is looked at once per batch; the grouping is by the value's 64-bit
    hash (integers group several times faster than strings), and clients are counted by theirs. Rows where
    `skip_paths` holds give no path words. With `count_clients`, `clients` counts the distinct clients that sent
    each value. With `per_row_queries`, query keys are found row by row instead (`_query_keys_per_row`: for a
    flood's query strings, which never repeat), and with `query_keys` as well, only those keys. Lazy, so a caller
    can run it beside its other aggregates of the same rows. `grouped_values` gives, for some columns, that
    grouping already made (`keys`, the column, requests, first_ts, last_ts, source, line, and clients as lists of
    hashes with `count_clients`): a caller that groups the same rows for tables of its own."""
    keys = list(keys)
    firsts = [
        *seen_columns(),
        *([client_hash(frame).unique().alias("clients")] if count_clients else []),
    ]
    parts = []
    given = grouped_values or {}
    for column in ("user_agent", "query", "path", "referer"):
        if column == "query" and per_row_queries:
            continue
        present = pl.col(column).is_not_null()
        if column == "path" and skip_paths is not None:
            present = present & ~skip_paths
        grouped = given.get(column)
        if grouped is None:
            grouped = (
                frame.filter(present)
                .group_by([*keys, pl.col(column).hash().alias("_value")])
                .agg(pl.col(column).first(), *firsts)
                .drop("_value")
            )
        parts.append(_values(grouped, column).drop(column))
    merged = (
        pl.concat(parts, how="vertical_relaxed")
        .group_by([*keys, "kind", "value"])
        .agg(
            pl.col("requests").sum(),
            pl.col("first_ts").min(),
            pl.col("last_ts").max(),
            pl.col("source").sort_by("first_ts", "source", "line").first(),
            pl.col("line").sort_by("first_ts", "source", "line").first(),
            *([pl.col("clients").explode().n_unique().cast(pl.Int64)] if count_clients else []),
        )
    )
    if not per_row_queries:
        return merged
    # `first` as for the other columns' values: the rows are in time order (a sort by time, then source and line,
    # per group cost a third of the whole).
    per_row = (
        [*firsts[:-1], pl.col("client").hash().n_unique().cast(pl.Int64).alias("clients")] if count_clients else firsts
    )
    queries = _query_keys_per_row(frame, keys, per_row, query_keys)
    return pl.concat([merged, queries.select(merged.collect_schema().names())], how="vertical_relaxed")
