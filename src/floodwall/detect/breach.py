"""Breach attempts: signature hits (and 4xx-heavy probing) grouped by client and time into incidents of their kind.

A client is a *brute force* when most of its hits are POSTs to a login form or to xmlrpc.php and there are at least
`bruteforce_min` of them (one login is an editor), or when it is a member of a login fleet (credential stuffing
over a pool, `collective_bruteforce`). Other clients active together (within `breach_gap_s`) are one group, a *scan*
when it mostly probes (sensitive files, scanner user agents without injection payloads, many distinct paths mostly
answered 4xx), otherwise an *exploit* attempt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import polars as pl

from floodwall.detect.kinds import kind_of as _kind_of
from floodwall.detect.settings import DetectSettings
from floodwall.model import IncidentKind, Vector

__all__ = [
    "BREACH_SCHEMA",
    "BreachGroup",
    "aggregate_hits",
    "breach_groups",
    "browser_agent",
    "candidates",
    "collective_bruteforce",
    "family_totals",
    "login_posters",
    "payload_senders",
    "plain_method",
    "plain_path",
    "plain_query",
    "plain_request",
    "probing_clients",
]

#: Signature hits aggregated per (client, family, vector, half hour).
BREACH_SCHEMA: Final[dict[str, pl.DataType]] = {
    "client": pl.String(),
    "family": pl.String(),
    "vector": pl.String(),
    "bucket": pl.Datetime("us", "UTC"),
    "hits": pl.UInt32(),
    "redirected": pl.UInt32(),  # hits answered 3xx: for a login POST, the login was accepted
    "first_ts": pl.Datetime("us", "UTC"),
    "last_ts": pl.Datetime("us", "UTC"),
    "rule_ids": pl.List(pl.String()),
    "matched": pl.String(),
    "evidence_source": pl.List(pl.String()),
    "evidence_line": pl.List(pl.Int64()),
}
_BRUTE: Final = ("login", "xmlrpc")
_PROBE: Final = ("scanner", "sensitive-file")
#: A client at least this share of whose requests carried a payload is a breach actor, never a flood member.
PAYLOAD_SENDER_SHARE: Final = 0.5


# Requests that no breach signature can fire on are skipped before matching (the matcher costs far more per value
# than this filter per row): plain paths and queries of a news site, from a browser or a well-known robot. Anything
# with punctuation an injection needs, a script or config-like file, an admin or login path, a non-GET/HEAD method,
# or a user agent that is not a mainstream browser string goes to the signatures.
_SAFE_PATH: Final = r"^[A-Za-z0-9/._~,+-]*$"
_SAFE_QUERY: Final = r"^[A-Za-z0-9_.~,+=&-]*$"
_SUSPECT_PATH: Final = (
    r"(?i)(?:\.(?:php\d?|asp|aspx|jsp|cgi|pl|py|sh|env|git|svn|htaccess|htpasswd|ini|conf|config|cfg|sql|bak|old|"
    r"orig|swp|log|yml|yaml|zip|tar|gz|rar|7z|pem|key|db|sqlite|mdb|inc|dist|save|tmp)(?:$|/|~)|~$|"
    r"admin|login|xmlrpc|wp-(?:admin|login|config|json|cron|includes/[^/]*\.php)|cgi|phpmyadmin|\.well-known|actuator|server-status|console|shell|setup|install|"
    r"/\.|debug|passwd|etc/|proc/|boot|win\.ini|vendor|backup|dump|owa|autodiscover|solr|jenkins|manager)"
)
_BROWSER: Final = r"^Mozilla/5\.0 \((?:Windows NT|Macintosh|X11|Linux|iPhone|iPad|Android)[^<>'\"`${}]*$"


def plain_path() -> pl.Expr:
    """True where the path gives no signature anything to fire on (`detect._tokenscan` computes the same in C)."""
    path = pl.col("path").fill_null("")
    return path.str.contains(_SAFE_PATH) & ~path.str.contains(_SUSPECT_PATH)


def plain_query() -> pl.Expr:
    """True where the query string gives no signature anything to fire on (`detect._tokenscan` likewise)."""
    return pl.col("query").fill_null("").str.contains(_SAFE_QUERY)


def plain_method() -> pl.Expr:
    """True for GET and HEAD (a missing method counts as GET): other methods always go to the signatures."""
    return pl.col("method").fill_null("GET").is_in(["GET", "HEAD"])


def plain_request() -> pl.Expr:
    """True where method, path and query give no signature anything to fire on (the user agent may still)."""
    return plain_path() & plain_query() & plain_method()


def _per_value(frame: pl.DataFrame, column: str, flag: pl.Expr) -> pl.Series:
    """`flag` evaluated once per distinct value of `column` (paths and agents repeat a lot), one value per row."""
    keys = frame.select(pl.col(column).hash().alias("_h"))
    distinct = keys.with_columns(frame.get_column(column)).unique("_h").select("_h", flag.alias("_flag"))
    return keys.join(distinct, on="_h", how="left", maintain_order="left").get_column("_flag")


def browser_agent() -> pl.Expr:
    """True where the user agent is a mainstream browser's (no tool, robot or markup in it): such a request goes to
    the signatures only for its method, path or query."""
    agent = pl.col("user_agent").fill_null("")
    return agent.str.contains(_BROWSER) & ~agent.str.contains(
        r"(?i)(?:headless|python|curl|wget|scan|nikto|sqlmap|nmap|zgrab|masscan|fuzz|bot)"
    )


def candidates(frame: pl.DataFrame, plain: pl.Series | None = None, browser: pl.Series | None = None) -> pl.Series:
    """True for the requests the breach signatures must see. `plain`: `plain_request()` per row, and `browser`:
    `browser_agent()` per row, when the caller has them already (`windows.batch_tokens` gives both, from the distinct
    paths, queries and agents it reads anyway)."""
    if plain is None:
        # plain_request() and the browser test, each part on distinct values: the regular expressions cost per value.
        plain_paths = _per_value(frame, "path", plain_path())
        plain_queries = _per_value(frame, "query", plain_query())
        plain = plain_paths & plain_queries & frame.select(plain_method()).to_series()
    is_browser = _per_value(frame, "user_agent", browser_agent()) if browser is None else browser
    return (~(plain & is_browser)).alias("candidate")


def aggregate_hits(frame: pl.DataFrame, hits: pl.DataFrame) -> pl.DataFrame:
    """Signature `hits` (rows of `frame`) aggregated to `BREACH_SCHEMA`; one row per request and family counts once."""
    if hits.height == 0:
        return pl.DataFrame(schema=BREACH_SCHEMA)
    rows = frame.select("ts", "client", "status").with_row_index("row")
    # In the hits' order throughout: a family's first rule, its rule ids and matched text are then the same run after
    # run (an unordered unique and join picked them at random), whichever batches were matched together.
    joined = hits.unique(subset=["row", "family"], keep="first", maintain_order=True).join(
        rows, on="row", how="inner", maintain_order="left"
    )
    return (
        joined.group_by(
            "client", "family", "vector", pl.col("ts").dt.truncate("30m").alias("bucket"), maintain_order=True
        )
        .agg(
            pl.len().cast(pl.UInt32).alias("hits"),
            _redirects().sum().cast(pl.UInt32).alias("redirected"),
            pl.col("ts").min().alias("first_ts"),
            pl.col("ts").max().alias("last_ts"),
            pl.col("rule_id").unique(maintain_order=True).head(5).alias("rule_ids"),
            pl.col("matched").first(),
            pl.col("source").head(3).alias("evidence_source"),
            pl.col("line").head(3).alias("evidence_line"),
        )
        .cast(BREACH_SCHEMA)  # type: ignore[arg-type]
        .select(list(BREACH_SCHEMA))
    )


def _redirects() -> pl.Expr:
    status = pl.col("status")
    return ((status >= 300) & (status < 400)).fill_null(False)


@dataclass(frozen=True, slots=True)
class BreachGroup:
    """Clients of one kind active together: the making of one breach incident."""

    kind: IncidentKind
    start: datetime
    end: datetime
    clients: tuple[str, ...]
    vectors: tuple[Vector, ...]
    hits: int
    evidence: dict[str, tuple[tuple[str, int], ...]]
    reasons: dict[str, tuple[str, ...]]
    #: Per client, its signature hits per family, most hits first (`Finding.breach_hits`).
    breach_hits: dict[str, tuple[tuple[str, int], ...]]


def probing_clients(clients: pl.DataFrame) -> pl.DataFrame:
    """Clients (whole-log features) that probe without signature hits: many distinct paths, mostly 4xx."""
    return clients.filter(
        (pl.col("requests") >= 30) & (pl.col("error_share") >= 0.7) & (pl.col("path_diversity") >= 0.8)
    ).select(
        "client",
        pl.lit("probing").alias("family"),
        pl.lit(Vector.SCAN.value).alias("vector"),
        pl.col("requests").cast(pl.UInt32).alias("hits"),
        pl.lit(0, pl.UInt32).alias("redirected"),
        "first_ts",
        "last_ts",
        pl.col("evidence_source").list.head(3),
        pl.col("evidence_line").list.head(3),
    )


def payload_senders(hits: Sequence[pl.DataFrame], clients: pl.DataFrame, start: datetime, end: datetime) -> list[str]:
    """Clients most of whose requests between `start` and `end` (`clients`: client, requests, over that interval)
    carried a payload: signature hits (`BREACH_SCHEMA` rows of half hours overlapping the interval) of the families a
    request's own content trips (injections, traversal, code execution, sensitive files).

    They are breach actors, reported by this layer with their kind. A flood's judges see only their rate and shape (an
    address sending 100 sqlmap requests in a quiet night hour is fast, refers nothing and fetches no assets), and made
    them a second, one-member "flood" beside their exploit (scanner seed 106). Flood clients carry no payload: their
    requests are plain pages, searches and cache-busting queries. The `scanner` family is left out (it names a tool by
    its user agent, which a flood's own clients may share), and so are login and xmlrpc POSTs (the brute-force rules'
    business). The share is taken over the interval judged, not the whole log: a pool's address may flood one day
    and run the scan the next (hano-like seed 103). A request that trips two families counts twice, and a half hour
    at the interval's edge counts whole, so the sum is an upper bound of the payload requests. The margin is wide:
    on seeds 101-108 of the built-in scenarios, flood-only addresses, readers and robots carried no payload at all,
    exploit actors and hano-like's sqlmap-like scanners on 70% of their requests or more."""
    frames = [h.select("client", "family", "hits", "first_ts", "last_ts") for h in hits if h.height]
    if not frames or clients.height == 0:
        return []
    content = pl.concat(frames).filter(
        ~pl.col("family").is_in((*_BRUTE, "scanner")) & (pl.col("last_ts") >= start) & (pl.col("first_ts") <= end)
    )
    per_client = content.group_by("client").agg(pl.col("hits").cast(pl.Int64).sum().alias("payload_hits"))
    senders = clients.select("client", "requests").join(per_client, on="client", how="inner")
    chosen = senders.filter(pl.col("payload_hits") >= PAYLOAD_SENDER_SHARE * pl.col("requests"))
    return sorted(chosen.get_column("client").to_list())


