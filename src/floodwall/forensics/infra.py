"""Infrastructure: attacking address to prefix to network (ASN and name) to country, with counts per phase; hosting
or access network where the data allows; X-Forwarded-For values the attack leaked."""

from __future__ import annotations

from typing import Any, Final, Protocol

import polars as pl

from floodwall.detect import DetectionResult
from floodwall.forensics.collect import Collected
from floodwall.logs.frame import client_networks

__all__ = ["GeoSource", "build_infrastructure", "network_facts"]

# IPFire's database has no hosting flag for most networks; a network's registered name often says what it is.
_HOSTING: Final = (
    r"(?i)host|cloud|server|data ?cent|datacenter|colo|vps|contabo|hetzner|ovh|digitalocean|linode|akamai|vultr|"
    r"choopa|leaseweb|m247|amazon|aws|google|microsoft|azure|oracle|alibaba|tencent|scaleway|ionos|hostinger|"
    r"upcloud|kamatera|psychz|quadranet|cogent|frantech|buyvm|servers|dedicated|virtual"
)
_ACCESS: Final = (
    r"(?i)telecom|telekom|mobile|broadband|cable|wireless|cellular|internet service|fiber|fibre|dsl|vodafone|"
    r"orange|telefonica|comcast|verizon|airtel|jio|viettel|telkom|\btelco\b|communications|net(work)?s? ltd|isp"
)


class GeoSource(Protocol):
    """What `floodwall.geo.GeoLookup` offers that this module uses."""

    def lookup(self, addresses: pl.Series) -> pl.DataFrame: ...


def network_facts(addresses: pl.Series, geo: GeoSource | None) -> pl.DataFrame:
    """client, net (/24 or /48), prefix, asn, as_name, country, network_kind per address."""
    clients = addresses.cast(pl.String).unique().sort().rename("client")
    base = pl.DataFrame({"client": clients, "net": client_networks(clients)})
    if geo is None or clients.len() == 0:
        return base.with_columns(
            pl.lit(None, pl.String).alias("prefix"),
            pl.lit(None, pl.UInt32).alias("asn"),
            pl.lit(None, pl.String).alias("as_name"),
            pl.lit(None, pl.String).alias("country"),
            pl.lit("unknown").alias("network_kind"),
        )
    facts = geo.lookup(clients).select(
        pl.col("address").alias("client"), "prefix", "asn", "as_name", "country", "hosting"
    )
    name = pl.col("as_name").fill_null("")
    kind = (
        pl.when(pl.col("hosting").fill_null(False) | name.str.contains(_HOSTING))
        .then(pl.lit("hosting"))
        .when(name.str.contains(_ACCESS))
        .then(pl.lit("access"))
        .otherwise(pl.lit("unknown"))
        .alias("network_kind")
    )
    return base.join(facts.with_columns(kind).drop("hosting"), on="client", how="left")


def _label(asn: Any, name: Any, country: Any) -> str:
    if asn is None:
        return "unknown network"
    return f"AS{asn} {name or '(no name)'}" + (f" ({country})" if country else "")


