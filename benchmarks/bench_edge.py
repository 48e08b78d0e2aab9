"""How well `floodwall edge` does its job, against nginx and against nothing, on loopback (issue 7, "How well").

    .venv/bin/python benchmarks/bench_edge.py                        # all three parts, a few minutes
    .venv/bin/python benchmarks/bench_edge.py --parts throughput --repeat 5 --wrk-duration 10
    .venv/bin/python benchmarks/bench_edge.py --parts flood --flood-seconds 60 --fronts nginx edge
    .venv/bin/python benchmarks/bench_edge.py --baseline-src /tmp/old/src      # old code beside new: edge-base
    .venv/bin/python benchmarks/bench_edge.py --parts flood --fronts edge edge-nft   # + bans dropped by the kernel

1. Throughput (`wrk`, fixed threads, connections and duration; medians of `--repeat` rounds, the fronts
   alternating in each round): nginx with proxy_cache and `floodwall edge`, both in front of one static nginx
   origin, with as many worker processes each (`--workers`); cache hits (a page the origin marks max-age=3600) and
   pass-through (a page the origin marks no-store). Requests/s, the ratio edge/nginx (target >= 0.8), p50/p99, and
   the CPU time (user + system) each front's processes spent per request during the run: the steadier figure on a
   shared machine ("of it main": nginx's master, the edge's supervisor, which runs the live detector), and the
   cores each front kept busy (CPU seconds per second): on a 2-core machine shared with wrk, nginx's cache hits
   can be limited by wrk or the machine rather than by nginx (then well under one core busy), and there the req/s
   ratio flatters the edge while the CPU ratio does not. Nothing is pinned: every process (fronts,
   origin, wrk) may run on either core, alike for all.
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
   0.5 s), and how many readers' addresses were decided on. Per run, the readers' p99 in the flood's first 10 s
   and after, and per 2 s of the flood (where the p99 comes from); the JSON (`--json`) keeps every reader sample.
   `edge-nft` is the edge with `[edge] enforce` set: its
   bans also go to an nftables table of the benchmark's own (`fwbench<pid>`, only 127.2.0.0/16, the flood's
   addresses, may enter it; deleted after the run), so banned flood sources see their packets dropped ("refused"
   or "timeout" in the flood's answers) rather than a 403; run as root.
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
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edgebench import loadgen
from edgebench.cpu import cpu_s, tree_pids
from edgebench.edge_front import Edge, edge_config, edge_missing
from edgebench.flood_part import FRONTS, flood
from edgebench.nginx_front import HOT_PAGE, PASS_PAGE, Nginx, caching_front, static_origin
from edgebench.report import machine_line, ms, percentile, ratio, table
from edgebench.wrk import WrkResult, run_wrk, wrk_missing


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
        servers: dict[str, Nginx | Edge] = {}
        stack: list[Nginx | Edge] = []
        try:
            nginx = caching_front(tmp / "tp-nginx", origin.port, args.workers)
            nginx.start()
            stack.append(nginx)
            fronts["nginx"], servers["nginx"] = f"http://127.0.0.1:{nginx.port}", nginx
            if edge_reason is None:
                for name, src in edge_fronts(args):
                    folder = tmp / f"tp-{name}"
                    config = edge_config(folder, args.workers, open_limits=True, query_keep=[])
                    edge = Edge(folder, origin_url, config, src=src)
                    edge.start()
                    stack.append(edge)
                    fronts[name], servers[name] = edge.url, edge
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
            cpu_us: dict[tuple[str, str], list[float]] = {}
            main_us: dict[tuple[str, str], list[float]] = {}  # the root process: nginx's master, the edge's supervisor
            busy: dict[tuple[str, str], list[float]] = {}  # the front's CPU seconds per second of the run
            names = list(fronts)
            for round_ in range(args.repeat):
                for path in (HOT_PAGE, PASS_PAGE):
                    for name in names if round_ % 2 == 0 else names[::-1]:
                        # The front's CPU (all its processes; for pass-through the origin's is left out).
                        root = servers[name].pid
                        pids = tree_pids(root)
                        cpu_before, main_before = cpu_s(pids), cpu_s([root])
                        result = run_wrk(
                            fronts[name] + path, args.wrk_threads, args.wrk_connections, args.wrk_duration, tmp
                        )
                        spent, main_spent = cpu_s(pids) - cpu_before, cpu_s([root]) - main_before
                        runs.setdefault((path, name), []).append(result)
                        count = max(1, result.requests)
                        cpu_us.setdefault((path, name), []).append(1e6 * spent / count)
                        main_us.setdefault((path, name), []).append(1e6 * main_spent / count)
                        busy.setdefault((path, name), []).append(spent / max(1e-9, result.duration_s))
        finally:
            for part in reversed(stack):
                part.stop()
    rows = []
    for path, label in ((HOT_PAGE, "cache hit"), (PASS_PAGE, "pass-through")):
        base_rps = statistics.median(r.rps for r in runs[path, "nginx"])
        base_cpu = statistics.median(cpu_us[path, "nginx"])
        for name in names:
            got = runs[path, name]
            rps = statistics.median(r.rps for r in got)
            p50 = statistics.median(r.p50_s for r in got)
            p99 = statistics.median(r.p99_s for r in got)
            cpu = statistics.median(cpu_us[path, name])
            main_cpu = statistics.median(main_us[path, name])
            cores = statistics.median(busy[path, name])
            errors = sum(r.errors for r in got)
            rows.append(
                [
                    label,
                    name,
                    f"{rps:,.0f}",
                    ratio(rps, base_rps),
                    f"{cpu:.1f}",
                    f"{main_cpu:.1f}",
                    ratio(cpu, base_cpu),
                    f"{cores:.2f}",
                    ms(p50),
                    ms(p99),
                    f"{errors}",
                ]
            )
            results.setdefault("throughput", []).append(
                {
                    "case": label,
                    "front": name,
                    "rps": rps,
                    "vs_nginx": rps / base_rps,
                    "cpu_us_per_request": cpu,
                    "cpu_vs_nginx": cpu / base_cpu,
                    "cpu_us_main_process": main_cpu,
                    "cores_busy": cores,
                    "p50_s": p50,
                    "p99_s": p99,
                    "errors": errors,
                    "rps_runs": [r.rps for r in got],
                    "cpu_us_runs": cpu_us[path, name],
                }
            )
    columns = ["case", "front", "req/s", "/ nginx", "CPU µs/req", "of it main", "/ nginx", "cores", "p50 ms", "p99 ms"]
    print(
        table([*columns, "errors"], rows)
        + f"\n  (cores: the front's CPU seconds per second of the run; a front well under {args.workers} core(s)"
        "\n  busy was not what limited its req/s (wrk's threads or the machine were), and its req/s ratio then"
        "\n  flatters the other front, while the CPU ratio does not)"
    )


def edge_fronts(args: argparse.Namespace) -> list[tuple[str, Path | None]]:
    """The edges to measure: today's code, and with `--baseline-src` the old code beside it ("edge-base")."""
    fronts: list[tuple[str, Path | None]] = [("edge", None)]
    if args.baseline_src is not None:
        fronts.insert(0, ("edge-base", args.baseline_src))
    return fronts


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
    parser.add_argument(
        "--fronts",
        nargs="+",
        choices=FRONTS,
        default=[f for f in FRONTS if f != "edge-nft"],
        help="edge-base needs --baseline-src; edge-nft (bans dropped by the kernel too) needs root and nft",
    )
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
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="a folder holding an older `floodwall` package (e.g. a checkout's src/): measured too, as edge-base",
    )
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