#: A login fleet's tries mostly fail: at most this share of its POSTs were answered with a redirect (an accepted login).
FLEET_MAX_ACCEPTED_SHARE: Final = 0.5


def collective_bruteforce(breaches: pl.DataFrame, settings: DetectSettings) -> list[str]:
    """Members of login fleets: credential stuffing spread over a pool, so that no address reaches a per-address limit
    (a few POSTs each, fresh addresses every few minutes), judged together like the flood fleets.

    An *episode* is a run of POSTs to login forms and xmlrpc.php, by any clients, with no pause longer than
    `breach_gap_s`: a pool's addresses take turns, so the whole pool makes one episode however often it rotates. (Fixed
    half hours cut it: the addresses new in the last half hour, too few to make a crowd on their own, were missed.)
    An episode is a fleet when at least `min_fleet` clients took part, with two POSTs each on average, and most POSTs
    failed. A redirect is an accepted login (WordPress answers it 302, Drupal 303; a failed try gets the form again),
    and editors logging in mostly succeed. The fleet's members are the clients whose own POSTs mostly failed, so an
    editor who logs in during an attack is not one of them.
    """
    brute = breaches.filter(pl.col("family").is_in(_BRUTE))
    if brute.height == 0:
        return []
    gap = pl.duration(seconds=settings.breach_gap_s)
    episodes = brute.sort("first_ts").with_columns(
        ((pl.col("first_ts") - pl.col("last_ts").cum_max().shift()) > gap).fill_null(True).cum_sum().alias("episode")
    )
    members = episodes.group_by("episode", "client").agg(pl.col("hits").sum(), pl.col("redirected").sum())
    fleets = (
        members.group_by("episode")
        .agg(pl.len().alias("clients"), pl.col("hits").sum(), pl.col("redirected").sum())
        .filter(
            (pl.col("clients") >= settings.min_fleet)
            & (pl.col("hits") >= 2 * pl.col("clients"))
            & (pl.col("redirected") <= FLEET_MAX_ACCEPTED_SHARE * pl.col("hits"))
        )
    )
    failing = members.join(fleets.select("episode"), on="episode").filter(pl.col("redirected") * 2 < pl.col("hits"))
    return sorted(set(failing.get_column("client").to_list()))


