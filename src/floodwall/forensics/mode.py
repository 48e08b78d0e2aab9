"""Mode: the vectors with real sample requests as evidence, user-agent families and rotation, query-string schemes,
and the markers (strings that recur in attack traffic and not in normal traffic, verbatim, lower-cased)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import polars as pl

from floodwall.detect import DetectionResult
from floodwall.forensics.collect import Collected
from floodwall.forensics.scope import percentiles
from floodwall.forensics.shapes import KIND_VECTOR
from floodwall.forensics.timeline import iso
from floodwall.model import IncidentKind

__all__ = ["build_mode", "find_markers", "sample_of"]

_MARKER_SHARE: Final = 0.002  # a marker is carried by at least this share of the attack requests...
_MARKER_MIN: Final = 5  # ...and by at least this many
_NORMAL_RATIO: Final = 0.05  # normal traffic may carry it at most this often per attack request (missed attackers)
_VECTOR_KINDS: Final = {v: [k for k, kv in KIND_VECTOR.items() if kv == v] for v in set(KIND_VECTOR.values())}
_VECTOR_KINDS["heavy-page"] = ["page"]
_VECTOR_KINDS["get-flood"] = ["page", "asset"]


def sample_of(row: Mapping[str, Any], hashes: Mapping[str, str | None]) -> dict[str, Any]:
    """One request as evidence: its request line, answer, time, and where it is (input, line, the input's hash)."""
    target = str(row.get("path") or "")
    if row.get("query") is not None:
        target += "?" + str(row["query"])
    request = " ".join(x for x in (row.get("method"), target, row.get("protocol")) if x)
    source = str(row.get("source") or "")
    return {
        "request": request,
        "status": row.get("status"),
        "user_agent": row.get("user_agent"),
        "utc": iso(row.get("ts")) if row.get("ts") is not None else iso(row.get("first_ts")),
        "source": source,
        "line": row.get("line"),
        "sha256": hashes.get(source),
        "client": row.get("client"),
    }


def _vectors(detection: DetectionResult, collected: Collected, hashes: Mapping[str, str | None]) -> list[Any]:
    by_kind = collected.attackers.group_by("kind").agg(pl.col("requests").sum())
    counts = {str(k): int(n) for k, n in by_kind.iter_rows()}
    out = []
    names = sorted({v.value for i in detection.incidents if i.kind is IncidentKind.FLOOD for v in i.vectors})
    for vector in names:
        kinds = _VECTOR_KINDS.get(vector, [])
        rows = collected.samples.filter(pl.col("kind").is_in(kinds)).sort(pl.col("status").cast(pl.Int64), "ts")
        out.append(
            {
                "vector": vector,
                "incidents": [i.id for i in detection.incidents if any(v.value == vector for v in i.vectors)],
                "requests": sum(counts.get(k, 0) for k in kinds) if vector != "heavy-page" else None,
                "samples": [sample_of(r, hashes) for r in rows.head(3).iter_rows(named=True)],
            }
        )
    return out


def find_markers(collected: Collected, attack_total: int) -> list[dict[str, Any]]:
    """Strings recurring in the attack and (almost) absent elsewhere, most frequent first."""
    candidates = collected.candidates
    if candidates.height == 0:
        return []
    attackers = max(1, collected.attackers.get_column("client").n_unique())
    grouped = (
        candidates.sort("first_ts")
        .group_by("kind", "value")
        .agg(
            pl.col("requests").sum(),
            pl.col("clients").max(),
            pl.col("first_ts").min(),
            pl.col("last_ts").max(),
            pl.col("source").first(),
            pl.col("line").first(),
        )
        .join(collected.normal_candidates.rename({"requests": "normal"}), on=["kind", "value"], how="left")
        .with_columns(pl.col("normal").fill_null(0))
    )
    floor = max(_MARKER_MIN, int(_MARKER_SHARE * attack_total))
    chosen = grouped.filter(
        (pl.col("requests") >= floor)
        & (pl.col("clients") >= min(2, attackers))
        & (pl.col("normal") <= _NORMAL_RATIO * pl.col("requests"))
    ).sort(["requests", "value"], descending=[True, False])
    owners = (
        candidates.join(chosen.select("kind", "value"), on=["kind", "value"], how="semi")
        .group_by("kind", "value")
        .agg(pl.col("incident_id").unique().sort().alias("incidents"))
    )
    chosen = chosen.join(owners, on=["kind", "value"], how="left", maintain_order="left")
    return [
        {
            "marker": r["value"],
            "kind": r["kind"],
            "requests": int(r["requests"]),
            "addresses": int(r["clients"]),
            "normal_requests": int(r["normal"]),
            "first_seen": iso(r["first_ts"]),
            "last_seen": iso(r["last_ts"]),
            "evidence": {"source": r["source"], "line": r["line"]},
            "incidents": list(r["incidents"] or []),
        }
        for r in chosen.head(12).iter_rows(named=True)
    ]


def _agents(collected: Collected) -> dict[str, Any]:
    agents = collected.agents
    families = (
        agents.group_by("family")
        .agg(pl.col("requests").sum(), pl.col("client").n_unique().alias("addresses"))
        .join(collected.normal_families.rename({"requests": "normal_requests"}), on="family", how="left")
        .with_columns(pl.col("normal_requests").fill_null(0))
        .sort(["requests", "family"], descending=[True, False])
    )
    per_client = agents.group_by("client").agg(pl.col("user_agent").n_unique().alias("agents"))
    top = (
        agents.group_by("user_agent")
        .agg(pl.col("requests").sum(), pl.col("client").n_unique().alias("addresses"))
        .sort(["requests", "user_agent"], descending=[True, False], nulls_last=True)
    )
    return {
        "distinct": agents.get_column("user_agent").n_unique(),
        "per_address": percentiles(per_client.get_column("agents")),
        "families": [
            {k: (int(v) if isinstance(v, int) else v) for k, v in r.items()}
            for r in families.head(12).iter_rows(named=True)
        ],
        "top": [
            {"user_agent": r["user_agent"], "requests": int(r["requests"]), "addresses": int(r["addresses"])}
            for r in top.head(10).iter_rows(named=True)
        ],
    }


def _schemes(collected: Collected) -> list[dict[str, Any]]:
    schemes = (
        collected.schemes.group_by("scheme")
        .agg(pl.col("requests").sum(), pl.col("client").n_unique().alias("addresses"))
        .join(collected.normal_schemes.rename({"requests": "normal_requests"}), on="scheme", how="left")
        .with_columns(pl.col("normal_requests").fill_null(0))
        .sort(["requests", "scheme"], descending=[True, False])
    )
    return [
        {
            "scheme": r["scheme"],
            "requests": int(r["requests"]),
            "addresses": int(r["addresses"]),
            "normal_requests": int(r["normal_requests"]),
        }
        for r in schemes.head(10).iter_rows(named=True)
    ]


def build_mode(
    detection: DetectionResult, collected: Collected, hashes: Mapping[str, str | None], attack_total: int
) -> dict[str, Any]:
    """The mode section."""
    return {
        "vectors": _vectors(detection, collected, hashes),
        "user_agents": _agents(collected),
        "query_schemes": _schemes(collected),
        "query_schemes_sampled": collected.scheme_step > 1,
        "markers": find_markers(collected, attack_total),
        "marker_threshold": max(_MARKER_MIN, int(_MARKER_SHARE * attack_total)),
    }
