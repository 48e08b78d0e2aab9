"""The forensic pass's queries over one batch: each table's aggregate as a lazy query over the marked rows
(`Collector._marked`: request kind, minute, incident or none), named after the `Collector` table it adds to. The
collector runs them together (`pl.collect_all`) and merges their results across batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from floodwall.forensics.shapes import (
    client_hash,
    grouped,
    marker_candidate_plan,
    scheme_counts,
    seen_columns,
    ua_family,
    with_query_scheme,
)

__all__ = ["SAMPLE_COLUMNS", "STATUS", "counts", "plan_all", "plan_attack", "plan_normal", "plan_shared"]

_SCHEME_SAMPLE: Final = 50_000  # query rows per batch given a scheme; fewer undercount rare schemes' addresses
SAMPLE_COLUMNS: Final = (
    "ts", "client", "source", "line", "method", "path", "query", "protocol", "status", "user_agent", "referer",
    "host", "forwarded_for", "incident_id", "kind",
)  # fmt: skip
STATUS: Final = {
    "s2xx": (pl.col("status") // 100 == 2),
    "s3xx": (pl.col("status") // 100 == 3),
    "s4xx": (pl.col("status") // 100 == 4) & (pl.col("status") != 499),
    "s5xx": (pl.col("status") // 100 == 5),
    "s499": (pl.col("status") == 499),
}
_HIT: Final = ("HIT", "STALE", "UPDATING", "REVALIDATED")
_NOT_FOUND: Final = pl.lit("(paths answered 404)")  # a random-path flood's paths, counted as one
#: The columns whose marker candidates come from `plan_shared`'s groupings, and from which.
_SHARED_VALUES: Final = (("agents", "user_agent"), ("paths", "path"))


def counts() -> list[pl.Expr]:
    """Requests, and answers per status class."""
    return [pl.len().cast(pl.Int64).alias("requests"), *(e.sum().cast(pl.Int64).alias(n) for n, e in STATUS.items())]


def first_three(attack: pl.LazyFrame) -> pl.LazyFrame:
    """The first three rows per (incident, kind, status class), found by row number: the group-by moves one integer
    column, and only the chosen rows' strings are gathered (a group-by `head` copied every column of every row)."""
    numbered = attack.with_row_index("_n")
    chosen = (
        numbered.group_by("incident_id", "kind", (pl.col("status") // 100).alias("_class"))
        .agg(pl.col("_n").head(3))
        .explode("_n")
        .select("_n")
    )
    return numbered.join(chosen, on="_n", how="semi").select(list(SAMPLE_COLUMNS))


def plan_all(rows: pl.LazyFrame, phases: pl.DataFrame) -> list[tuple[str, pl.LazyFrame]]:
    """Every row's aggregates: per minute, and which clients each phase saw."""
    cache = pl.col("cache_status").str.to_uppercase()
    plans = [
        (
            "minutes",
            rows.group_by(pl.col("minute").set_sorted()).agg(  # rows in time order: sorted runs, no hashing
                *counts(),
                pl.col("request_time").sum().alias("rt_sum"),
                pl.col("request_time").count().cast(pl.Int64).alias("rt_n"),
                pl.col("request_time").max().alias("rt_max"),
                cache.is_in(list(_HIT)).sum().cast(pl.Int64).alias("cache_hit"),
                (cache.is_not_null() & ~cache.is_in(list(_HIT))).sum().cast(pl.Int64).alias("cache_miss"),
                pl.col("attack").sum().cast(pl.Int64).alias("attack"),
            ),
        )
    ]
    if phases.height:
        phased = (
            rows.select("ts", "client", client_hash(rows), "attack")
            .join_asof(phases.lazy(), left_on="ts", right_on="phase_start", strategy="backward")
            .filter(pl.col("ts") <= pl.col("phase_end"))
        )
        plans.append(("phase_clients", grouped(phased, ["phase_key"], ["client"], [pl.col("attack").max()])))
    return plans


def plan_shared(attack: pl.LazyFrame) -> dict[str, pl.LazyFrame]:
    """The attack rows' groupings that several tables read, which the collector runs first and once each
    (`pl.collect_all` ran a shared group-by once per query that read it):

    - "agents": per (incident, client, user agent) the requests, first and last time and the first request's
      source and line, and the agent's family: the user-agent table, the fingerprints' agents and the user-agent
      marker candidates;
    - "paths": per (incident, host, path) the same and the clients (hashed), the 404s of a random-path flood
      counted as one path (`_random` true): the attacked URLs and the path-word marker candidates."""
    firsts = seen_columns()
    agents = grouped(attack, ["incident_id"], ["client", "user_agent"], firsts)
    # The family per distinct agent (a flood has a few dozen), not per (incident, client, agent) row.
    families = agents.select(pl.col("user_agent").unique()).with_columns(ua_family().alias("family"))
    # A random-path flood makes every path unique: its 404s are counted as one row, and their words are not
    # marker candidates (they would all be one-offs).
    random_path = pl.col("kind") == "notfound"
    # Grouped by the path's hash, the random ones' all as one (0); their text is set once per group, not per row.
    paths = (
        attack.group_by(
            "incident_id",
            "host",
            random_path.alias("_random"),
            pl.when(random_path).then(pl.lit(0, dtype=pl.UInt64)).otherwise(pl.col("path").hash()).alias("_hash"),
        )
        .agg(pl.col("path").first(), *firsts, client_hash(attack).unique().alias("clients"))
        .drop("_hash")
        .with_columns(pl.when(pl.col("_random")).then(_NOT_FOUND).otherwise(pl.col("path")).alias("path"))
    )
    return {
        "agents": agents.join(families, on="user_agent", how="left", nulls_equal=True),
        "paths": paths,
    }


def _distinct_values(shared: pl.DataFrame, column: str) -> pl.LazyFrame:
    """`shared` ("agents" or "paths" of `plan_shared`) per (incident, `column`), as `marker_candidate_plan` groups a
    column before its string work; clients as lists of hashes (or the one client of an agents row)."""
    first = ("first_ts", "source", "line")
    clients = pl.col("clients").explode().unique() if column == "path" else pl.col("client").hash().unique()
    return (
        shared.lazy()
        .filter(pl.col(column).is_not_null() & (~pl.col("_random") if column == "path" else pl.lit(True)))
        .group_by("incident_id", pl.col(column).hash().alias("_value"))
        .agg(
            pl.col(column).first(),
            pl.col("requests").sum(),
            pl.col("first_ts").min(),
            pl.col("last_ts").max(),
            pl.col("source").sort_by(*first).first(),
            pl.col("line").sort_by(*first).first(),
            clients.alias("clients"),
        )
        .drop("_value")
    )


def plan_attack(
    attack: pl.LazyFrame,
    phases: pl.DataFrame,
    query_rows: int,
    shared: dict[str, pl.DataFrame],
    query_keys: Sequence[str] | None = None,
) -> tuple[list[tuple[str, pl.LazyFrame]], int]:
    """The attack rows' aggregates, and the step query schemes were sampled with (1: every query). `shared` is
    `plan_shared(attack)`, run. `query_keys`, when given, are the only query keys counted as marker candidates (see
    `Collector._watched_query_keys`)."""
    phased = attack.join_asof(
        phases.lazy().select("incident_id", "phase", "phase_start", "phase_end"),
        left_on="ts",
        right_on="phase_start",
        by="incident_id",
        strategy="backward",
        check_sortedness=False,  # rows sorted by ts in `_marked`; the check cannot see that per group
    ).with_columns(
        pl.when(pl.col("ts") <= pl.col("phase_end")).then(pl.col("phase")).otherwise(pl.lit("pause")).alias("phase")
    )
    # Schemes describe; past _SCHEME_SAMPLE query rows a batch is sampled evenly and the counts scaled.
    step = max(1, query_rows // _SCHEME_SAMPLE)
    agents, paths = shared["agents"].lazy(), shared["paths"].lazy()
    attack_n = pl.len().cast(pl.Int64).alias("attack")
    plans = [
        # The rows are in time order (`Collector._marked`): grouped by their second alone, Polars cuts the sorted
        # column into runs (a thirtieth of grouping by second and kind, which a flood keeps apart second by second);
        # the kinds are counted per minute straight away.
        ("attack_seconds", attack.group_by(pl.col("second").set_sorted()).agg(attack_n)),
        ("attack_kinds", attack.group_by("minute", "kind").agg(attack_n)),
        (
            "attackers",
            grouped(
                phased,
                ["incident_id", "phase", "kind"],
                ["client"],
                [
                    *counts(),
                    pl.col("cacheable_plain").sum().cast(pl.Int64),
                    pl.col("cacheable_any").sum().cast(pl.Int64),
                    pl.col("bytes").sum().cast(pl.Int64),
                    pl.col("minute").n_unique().cast(pl.Int64).alias("minutes"),
                    pl.col("ts").min().alias("first_ts"),
                    pl.col("ts").max().alias("last_ts"),
                ],
            ),
        ),
        ("samples", first_three(attack)),
        ("agents", agents.select("incident_id", "client", "user_agent", "family", "requests")),
        (
            "schemes",
            scheme_counts(attack.filter(pl.col("query").is_not_null()).gather_every(step), ["incident_id"], step),
        ),
        (
            "candidates",
            marker_candidate_plan(
                attack,
                keys=("incident_id",),
                count_clients=True,
                per_row_queries=True,
                query_keys=query_keys,
                grouped_values={column: _distinct_values(shared[name], column) for name, column in _SHARED_VALUES},
            ),
        ),
        ("paths", paths.select("incident_id", "host", "path", "requests")),
        (
            "breach",
            attack.filter(pl.col("incident_kind") != "flood")
            .group_by("incident_id", "client", "method", "path", "status")
            .agg(
                pl.len().cast(pl.Int64).alias("requests"),
                pl.col("ts").min().alias("first_ts"),
                pl.col("ts").max().alias("last_ts"),
                pl.col("source").first(),
                pl.col("line").first(),
                pl.col("query").first(),
            ),
        ),
        (
            "forwarded",
            attack.filter(pl.col("forwarded_for").is_not_null())
            .group_by("incident_id", "client", "forwarded_for")
            .agg(pl.len().cast(pl.Int64).alias("requests")),
        ),
    ]
    return plans, step


def plan_normal(normal: pl.LazyFrame) -> list[tuple[str, pl.LazyFrame]]:
    """The other rows' aggregates: what normal traffic looks like, for the contrast."""
    agents = grouped(normal, [], ["user_agent"], [pl.len().cast(pl.Int64).alias("requests")])
    return [
        ("normal_families", agents.group_by(ua_family().alias("family")).agg(pl.col("requests").sum())),
        (
            # Readers' query strings repeat (ver=, page=, utm_source=): each distinct one is shaped once.
            "normal_schemes",
            with_query_scheme(
                grouped(
                    normal.filter(pl.col("query").is_not_null()),
                    [],
                    ["query"],
                    [pl.len().cast(pl.Int64).alias("requests")],
                )
            )
            .group_by("scheme")
            .agg(pl.col("requests").sum()),
        ),
        ("normal_candidates", marker_candidate_plan(normal, keys=()).select("kind", "value", "requests")),
        (
            "readers",
            grouped(
                normal,
                [],
                ["client"],
                [
                    pl.len().cast(pl.Int64).alias("requests"),
                    pl.col("minute").n_unique().cast(pl.Int64).alias("minutes"),
                ],
            ),
        ),
    ]
