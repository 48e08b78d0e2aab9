"""How well `floodwall edge` does its job, against nginx and against nothing, on loopback (issue 7, "How well").

    .venv/bin/python benchmarks/bench_edge.py                        # all three parts, a few minutes
    .venv/bin/python benchmarks/bench_edge.py --parts throughput --repeat 5 --wrk-duration 10
    .venv/bin/python benchmarks/bench_edge.py --parts flood --flood-seconds 60 --fronts nginx edge

1. Throughput (`wrk`, fixed threads, connections and duration; medians of `--repeat` rounds, the fronts
   alternating in each round): nginx with proxy_cache and `floodwall edge`, both in front of one static nginx
   origin, with as many worker processes each (`--workers`); cache hits (a page the origin marks max-age=3600) and
   pass-through (a page the origin marks no-store). Requests/s, the ratio edge/nginx (target >= 0.8), p50/p99.
   wrk sends from one address, so the edge here lists 127.0.0.1 as the outlet's own network and lifts its
   per-address limits (nginx has none in this part).
2. Goodput under a flood, one front after another in the same command: nothing in front, nginx in front (the
   front `floodwall nginx-config` prints: proxy_cache, use_stale, lock, a cache key without cache-busting query
   strings, limit_req per address) and the edge (shipped defaults, `query_keep = ["page"]`). The origin serves
   about 500 requests/s (`--origin-slots` at once, `--origin-service-ms` each; the rest wait in line). Readers
   (200 addresses, 127.1.x.y, ~50 requests/s in all, think time between pages, cookies kept) browse from
   `--warmup` seconds before the flood (45 s: the baseline a live detector learns from) to its end; the flood
   (2,000 addresses, 127.2.x.y, several processes, closed loop: as fast as the generator can go) GETs hot
   pages, half of them with a random query string.
   Reported: the share of readers' requests answered with the right page during the flood (within the readers'
   5 s timeout, and within 0.5 s), their p50/p99 (a request that timed out counts as the timeout), the origin's
   most open requests (waiting + in service) before and during the flood, its most in service against its
   slots, and its busiest second during the flood against its capacity, the
   flood's rate and answers, and the seconds from the flood's start until 90% and all of its addresses were
   refused (403, 429 or a challenge page; for nginx that is limit_req's 429), blocked (403 or a challenge) and,
   for the edge, decided (a ban or challenge covering the address in the admin decision list, polled every
   0.5 s), and how many readers' addresses were decided on.
   Challenges: a reader is a browser. On the edge's proof-of-work page it does what the page's script does
   (finds the nonce, loads the verify URL, keeps the cookie, loads the page again), and the answer counts as served
   when that second load brings the page; its latency includes the work. `--no-solve` counts every challenge page
   as not served. The flood's bots never solve. `--under-attack` starts the edge with its switch on, so every
   reader meets the challenge (and solves it) before its first page.
3. Added latency on a quiet site: single sequential requests from 200 reader addresses over kept-alive
   connections, alternating edge and direct-to-origin, `--samples` of each; p50/p99 and the difference, for a
   pass-through page (the edge goes to the origin: its real added cost) and a cached page.

Until `floodwall edge` exists, its rows are skipped with the reason and everything else runs. Everything listens
and sends on loopback only; every run is bounded by its duration. This is a benchmark: it prints, it never fails
on a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edgebench import loadgen
from edgebench.edge_front import DecisionWatch, Edge, edge_config, edge_missing
from edgebench.httpclient import Response
from edgebench.nginx_front import HOT_PAGE, PASS_PAGE, Nginx, caching_front, newsroom_front, static_origin
from edgebench.origin import LimitedOrigin, OriginStats
from edgebench.report import machine_line, ms, percentile, ratio, table
from edgebench.wrk import WrkResult, run_wrk, wrk_missing

FRONTS = ("none", "nginx", "edge")
FAST_S = 0.5  # issue 7's bar for a reader's p99


def is_challenge(response: Response) -> bool:
    """The edge's challenge: its proof-of-work page, or (without a challenger) its 429 asking to show a browser.
    A plain rate limit (429 "Too many requests", nginx's or the edge's) is not one."""
    return response.status == 429 and (
        b'id="floodwall-challenge"' in response.body or b"show it is a browser" in response.body
    )


def _get(url: str) -> tuple[int, dict[str, str]]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as answer:
        answer.read()
        return int(answer.status), {k.lower(): v for k, v in answer.getheaders()}


# --- 1. throughput ---------------------------------------------------------------------------------------------------


def throughput(args: argparse.Namespace, tmp: Path, edge_reason: str | None, results: dict[str, Any]) -> None:
    reason = wrk_missing()
    if reason:
        print(f"throughput: skipped: {reason}")
        return
    print(
        f"\n1. throughput: wrk -t{args.wrk_threads} -c{args.wrk_connections} -d{args.wrk_duration}s, "
        f"{args.repeat} rounds, fronts alternating, {args.workers} worker(s) each"
    )
    with static_origin(tmp / "tp-origin") as origin:
        origin_url = f"http://127.0.0.1:{origin.port}"
        fronts: dict[str, str] = {}
        stack: list[Nginx | Edge] = []
        try:
            nginx = caching_front(tmp / "tp-nginx", origin.port, args.workers)
            nginx.start()
            stack.append(nginx)
            fronts["nginx"] = f"http://127.0.0.1:{nginx.port}"
            if edge_reason is None:
                edge = Edge(
                    tmp / "tp-edge",
                    origin_url,
                    edge_config(tmp / "tp-edge", args.workers, open_limits=True, query_keep=[]),
                )
                edge.start()
                stack.append(edge)
                fronts["edge"] = edge.url
            else:
                print(f"  edge: skipped: {edge_reason}")
            for name, base in fronts.items():
                _get(base + HOT_PAGE)
                status, headers = _get(base + HOT_PAGE)
                _, pass_headers = _get(base + PASS_PAGE)
                cache = headers.get("x-cache-status") or headers.get("x-floodwall-cache")
                passing = pass_headers.get("x-cache-status") or pass_headers.get("x-floodwall-cache")
                print(f"  {name}: {HOT_PAGE} -> {status} cache {cache}; {PASS_PAGE} -> cache {passing}")
                for path in (HOT_PAGE, PASS_PAGE):  # warm-up: pools, caches, page cache
                    run_wrk(base + path, args.wrk_threads, args.wrk_connections, 1, tmp)
            runs: dict[tuple[str, str], list[WrkResult]] = {}
            names = list(fronts)
            for round_ in range(args.repeat):
                for path in (HOT_PAGE, PASS_PAGE):
                    for name in names if round_ % 2 == 0 else names[::-1]:
                        result = run_wrk(
                            fronts[name] + path, args.wrk_threads, args.wrk_connections, args.wrk_duration, tmp
                        )
                        runs.setdefault((path, name), []).append(result)
        finally:
            for part in reversed(stack):
                part.stop()
    rows = []
    for path, label in ((HOT_PAGE, "cache hit"), (PASS_PAGE, "pass-through")):
        base_rps = statistics.median(r.rps for r in runs[path, "nginx"])
        for name in names:
            got = runs[path, name]
            rps = statistics.median(r.rps for r in got)
            p50 = statistics.median(r.p50_s for r in got)
            p99 = statistics.median(r.p99_s for r in got)
            errors = sum(r.errors for r in got)
            rows.append([label, name, f"{rps:,.0f}", ratio(rps, base_rps), ms(p50), ms(p99), f"{errors}"])
            results.setdefault("throughput", []).append(
                {
                    "case": label,
                    "front": name,
                    "rps": rps,
                    "vs_nginx": rps / base_rps,
                    "p50_s": p50,
                    "p99_s": p99,
                    "errors": errors,
                    "rps_runs": [r.rps for r in got],
                }
            )
    print(table(["case", "front", "req/s (median)", "/ nginx", "p50 ms", "p99 ms", "errors"], rows))


# --- 2. goodput under a flood ----------------------------------------------------------------------------------------


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


def flood_one(front: str, args: argparse.Namespace, tmp: Path, load: loadgen.Load) -> dict[str, Any]:
    folder = tmp / f"flood-{front}"
    decided: dict[str, dict[str, float]] | None
    folder.mkdir(parents=True)
    with LimitedOrigin(args.origin_slots, args.origin_service_ms / 1000) as origin:
        part: Nginx | Edge | None = None
        if front == "nginx":
            part = newsroom_front(folder, origin.url, args.workers)
        elif front == "edge":
            config = edge_config(
                folder, args.workers, open_limits=False, query_keep=["page"], under_attack=args.under_attack
            )
            part = Edge(folder, origin.url, config)
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
    fronts = [f for f in args.fronts if f != "edge" or edge_reason is None]
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
        )
    results["flood"] = done


# --- 3. added latency ------------------------------------------------------------------------------------------------


def latency(args: argparse.Namespace, tmp: Path, edge_reason: str | None, results: dict[str, Any]) -> None:
    print(f"\n3. added latency on a quiet site: {args.samples} sequential requests each, alternating")
    if edge_reason is not None:
        print(f"  edge: skipped: {edge_reason}")
        return
    import uvloop

    with static_origin(tmp / "lat-origin") as origin:
        origin_url = f"http://127.0.0.1:{origin.port}"
        folder = tmp / "lat-edge"
        with Edge(folder, origin_url, edge_config(folder, args.workers, open_limits=False, query_keep=[])) as edge:
            targets = [
                ("127.0.0.1", origin.port, PASS_PAGE),
                ("127.0.0.1", edge.port, PASS_PAGE),
                ("127.0.0.1", origin.port, HOT_PAGE),
                ("127.0.0.1", edge.port, HOT_PAGE),
            ]
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(loadgen.sequential_samples(targets, 50, 200))  # warm-up: connections, pools, cache
                samples = runner.run(loadgen.sequential_samples(targets, args.samples, 200))
    rows = []
    for path, label in ((PASS_PAGE, "pass-through"), (HOT_PAGE, "cache hit")):
        direct = samples[f"127.0.0.1:{origin.port} {path}"]
        via = samples[f"127.0.0.1:{edge.port} {path}"]
        d50, d99 = percentile(direct, 50), percentile(direct, 99)
        e50, e99 = percentile(via, 50), percentile(via, 99)
        rows.append([label, ms(d50), ms(e50), ms(e50 - d50), ms(d99), ms(e99), ms(e99 - d99)])
        results.setdefault("latency", []).append(
            {"case": label, "direct_p50_s": d50, "edge_p50_s": e50, "direct_p99_s": d99, "edge_p99_s": e99}
        )
    print(
        table(["case", "direct p50", "edge p50", "added p50", "direct p99", "edge p99", "added p99"], rows)
        + "\n  (milliseconds; target: added p50 < 1 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--parts", nargs="+", choices=("throughput", "flood", "latency"), default=["throughput", "latency", "flood"]
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes of nginx and of the edge alike")
    parser.add_argument("--repeat", type=int, default=3, help="throughput rounds (medians reported)")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--wrk-connections", type=int, default=64)
    parser.add_argument("--wrk-duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--fronts", nargs="+", choices=FRONTS, default=list(FRONTS))
    parser.add_argument("--flood-seconds", type=float, default=30.0)
    parser.add_argument("--flood-repeat", type=int, default=1, help="flood rounds (fronts alternating; medians)")
    parser.add_argument(
        "--warmup", type=float, default=45.0, help="seconds of readers alone before the flood (the baseline)"
    )
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--reader-rps", type=float, default=50.0)
    parser.add_argument("--flood-addresses", type=int, default=2000)
    parser.add_argument("--flood-processes", type=int, default=2)
    parser.add_argument("--flood-connections", type=int, default=1000, help="per flood process")
    parser.add_argument(
        "--no-solve",
        dest="solve",
        action="store_false",
        help="readers count a challenge page as not served instead of solving it as a browser would",
    )
    parser.add_argument(
        "--under-attack",
        action="store_true",
        help="the edge starts with its under-attack switch on: every client must solve a challenge first",
    )
    parser.add_argument("--origin-slots", type=int, default=10)
    parser.add_argument("--origin-service-ms", type=float, default=20.0)
    parser.add_argument("--samples", type=int, default=1000, help="sequential requests per target (latency)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="a new folder for configs, logs and caches, kept after the run (default: a temporary one)",
    )
    args = parser.parse_args()

    print(machine_line())
    edge_reason = edge_missing()
    if edge_reason:
        print(f"edge: {edge_reason}; its rows are skipped")
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=False)
            tmp = args.workdir
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="floodwall-bench-edge-", dir="/dev/shm")))
        for part in ("throughput", "latency", "flood"):
            if part in args.parts:
                {"throughput": throughput, "latency": latency, "flood": flood}[part](args, tmp, edge_reason, results)
    print(f"\n{machine_line()} (after)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
