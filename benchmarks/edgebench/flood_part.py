"""Part 2 of `bench_edge.py`: goodput under a flood, one front after another (nothing, nginx, the edge), each with a
fresh origin of fixed capacity, readers and the flood from `loadgen`; the table and the medians over rounds."""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgebench import loadgen
from edgebench.edge_front import DecisionWatch, Edge, edge_config
from edgebench.httpclient import Response
from edgebench.nginx_front import Nginx, newsroom_front
from edgebench.origin import LimitedOrigin, OriginStats
from edgebench.report import ms, percentile, table

#: edge-base: the old code (bench_edge --baseline-src); edge-nft: the edge with its bans also dropped by the kernel
#: (an nftables table of the benchmark's own, holding only flood addresses, removed after the run).
FRONTS = ("none", "nginx", "edge-base", "edge", "edge-nft")
FLOOD_NETWORK = "127.2.0.0/16"  # loadgen.flood_address's: the only addresses edge-nft may hand the kernel
FAST_S = 0.5  # issue 7's bar for a reader's p99


def is_challenge(response: Response) -> bool:
    """The edge's challenge: its proof-of-work page, or (without a challenger) its 429 asking to show a browser.
    A plain rate limit (429 "Too many requests", nginx's or the edge's) is not one."""
    return response.status == 429 and (
        b'id="floodwall-challenge"' in response.body or b"show it is a browser" in response.body
    )


def _until(first: Mapping[Any, float], total: int, share: float) -> str:
    """Seconds from the flood's start until `share` of `total` addresses were seen refused."""
    times = sorted(first.values())
    need = math.ceil(share * total)
    if need <= len(times):
        return f"{times[need - 1]:.1f}"
    return f"never ({100 * len(times) / total:.0f}%)"


def _seconds_until(first: Mapping[Any, float], total: int) -> float:
    """Seconds until every one of `total` addresses was seen (infinity when some never were)."""
    return max(first.values()) if len(first) >= total else math.inf


