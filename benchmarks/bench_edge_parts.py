"""The edge's defence parts, one call at a time: what each costs per request, next to a dict lookup in the same run.

    .venv/bin/python benchmarks/bench_edge_parts.py [--rounds 7] [--calls 20000] [--json FILE]

Each part is called on a realistic rotation of inputs (readers' addresses, paths, user agents, cookies) prepared
before timing; a round times `--calls` calls, and the table gives the median per call over `--rounds` rounds, with
the ratio to the baseline (a dict lookup on the same rotation, timed in alternation with the parts so machine
noise hits both). Nothing here touches the network.
"""

# Report lines are long f-strings; splitting them would not make this script easier to read.
# ruff: noqa: E501
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from floodwall.config import DetectSettings
from floodwall.edge.cache import CacheStatus, EdgeCache
from floodwall.edge.challenge import Challenger
from floodwall.edge.clientaddr import ClientAddress
from floodwall.edge.guard import InlineGuard
from floodwall.edge.limits import Limiter, OriginGate
from floodwall.edge.settings import CacheSettings, ChallengeSettings, LimitSettings

UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/117.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
]
PATHS = [f"/vesti/2024/11/{day:02d}/clanak-{n}" for day in range(1, 29) for n in range(40)]


def _headers(rng: random.Random, ua: str, cookie: str | None) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"Host", b"news.example"),
        (b"User-Agent", ua.encode()),
        (b"Accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        (b"Accept-Language", b"sr-RS,sr;q=0.9,en-US;q=0.8,en;q=0.7"),
        (b"Accept-Encoding", b"gzip, deflate, br"),
        (b"Referer", f"https://news.example{rng.choice(PATHS)}".encode()),
    ]
    if cookie:
        headers.append((b"Cookie", cookie.encode()))
    return headers


def _time(call: Callable[[int], object], calls: int) -> float:
    """Seconds per call for `calls` calls of `call(i)`."""
    start = time.perf_counter()
    for i in range(calls):
        call(i)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = random.Random(7)
    n = 4096  # the rotation of inputs
    addresses = [
        f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}" for _ in range(n)
    ]
    agents = [rng.choice(UAS) for _ in range(n)]
    paths = [rng.choice(PATHS) for _ in range(n)]

    table = {address: True for address in addresses}
    baseline: Callable[[int], object] = lambda i: table.get(addresses[i % n])  # noqa: E731

    direct = ClientAddress([])
    behind = ClientAddress(["10.0.0.0/8"])
    forwarded = [f"{rng.choice(addresses)}, {addresses[i]}".encode() for i in range(n)]

    limiter = Limiter(LimitSettings(client_rps=1e6, client_burst=1e6, prefix_rps=1e6, prefix_burst=1e6))

    cache = EdgeCache(CacheSettings())
    page = b"<!doctype html><title>x</title>" + b"x" * 30_000
    header_sets = [_headers(rng, agents[i], "floodwall_pass=1.x" if i % 3 else None) for i in range(n)]
    keys = [cache.key("GET", "news.example", paths[i], header_sets[i]) or "" for i in range(n)]
    for key in set(keys):
        cache.put(key, 200, [(b"Content-Type", b"text/html; charset=utf-8"), (b"Cache-Control", b"max-age=3600")], page)

    def cache_hit(i: int) -> object:
        key = cache.key("GET", "news.example", paths[i % n], header_sets[i % n])
        entry = cache.get(key or "")
        assert entry is not None
        return entry.wire(0.0, CacheStatus.HIT)

    challenger = Challenger(ChallengeSettings(), "contact", os.urandom(32))
    cookies = [f"_ga=GA1.2.{i}; floodwall_pass={challenger.cookie_value(addresses[i], agents[i])}" for i in range(n)]

    guard = InlineGuard.from_settings(DetectSettings())
    reader_headers = [_headers(rng, agents[i], cookies[i]) for i in range(n)]
    fresh = itertools.count()  # a cache-busting flood's parameters are new on every request: never remembered
    attacks = [f"id=1' or '{i}'='{i}" for i in range(n)]

    gate = OriginGate(64)

    async def gate_calls(calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            await gate.acquire()
            gate.release()
        return (time.perf_counter() - start) / calls

    parts: dict[str, Callable[[int], object]] = {
        "baseline: dict lookup": baseline,
        "clientaddr: peer, no proxies": lambda i: direct.resolve(addresses[i % n], None),
        "clientaddr: behind a CDN, X-Forwarded-For": lambda i: behind.resolve("10.1.2.3", forwarded[i % n]),
        "limits: client + prefix buckets": lambda i: limiter.check(addresses[i % n]),
        "cache: key only": lambda i: cache.key("GET", "news.example", paths[i % n], header_sets[i % n]),
        "cache: key + get + wire (hit, 30 kB)": cache_hit,
        "challenge: verify a valid cookie": lambda i: challenger.verify(
            cookies[i % n], addresses[i % n], agents[i % n]
        ),
        "challenge: verify, no cookie": lambda i: challenger.verify(None, addresses[i % n], agents[i % n]),
        "challenge: page": lambda i: challenger.page(paths[i % n], addresses[i % n], agents[i % n]),
        "guard: reader, popular pages": lambda i: guard.check("GET", paths[i % 64], None, reader_headers[i % n]),
        "guard: cache-busting query (always new)": lambda i: guard.check(
            "GET", paths[i % n], f"_={next(fresh)}", reader_headers[i % n]
        ),
        "guard: sqli in the query": lambda i: guard.check("GET", "/search", attacks[i % n], reader_headers[i % n]),
    }
    calls_of = {
        name: (args.calls // 20 if name.startswith(("guard", "challenge: page")) else args.calls) for name in parts
    }
    for name, part in parts.items():  # warm up: memos, caches, first-use costs
        _time(part, min(calls_of[name], n))
    samples: dict[str, list[float]] = {name: [] for name in parts}
    samples["limits: origin gate acquire + release"] = []
    for _ in range(args.rounds):  # the baseline runs before every part, so both see the same moment's noise
        for name, part in parts.items():
            if name != "baseline: dict lookup":
                samples["baseline: dict lookup"].append(_time(baseline, args.calls))
                samples[name].append(_time(part, calls_of[name]))
        samples["baseline: dict lookup"].append(_time(baseline, args.calls))
        samples["limits: origin gate acquire + release"].append(asyncio.run(gate_calls(args.calls)))
    base = statistics.median(samples["baseline: dict lookup"])
    results = {}
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; medians of {args.rounds} rounds"
    )
    print(f"{'part':48} {'per call':>12} {'x baseline':>11} {'calls/s':>12}")
    for name, values in samples.items():
        median = statistics.median(values)
        results[name] = {"median_s": median, "ratio": median / base, "rounds": len(values)}
        print(f"{name:48} {median * 1e6:9.2f} µs {median / base:10.1f}x {1 / median:12,.0f}")
    print(f"guard: requests needing the exact match: {guard.exact_matches}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