def build_infrastructure(
    detection: DetectionResult, collected: Collected, geo: GeoSource | None, database: dict[str, Any] | None
) -> tuple[dict[str, Any], pl.DataFrame, pl.DataFrame]:
    """The infrastructure section, and the frames the charts draw (per network, per country)."""
    per_client = collected.attackers.group_by("client").agg(pl.col("requests").sum())
    if per_client.height == 0:
        addresses = [a for a in detection.attacker_addresses if "/" not in a]
        per_client = pl.DataFrame(
            {"client": addresses, "requests": [0] * len(addresses)}, schema={"client": pl.String, "requests": pl.Int64}
        )
    facts = network_facts(per_client.get_column("client"), geo).join(per_client, on="client", how="left")
    networks = (
        facts.group_by("asn", "as_name", "country", "network_kind")
        .agg(
            pl.len().alias("addresses"),
            pl.col("requests").sum(),
            pl.col("prefix").drop_nulls().unique().sort().alias("prefixes_list"),
            pl.col("net").n_unique().alias("nets"),
        )
        .sort(["addresses", "requests", "asn"], descending=[True, True, False], nulls_last=True)
    )
    countries = (
        facts.group_by("country")
        .agg(pl.len().alias("addresses"), pl.col("requests").sum())
        .sort(["addresses", "country"], descending=[True, False], nulls_last=True)
    )
    phases = (
        collected.attackers.group_by("incident_id", "phase", "client")
        .agg(pl.col("requests").sum())
        .join(facts.select("client", "asn", "as_name", "country"), on="client", how="left")
    )
    per_phase = []
    for (incident_id, phase), part in phases.group_by("incident_id", "phase", maintain_order=True):
        top = (
            part.group_by("asn", "as_name", "country")
            .agg(pl.len().alias("addresses"), pl.col("requests").sum())
            .sort(["addresses", "asn"], descending=[True, False], nulls_last=True)
        )
        per_phase.append(
            {
                "incident_id": incident_id,
                "phase": phase,
                "addresses": part.height,
                "networks": top.height,
                "countries": part.get_column("country").drop_nulls().n_unique(),
                "top": [
                    f"{_label(r['asn'], r['as_name'], r['country'])}: {r['addresses']}"
                    for r in top.head(3).iter_rows(named=True)
                ],
            }
        )
    order = {(i.id, p.label): n for i in detection.incidents for n, p in enumerate(i.phases)}  # in time order
    per_phase.sort(key=lambda p: (str(p["incident_id"]), order.get((p["incident_id"], p["phase"]), 10**6)))
    kinds = facts.group_by("network_kind").agg(pl.len().alias("n"))
    kind_counts = {str(k): int(n) for k, n in kinds.iter_rows()}
    forwarded = collected.forwarded.group_by("client", "forwarded_for").agg(pl.col("requests").sum())
    address_rows = facts.sort("requests", descending=True, nulls_last=True)
    section = {
        "database": database,
        "addresses_total": facts.height,
        "prefixes": facts.get_column("net").n_unique(),
        "kinds": kind_counts,
        "hosting_share": round(kind_counts.get("hosting", 0) / facts.height, 3) if facts.height else None,
        "networks": [
            {
                "asn": r["asn"],
                "name": r["as_name"],
                "country": r["country"],
                "kind": r["network_kind"],
                "addresses": int(r["addresses"]),
                "requests": int(r["requests"] or 0),
                "nets": int(r["nets"]),
                "prefixes_list": list(r["prefixes_list"]),
            }
            for r in networks.head(25).iter_rows(named=True)
        ],
        "networks_total": networks.height,
        "countries": [
            {"country": r["country"], "addresses": int(r["addresses"]), "requests": int(r["requests"] or 0)}
            for r in countries.iter_rows(named=True)
        ],
        "per_phase": per_phase,
        "xff": {
            "requests": int(forwarded.get_column("requests").sum() or 0),
            "clients": forwarded.get_column("client").n_unique(),
            "top_clients": [
                {"client": r["client"], "forwarded_for": r["forwarded_for"], "requests": int(r["requests"])}
                for r in forwarded.sort(["requests", "client"], descending=[True, False]).head(20).iter_rows(named=True)
            ],
        },
        "top_clients": [
            {
                "client": r["client"],
                "prefix": r["prefix"] or r["net"],
                "network": _label(r["asn"], r["as_name"], r["country"]),
                "kind": r["network_kind"],
                "requests": int(r["requests"] or 0),
            }
            for r in address_rows.head(50).iter_rows(named=True)
        ],
    }
    top = networks.head(15)
    labels = [_label(a, n, c) for a, n, c in top.select("asn", "as_name", "country").iter_rows()]
    chart_networks = top.select("country", "asn", "addresses", "requests").with_columns(
        pl.Series("label", labels, dtype=pl.String)
    )
    return section, chart_networks, countries