_LOGIN_PATH: Final = r"(?:login|signin|sign-in|/admin(?:istrator)?/?$|/wp-admin|xmlrpc|/auth|/session)"


def login_posters(windows: pl.DataFrame) -> pl.DataFrame:
    """Clients' POSTs to login-like paths the signatures may not know, from their windows (WINDOW_SCHEMA rows), per
    client and half hour (like the signature hits, so that `collective_bruteforce` sees when each one POSTed)."""
    login = windows.filter(
        (pl.col("posts") >= 1)
        & (pl.col("posts") * 2 >= pl.col("requests"))
        & pl.col("template").fill_null("").str.contains(_LOGIN_PATH)
    )
    return (
        login.group_by("client", pl.col("window").dt.truncate("30m").alias("bucket"))
        .agg(
            pl.col("posts").sum().cast(pl.UInt32).alias("hits"),
            pl.min_horizontal("s3xx", "posts").sum().cast(pl.UInt32).alias("redirected"),
            pl.col("first_ts").min(),
            pl.col("last_ts").max(),
            pl.col("source").head(3).alias("evidence_source"),
            pl.col("line").head(3).alias("evidence_line"),
        )
        .select(
            "client",
            pl.lit("login").alias("family"),
            pl.lit(Vector.LOGIN_BRUTEFORCE.value).alias("vector"),
            "hits",
            "redirected",
            "first_ts",
            "last_ts",
            "evidence_source",
            "evidence_line",
        )
    )


