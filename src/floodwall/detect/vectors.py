"""CONTRACT vectors for attackers and incidents, from what the attackers' requests looked like.

Each attacker gets every vector its traffic shows; an incident lists a vector when attackers carrying it sent at
least `INCIDENT_SHARE` of its attack requests, strongest first.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from floodwall.model import Vector

__all__ = ["INCIDENT_SHARE", "attacker_vectors", "incident_vectors"]

INCIDENT_SHARE: Final = 0.1

_SEARCH: Final = r"(?:search|/s/|\{word\}/?$)"
_SEARCH_KEYS: Final = r"(?:^|,)(?:s|q|query|search|keyword|term)(?:,|$)"
_LOGIN: Final = r"(?:wp-login|/user/login|/login|/signin|/administrator|admin/session)"
_XMLRPC: Final = r"xmlrpc"
_HEAVY: Final = r"(?:/wp-json|/api|graphql|/feed|admin-ajax|/tag/|/category/|/page/0)"
# Pagination by query string (`/archive.html?page=4711`, `/?paged=900`): deep listing pages are built afresh for
# every request, as `/page/4711/` is.
_PAGINATION_KEYS: Final = r"(?:^|,)(?:page|paged|pg|offset|start)(?:,|$)"
_MIXED_404_SHARE: Final = 0.25


def attacker_vectors(clients: pl.DataFrame) -> pl.DataFrame:
    """`clients` (client features of attackers) with a `vectors` list column."""
    template = pl.col("template").fill_null("")
    keys = pl.col("query_keys").fill_null("")
    post_heavy = pl.col("posts") >= 0.5 * pl.col("requests")
    heavy = template.str.contains(_HEAVY) | keys.str.contains(_PAGINATION_KEYS)
    # Random paths answered 404: mostly so, or a good part of a mixed flood (a proxy pool that sends a third of its
    # requests to random paths and the rest to the site's pages) whose 404s are each a path of their own. Pagination
    # floods also bring unique 404s; they are heavy pages.
    errors, diversity = pl.col("error_share"), pl.col("path_diversity")
    random_path = ((errors >= 0.5) & (diversity >= 0.8)) | (
        (errors >= _MIXED_404_SHARE) & (diversity >= 0.8 * errors) & ~heavy
    )
    checks: list[tuple[Vector, pl.Expr]] = [
        (Vector.CACHE_BUST, pl.col("cache_bust_share") >= 0.3),
        (Vector.SEARCH_FLOOD, template.str.contains(_SEARCH) | keys.str.contains(_SEARCH_KEYS)),
        (Vector.RANDOM_PATH, random_path),
        (Vector.LOGIN_BRUTEFORCE, post_heavy & template.str.contains(_LOGIN)),
        (Vector.XMLRPC_ABUSE, template.str.contains(_XMLRPC)),
        (Vector.POST_FLOOD, post_heavy & ~template.str.contains(_LOGIN) & ~template.str.contains(_XMLRPC)),
        (Vector.HEAVY_PAGE, heavy & ~post_heavy),
    ]
    flags = [pl.when(when.fill_null(False)).then(pl.lit(vector.value)) for vector, when in checks]
    get_flood = pl.when(~post_heavy.fill_null(False)).then(pl.lit(Vector.GET_FLOOD.value))
    return clients.with_columns(pl.concat_list([get_flood, *flags]).list.drop_nulls().alias("vectors"))


def incident_vectors(attackers: pl.DataFrame) -> tuple[Vector, ...]:
    """The vectors of an incident from its attackers (`requests` and `vectors` columns), by attack volume."""
    if attackers.height == 0:
        return ()
    total = float(attackers.get_column("requests").sum())
    volume = (
        attackers.select("requests", "vectors")
        .explode("vectors")
        .drop_nulls("vectors")
        .group_by("vectors")
        .agg(pl.col("requests").sum())
        .filter(pl.col("requests") >= INCIDENT_SHARE * total)
        .sort("requests", "vectors", descending=[True, False])  # a tie in volume (one fleet, two vectors) by name
    )
    return tuple(Vector(v) for v in volume.get_column("vectors").to_list())
