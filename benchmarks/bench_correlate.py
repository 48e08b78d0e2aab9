"""`correlate` at coalition scale: 1,000 incidents from 100 outlets, end to end (read, score every pair, group,
write campaigns.json, campaigns.html and campaigns.stix.json). The target is under a minute.

    .venv/bin/python benchmarks/bench_correlate.py [--incidents 1000] [--outlets 100] [--runs 3] [--seed 1]
    .venv/bin/python benchmarks/bench_correlate.py --simulated hano-like coalition --seeds 101 102 103

With `--simulated`, it runs instead the whole chain on simulated scenarios (simulate, analyze every site with one
coalition key, correlate the bundles, score against the truth) and prints per scenario and seed the adjusted Rand
index, pairwise precision and recall, and the links between two different actors' incidents (there must be none).

Bundles are synthetic, generated here: 80 actors with pools of 300-3,000 addresses on shared hosting and
residential networks, each incident reusing 5-60% of its addresses from the actor's earlier ones, actors' own
user agents and query habits on top of common browser families; a fifth of the incidents are strangers acting once.
Prints the median wall time of the runs, the machine, and how well the campaigns match the generator's truth.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from math import comb
from pathlib import Path
from typing import Any

import numpy as np

from floodwall.correlate import correlate
from floodwall.forensics.bundle import SCHEMA_VERSION, hash_address, key_fingerprint

KEY = b"benchmark coalition key, 32 byte"
START = datetime(2024, 1, 1, tzinfo=UTC)
HOSTING = [(14061, "DIGITALOCEAN-ASN", "US"), (16276, "OVH SAS", "FR"), (24940, "Hetzner Online GmbH", "DE")]
HOSTING += [(44477, "STARK INDUSTRIES SOLUTIONS LTD", "GB"), (20473, "AS-CHOOPA", "US"), (63949, "Akamai Linode", "US")]
RESIDENTIAL = [(64500 + k, f"ISP-{k}", "BR") for k in range(40)]
FAMILIES = ["chrome/windows", "chrome/android", "safari/iphone", "firefox/windows", "edge/windows", "python/-"]
VECTORS = [
    ["get-flood", "cache-bust"],
    ["get-flood", "random-path"],
    ["search-flood"],
    ["heavy-page"],
    ["scan", "sqli"],
]


def _addresses(rng: np.random.Generator, count: int) -> list[str]:
    values = rng.integers(0x0B000000, 0xDF000000, count)
    return [str(ipaddress.IPv4Address(int(v))) for v in np.unique(values)]


def generate(incidents: int, outlets: int, seed: int) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """Per outlet its incidents (bundle documents' entries), and the actor of every incident."""
    rng = np.random.default_rng(seed)
    sites = [f"outlet-{k:03d}" for k in range(outlets)]
    per_site: dict[str, list[dict[str, Any]]] = {s: [] for s in sites}
    truth: dict[str, str] = {}
    actors = 80
    weights = rng.pareto(1.2, actors) + 1
    owners = list(rng.choice(actors, int(incidents * 0.8), p=weights / weights.sum())) + [
        actors + k for k in range(incidents - int(incidents * 0.8))
    ]
    state: dict[int, dict[str, Any]] = {}
    for owner in owners:
        if owner not in state:
            hosting = bool(rng.random() < 0.5)
            networks = HOSTING if hosting else RESIDENTIAL
            chosen = [networks[int(i)] for i in rng.choice(len(networks), 3, replace=False)]
            state[owner] = {
                "seen": _addresses(rng, int(rng.integers(100, 800))),
                "asns": chosen,
                "agents": [f"{owner:03d}-{k:02x}" for k in range(12)],
                "query": f"q{owner}={{n}}",
                "vectors": VECTORS[int(rng.integers(len(VECTORS)))],
                "marker": f"marker-{owner}" if rng.random() < 0.2 else None,
            }
        actor = state[owner]
        size = int(rng.integers(50, 1000))
        reuse = float(rng.uniform(0.05, 0.6))
        kept = [
            str(x) for x in rng.choice(actor["seen"], min(len(actor["seen"]), max(3, int(reuse * size))), replace=False)
        ]
        addresses = sorted(set(kept + _addresses(rng, size - len(kept))))
        actor["seen"] = sorted(set(actor["seen"]) | set(addresses))[-3000:]
        site = sites[int(rng.integers(outlets))]
        start = START + timedelta(hours=float(rng.uniform(0, 24 * 180)))
        number = len(per_site[site]) + 1
        prefixes = Counter(a.rsplit(".", 1)[0] + ".0/24" for a in addresses)
        per_asn = np.bincount(rng.integers(0, 3, len(addresses)), minlength=3)
        incident_id = f"{site}-{start:%Y%m%dT%H%M}-{number}"
        families = rng.dirichlet(np.ones(len(FAMILIES)))
        per_site[site].append(
            {
                "id": incident_id,
                "site": site,
                "kind": "scan" if "scan" in actor["vectors"] else "flood",
                "start": start.isoformat().replace("+00:00", "Z"),
                "end": (start + timedelta(hours=float(rng.uniform(0.5, 12)))).isoformat().replace("+00:00", "Z"),
                "peak_rps": float(rng.uniform(1, 500)),
                "vectors": actor["vectors"],
                "markers": [actor["marker"]] if actor["marker"] else [],
                "addresses": len(addresses),
                "address_hashes": [hash_address(a, KEY) for a in addresses],
                "prefixes": [{"prefix": p, "ips": n} for p, n in prefixes.items()],
                "asns": [
                    {"asn": a, "name": n, "country": c, "ips": int(k)}
                    for (a, n, c), k in zip(actor["asns"], per_asn, strict=True)
                ],
                "fingerprint": {
                    "user_agents": {a: 1 / 12 for a in actor["agents"]},
                    "ua_families": {f: round(float(s), 4) for f, s in zip(FAMILIES, families, strict=True)},
                    "path_shapes": {"/": 0.5, "/{n}/{n}/{slug}/": 0.5},
                    "query_shapes": {actor["query"]: 1.0},
                    "rate_quantiles_rps": {"p50": float(rng.uniform(0.01, 3))},
                    "hour_profile": [round(float(x), 4) for x in rng.dirichlet(np.ones(24))],
                },
            }
        )
        truth[incident_id] = f"actor-{owner}"
    return per_site, truth


def _ari(truth: list[str], found: list[str]) -> float:
    n = len(truth)
    index = sum(comb(c, 2) for c in Counter(zip(truth, found, strict=True)).values())
    a = sum(comb(c, 2) for c in Counter(truth).values())
    b = sum(comb(c, 2) for c in Counter(found).values())
    expected = a * b / comb(n, 2)
    return (index - expected) / ((a + b) / 2 - expected) if (a + b) / 2 != expected else 1.0


def simulated(scenarios: list[str], seeds: list[int], scale: float) -> None:
    """The whole chain on simulated scenarios, scored against their truth (see the module docstring)."""
    from floodwall.analyze import analyze
    from floodwall.score import score
    from floodwall.simulate import load_scenario, simulate

    print("scenario             seed  incidents(matched/truth)  ARI    pair-P pair-R  cross-actor links  campaigns")
    for scenario in scenarios:
        for seed in seeds:
            with tempfile.TemporaryDirectory(prefix="bench-correlate-sim-") as folder:
                sim, results = Path(folder) / "sim", Path(folder) / "results"
                simulate(load_scenario(scenario), sim, seed=seed, scale=scale)
                truth = json.loads((sim / "truth.json").read_text())
                for site in truth["sites"]:
                    out = results / site["name"]
                    analyze([sim / site["log"]], site=site["name"], out_dir=out, coalition_key=KEY)
                bundles = [results / s["name"] / "bundle.json" for s in truth["sites"]]
                document = correlate(bundles, results / "campaigns", key=KEY).document
                scored = score(sim, results)
                overall = scored["overall"]
                actor_of = {(i["site"], i["id"]): c["id"] for c in truth["campaigns"] for i in c["incidents"]}
                reported_actor = {
                    pair["reported"]: actor_of[(site, pair["truth"])]
                    for site, part in scored["sites"].items()
                    for pair in part["incidents"]["pairs"]
                }
                # A merge of two actors needs a spanning link between them: the listed links are enough to see one.
                pairs = [[reported_actor.get(x["id"]) for x in link["incidents"]] for link in document["links"]]
                cross = sum(1 for a, b in pairs if a is not None and b is not None and a != b)
                c = overall["campaigns"]
                incidents = f"{overall['incidents']['matched']}/{overall['incidents']['truth']}"
                print(
                    f"{scenario:20} {seed:4}  {incidents:24}  {c['adjusted_rand_index']:.3f}  "
                    f"{c['pairwise_precision']:.3f}  {c['pairwise_recall']:.3f}  {cross:17}  "
                    f"{len(document['campaigns'])} (truth {len(truth['campaigns'])})"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--outlets", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--simulated", nargs="+", metavar="SCENARIO", help="run the whole chain on these scenarios")
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103], help="with --simulated")
    parser.add_argument("--scale", type=float, default=0.05, help="with --simulated")
    args = parser.parse_args()
    if args.simulated:
        simulated(args.simulated, args.seeds, args.scale)
        return
    per_site, truth = generate(args.incidents, args.outlets, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-correlate-") as folder:
        root = Path(folder)
        paths = []
        for site, incidents in per_site.items():
            if not incidents:
                continue
            document = {
                "schema_version": SCHEMA_VERSION,
                "site": site,
                "key_fingerprint": key_fingerprint(KEY),
                "address_hash": "blake2b-128-keyed",
                "incidents": incidents,
            }
            path = root / site / "bundle.json"
            path.parent.mkdir()
            path.write_text(json.dumps(document), encoding="utf-8")
            paths.append(path)
        times = []
        for run in range(args.runs):
            began = time.perf_counter()
            result = correlate(paths, root / f"out-{run}", key=KEY)
            times.append(time.perf_counter() - began)
        found = {m["id"]: c["id"] for c in result.document["campaigns"] for m in c["incidents"]}
        ids = sorted(truth)
        ari = _ari([truth[i] for i in ids], [found[i] for i in ids])
        sizes = {name: (root / "out-0" / name).stat().st_size for name in ("campaigns.json", "campaigns.html")}
    links = result.document["links_total"]
    listed = len(result.document["links"])
    print(f"correlate: {len(truth)} incidents from {len(paths)} outlets, {links} linked pairs ({listed} listed),")
    print(f"  {len(result.document['campaigns'])} campaigns (truth: {len(set(truth.values()))}); ARI {ari:.3f}")
    print(f"  median {statistics.median(times):.2f} s of {args.runs} runs ({', '.join(f'{t:.2f}' for t in times)})")
    megabytes = {name: f"{size / 1e6:.1f} MB" for name, size in sizes.items()}
    print(f"  campaigns.json {megabytes['campaigns.json']}, campaigns.html {megabytes['campaigns.html']}")
    print(f"  machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")


if __name__ == "__main__":
    main()