def _client_kinds(breaches: pl.DataFrame, settings: DetectSettings) -> pl.DataFrame:
    brute = pl.col("hits").filter(pl.col("family").is_in(_BRUTE)).sum()
    probe = pl.col("hits").filter(pl.col("family").is_in((*_PROBE, "probing"))).sum()
    total = pl.col("hits").sum()
    collective = collective_bruteforce(breaches, settings)
    families = pl.col("family").filter(~pl.col("family").is_in(_BRUTE)).n_unique()
    gap = pl.duration(seconds=settings.breach_gap_s)
    # A brute-forcing client's login POSTs and its other hits make separate sessions: an address that brute-forces and
    # also sends payloads is in a brute force and in a scan or exploit, each with its own start and end (otherwise
    # the brute force would run on until the last payload).
    by = ("client", "brute_hits")
    sessions = (
        breaches.with_columns(
            (
                pl.col("family").is_in(_BRUTE)
                & (
                    pl.col("client").is_in(collective)
                    | (
                        pl.col("hits").filter(pl.col("family").is_in(_BRUTE)).sum().over("client")
                        >= settings.bruteforce_min
                    )
                )
            ).alias("brute_hits")
        )
        .sort("client", "first_ts", maintain_order=True)  # ties (one request, two families) in the hits' order
        .with_columns(
            ((pl.col("first_ts") - pl.col("last_ts").cum_max().shift().over(by)) > gap)
            .fill_null(True)
            .cum_sum()
            .over(by)
            .alias("session")
        )
    )
    files = pl.col("hits").filter(pl.col("family").is_in(("sensitive-file", "probing"))).sum()
    injection = pl.col("hits").filter(~pl.col("family").is_in((*_BRUTE, *_PROBE, "probing"))).sum()
    kinds = sessions.group_by(*by, "session").agg(
        files.alias("files"),
        injection.alias("injection"),
        brute.alias("brute"),
        probe.alias("probe"),
        total.alias("total"),
        families.alias("families"),
        pl.col("first_ts").min(),
        pl.col("last_ts").max(),
        pl.col("vector").unique().sort().alias("vectors"),
        pl.col("evidence_source").explode().head(5),
        pl.col("evidence_line").explode().head(5),
        pl.col("family").unique().sort().alias("family_names"),
        pl.struct("family", "hits").alias("family_hits"),
    )
    kind = (
        pl.when(
            ((pl.col("brute") >= settings.bruteforce_min) | pl.col("client").is_in(collective))
            & (pl.col("brute") * 2 >= pl.col("total"))
        )
        .then(pl.lit(IncidentKind.BRUTEFORCE.value))
        .when(pl.col("probe") > 0)
        .then(pl.lit(IncidentKind.SCAN.value))
        .when(pl.col("total") > pl.col("brute"))
        .then(pl.lit(IncidentKind.EXPLOIT.value))
        .otherwise(pl.lit(None, pl.String))
    )
    return kinds.with_columns(kind.alias("kind")).drop_nulls("kind").drop("brute_hits").sort("first_ts", "client")