def _median_s(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    middle = statistics.median(known)
    return "never" if math.isinf(middle) else f"{middle:.1f}"


def _p99_by_slice(samples: list[tuple[float, float, str]], flood_s: float, slice_s: float) -> list[float]:
    """The p99 latency (s) of the readers' requests sent in each `slice_s` of the flood (NaN for an empty slice)."""
    slices = max(1, math.ceil(flood_s / slice_s))
    bins: list[list[float]] = [[] for _ in range(slices)]
    for sent, latency, _ in samples:
        bins[min(slices - 1, int(sent // slice_s))].append(latency)
    return [percentile(b, 99) if b else math.nan for b in bins]


def _origin_figures(stats: OriginStats, run_times: tuple[float, float, float]) -> dict[str, Any]:
    start_at, flood_at, end_at = run_times
    open_before, _ = stats.between(start_at, flood_at - 1)
    open_during, busiest_during = stats.between(flood_at, end_at)
    return {
        "slots": stats.slots,
        "capacity_rps": stats.capacity_rps,
        "max_open": stats.max_open,
        "max_open_before": open_before,
        "max_open_during": open_during,
        "max_in_service": stats.max_in_service,
        "peak_rps": stats.peak_rps,
        "peak_rps_during": busiest_during,
        "answered": stats.answered,
    }


def _drop_table(table: str) -> dict[str, int]:
    """Remove edge-nft's table, saying first how many addresses it held."""
    held = 0
    done = subprocess.run(["nft", "-j", "list", "table", "ip", table], capture_output=True, text=True, check=False)
    if done.returncode == 0:
        for item in json.loads(done.stdout)["nftables"]:
            held += len(item.get("set", {}).get("elem", []))
    subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True, check=False)
    return {"held": held}


def flood_one(front: str, args: argparse.Namespace, tmp: Path, load: loadgen.Load) -> dict[str, Any]:
    folder = tmp / f"flood-{front}"
    decided: dict[str, dict[str, float]] | None
    table: str | None = None
    kernel: dict[str, int] = {}
    folder.mkdir(parents=True)
    with LimitedOrigin(args.origin_slots, args.origin_service_ms / 1000) as origin:
        part: Nginx | Edge | None = None
        if front == "nginx":
            part = newsroom_front(folder, origin.url, args.workers)
        elif front in ("edge", "edge-base", "edge-nft"):
            config = edge_config(
                folder, args.workers, open_limits=False, query_keep=["page"], under_attack=args.under_attack
            )
            if front == "edge-nft":
                table = f"fwbench{os.getpid()}"
                config["edge"]["enforce"] = [f"nftables:ip/{table}/banned"]
                config["edge"]["enforce_networks"] = [FLOOD_NETWORK]
            part = Edge(folder, origin.url, config, src=args.baseline_src if front == "edge-base" else None)
        try:
            if part is not None:
                part.start()
            port = part.port if part is not None else origin.port
            run = loadgen.LoadRun(load, "127.0.0.1", port, is_challenge, args.solve)
            run_times = (run.start_at, run.flood_at, run.end_at)
            run.start()
            if isinstance(part, Edge):
                groups = {
                    "flood": [loadgen.flood_address(k) for k in range(load.flood_addresses)],
                    "readers": [loadgen.reader_address(k) for k in range(load.readers)],
                }
                with DecisionWatch(part, groups, zero=run.flood_at) as watch:
                    readers, flood = run.collect()
                decided = watch.first
            else:
                readers, flood = run.collect()
                decided = None
        finally:
            if part is not None:
                part.stop()
            if table is not None:
                kernel = _drop_table(table)
    stats: OriginStats | None = origin.stats
    during = [s for s in readers.samples if 0 <= s[0] < load.flood_s]
    before = [s for s in readers.samples if s[0] < 0]
    latencies = [s[1] for s in during]
    ok = sum(1 for s in during if s[2] == "ok")
    outcomes: dict[str, int] = {}
    for s in during:
        outcomes[s[2]] = outcomes.get(s[2], 0) + 1
    sent = sum(flood.sent_per_s.values())
    return {
        "front": front,
        "readers_during": len(during),
        "readers_ok_share": ok / len(during) if during else float("nan"),
        "readers_ok_fast_share": sum(1 for s in during if s[2] == "ok" and s[1] <= FAST_S) / len(during)
        if during
        else float("nan"),
        "readers_ok_share_before": sum(1 for s in before if s[2] == "ok") / len(before) if before else float("nan"),
        "readers_outcomes": outcomes,
        "readers_p50_s": percentile(latencies, 50),
        "readers_p99_s": percentile(latencies, 99),
        # Issue 7 gives the edge 10 s to challenge or ban the flood: the readers' wait before and after that.
        "readers_p99_first_10s_s": percentile([s[1] for s in during if s[0] < 10], 99),
        "readers_p99_after_10s_s": percentile([s[1] for s in during if s[0] >= 10], 99),
        # Where the p99 comes from: the readers' slowest answers by 2-second slice of the flood.
        "readers_p99_by_2s": _p99_by_slice(during, load.flood_s, 2.0),
        "readers_samples": during,
        "flood_sent": sent,
        "flood_rps": sent / load.flood_s,
        "flood_outcomes": dict(flood.outcomes),
        "refused_90": _until(flood.first_refused, load.flood_addresses, 0.9),
        "refused_all": _until(flood.first_refused, load.flood_addresses, 1.0),
        "blocked_90": _until(flood.first_blocked, load.flood_addresses, 0.9),
        "blocked_all": _until(flood.first_blocked, load.flood_addresses, 1.0),
        "decided_90": "-" if decided is None else _until(decided["flood"], load.flood_addresses, 0.9),
        "decided_all": "-" if decided is None else _until(decided["flood"], load.flood_addresses, 1.0),
        "decided_all_s": None if decided is None else _seconds_until(decided["flood"], load.flood_addresses),
        "readers_decided": None if decided is None else len(decided["readers"]),
        "challenges_solved": readers.challenges_solved,
        "kernel": kernel,
        "origin": None if stats is None else _origin_figures(stats, run_times),
    }


def flood(args: argparse.Namespace, tmp: Path, edge_reason: str | None, results: dict[str, Any]) -> None:
    load = loadgen.Load(
        readers=args.readers,
        reader_rps=args.reader_rps,
        flood_addresses=args.flood_addresses,
        flood_processes=args.flood_processes,
        flood_connections=args.flood_connections,
        warmup_s=args.warmup,
        flood_s=args.flood_seconds,
    )
    capacity = args.origin_slots / (args.origin_service_ms / 1000)
    print(
        f"\n2. goodput under a flood: origin {args.origin_slots} slots x {args.origin_service_ms:g} ms "
        f"(~{capacity:.0f} req/s); {load.readers} readers at ~{load.reader_rps:g} req/s; flood from "
        f"{load.flood_addresses} addresses, {load.flood_processes} processes x {load.flood_connections} "
        f"connections, {load.flood_s:g} s after {load.warmup_s:g} s of readers alone"
    )
    done = []
    fronts = [
        f
        for f in args.fronts
        if not f.startswith("edge") or (edge_reason is None and (f != "edge-base" or args.baseline_src is not None))
    ]
    if edge_reason is not None and "edge" in args.fronts:
        print(f"  edge: skipped: {edge_reason}")
    for round_ in range(args.flood_repeat):
        for front in fronts if round_ % 2 == 0 else fronts[::-1]:
            started = time.monotonic()
            result = flood_one(front, args, tmp / f"round-{round_ + 1}", load)
            result["round"] = round_ + 1
            done.append(result)
            print(f"  {front} (round {round_ + 1}): done in {time.monotonic() - started:.0f} s")
    done.sort(key=lambda r: (FRONTS.index(r["front"]), r["round"]))
    rows = []
    for r in done:
        origin = r["origin"] or {}
        rows.append(
            [
                r["front"] if args.flood_repeat == 1 else f"{r['front']} #{r['round']}",
                f"{100 * r['readers_ok_share']:.1f}% of {r['readers_during']}",
                f"{100 * r['readers_ok_fast_share']:.1f}%",
                f"{100 * r['readers_ok_share_before']:.1f}%",
                ms(r["readers_p50_s"]),
                ms(r["readers_p99_s"]),
                f"{origin.get('max_open_before', '-')} / {origin.get('max_open_during', '-')}",
                f"{origin.get('max_in_service', '-')} / {origin.get('slots', '-')}",
                f"{origin.get('peak_rps_during', '-')} / {origin.get('capacity_rps', 0):.0f}",
                f"{r['flood_rps']:,.0f}",
                f"{r['refused_90']} / {r['refused_all']}",
                f"{r['blocked_90']} / {r['blocked_all']}",
                f"{r['decided_90']} / {r['decided_all']}",
                "-" if r["readers_decided"] is None else str(r["readers_decided"]),
            ]
        )
    print(
        table(
            [
                "front",
                "readers ok (flood)",
                "ok in 0.5 s",
                "ok before",
                "p50 ms",
                "p99 ms",
                "origin open before/flood",
                "in service/slots",
                "origin busiest s/cap",
                "flood req/s",
                "refused 90%/all s",
                "blocked 90%/all s",
                "decided 90%/all s",
                "readers decided",
            ],
            rows,
        )
    )
    if args.flood_repeat > 1:
        for front in fronts:
            mine = [r for r in done if r["front"] == front]
            print(
                f"  {front}, medians of {len(mine)}: readers ok "
                f"{100 * statistics.median(r['readers_ok_share'] for r in mine):.1f}%, in 0.5 s "
                f"{100 * statistics.median(r['readers_ok_fast_share'] for r in mine):.1f}%, p99 "
                f"{ms(statistics.median(r['readers_p99_s'] for r in mine))} ms, flood "
                f"{statistics.median(r['flood_rps'] for r in mine):,.0f} req/s, all decided after "
                f"{_median_s([r['decided_all_s'] for r in mine])} s"
            )
    for r in done:
        print(
            f"  {r['front']} #{r['round']}: readers' answers during the flood {r['readers_outcomes']} "
            f"({r['challenges_solved']} challenges solved), p99 {ms(r['readers_p99_first_10s_s'])} ms in its first "
            f"10 s, {ms(r['readers_p99_after_10s_s'])} ms after; flood's answers {r['flood_outcomes']}"
            + (f"; kernel {r['kernel']}" if r.get("kernel") else "")
        )
        print("    p99 ms by 2 s of the flood: " + " ".join(f"{1000 * v:.0f}" for v in r["readers_p99_by_2s"]))
    results["flood"] = done