def breach_groups(breaches: pl.DataFrame, settings: DetectSettings) -> list[BreachGroup]:
    """Breach incidents' makings from aggregated hits (`BREACH_SCHEMA` rows, plus `probing_clients` rows)."""
    if breaches.height == 0:
        return []
    kinds = _client_kinds(breaches, settings)
    gap = timedelta(seconds=settings.breach_gap_s)
    groups: list[BreachGroup] = []
    # Brute forces apart; scans and exploits together, as clients active together are one actor's tools (a scanner
    # and the exploit that follows): the group's kind comes from all its hits. A loop over clients with hits.
    brute = kinds.get_column("kind") == IncidentKind.BRUTEFORCE.value
    for rows in (kinds.filter(brute), kinds.filter(~brute)):
        open_rows: list[dict[str, object]] = []
        end: datetime | None = None
        for row in rows.sort("first_ts").iter_rows(named=True):
            if end is not None and row["first_ts"] > end + gap:
                groups.append(_group(_kind_of(open_rows), open_rows))
                open_rows, end = [], None
            open_rows.append(row)
            end = row["last_ts"] if end is None else max(end, row["last_ts"])
        if open_rows:
            groups.append(_group(_kind_of(open_rows), open_rows))
    return sorted(groups, key=lambda g: g.start)


def _group(kind: IncidentKind, rows: list[dict[str, object]]) -> BreachGroup:
    vectors: set[Vector] = set()
    evidence: dict[str, tuple[tuple[str, int], ...]] = {}
    reasons: dict[str, tuple[str, ...]] = {}
    breach_hits: dict[str, tuple[tuple[str, int], ...]] = {}
    for row in rows:
        client = str(row["client"])
        found = [Vector(v) for v in row["vectors"]]  # type: ignore[attr-defined]
        vectors.update(found)
        sources, lines = row["evidence_source"], row["evidence_line"]
        evidence[client] = tuple(zip(sources, lines, strict=False))  # type: ignore[call-overload]
        families = ", ".join(row["family_names"])  # type: ignore[arg-type]
        reasons[client] = (f"{row['total']} breach-attempt signature hits ({families})",)
        breach_hits[client] = family_totals(row["family_hits"])  # type: ignore[arg-type]
    if kind is IncidentKind.BRUTEFORCE:
        vectors &= {Vector.LOGIN_BRUTEFORCE, Vector.XMLRPC_ABUSE}
    return BreachGroup(
        kind=kind,
        start=min(_time(r["first_ts"]) for r in rows),
        end=max(_time(r["last_ts"]) for r in rows),
        clients=tuple(str(r["client"]) for r in rows),
        vectors=tuple(sorted(vectors, key=lambda v: list(Vector).index(v))),
        hits=sum(int(r["total"]) for r in rows),  # type: ignore[call-overload]
        evidence=evidence,
        reasons=reasons,
        breach_hits=breach_hits,
    )


def family_totals(family_hits: Iterable[Mapping[str, object]]) -> tuple[tuple[str, int], ...]:
    """(family, hits) pairs summed per family, most hits first (ties by name), from `{"family", "hits"}` rows."""
    totals: Counter[str] = Counter()
    for item in family_hits:
        totals[str(item["family"])] += int(str(item["hits"]))
    return tuple(sorted(totals.items(), key=lambda pair: (-pair[1], pair[0])))


def _time(value: object) -> datetime:
    assert isinstance(value, datetime)
    return value
