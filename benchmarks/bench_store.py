"""How fast the store path is: DecisionCache lookups (against a plain set), put latency, and propagation latency.

    .venv/bin/python benchmarks/bench_store.py [--samples 50]

Loopback only: Redis runs as a throwaway redis-server on a free 127.0.0.1 port, without persistence, stopped at
the end. Propagation is the time from `put` on one store object to `lookup` answering on a cache that another
store object keeps in sync (SQLite: polling; Redis: pub/sub).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from floodwall.localservers import REDIS_SERVER, RedisServer
from floodwall.model import Action
from floodwall.store import CacheSync, DecisionCache, RedisStore, SQLiteStore
from floodwall.testing import make_decision, wait_until
from floodwall.types import Store


def rate(label: str, probes: list[str], lookup: Callable[[str], object]) -> float:
    started = time.perf_counter()
    for address in probes:
        lookup(address)
    per_s = len(probes) / (time.perf_counter() - started)
    print(f"  {label:<52} {per_s / 1e6:6.2f} M lookups/s")
    return per_s


def bench_lookup() -> None:
    rng = random.Random(1)
    banned = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(100_000)]
    probes = [
        rng.choice(banned) if n % 2 else str(ipaddress.IPv4Address(rng.getrandbits(32))) for n in range(1_000_000)
    ]
    now = datetime.now(UTC)
    cache = DecisionCache()
    cache.apply(make_decision(address, now) for address in banned)
    plain = set(banned)
    print("DecisionCache.lookup, 100k banned addresses, 1M probes (half hits):")
    baseline = rate("baseline: `address in set`", probes, plain.__contains__)
    exact = rate("DecisionCache.lookup, addresses only", probes, cache.lookup)
    cache.apply(make_decision(f"100.{n // 256}.{n % 256}.0/24", now) for n in range(2_000))
    cache.apply(make_decision(f"100.{n}.0.0/16", now, action=Action.CHALLENGE) for n in range(100, 200))
    cache.apply(make_decision(f"2001:db8:{n:x}::/48", now) for n in range(2_000))
    prefixed = rate("DecisionCache.lookup, + 2.1k IPv4 /24,/16 + 2k IPv6 /48", probes, cache.lookup)
    print(f"  ratio to the set: {exact / baseline:.2f} (addresses only), {prefixed / baseline:.2f} (with prefixes)")


def bench_propagation(label: str, writer: Store, follower: Store, samples: int) -> None:
    cache = DecisionCache()
    sync = CacheSync(follower, cache)
    try:
        assert sync.wait_synced(10), "cache did not sync"
        put_ms: list[float] = []
        seen_ms: list[float] = []
        for n in range(samples):
            address = f"10.{n // 65536}.{n // 256 % 256}.{n % 256}"
            started = time.perf_counter()
            writer.put([make_decision(address, datetime.now(UTC))])
            put_ms.append((time.perf_counter() - started) * 1000)
            assert wait_until(lambda a=address: cache.lookup(a) is not None, within_s=5, every_s=0.0005)
            seen_ms.append((time.perf_counter() - started) * 1000)
        seen_ms.sort()
        print(
            f"  {label:<36} put median {statistics.median(put_ms):7.2f} ms | "
            f"seen by the other cache: median {statistics.median(seen_ms):7.2f} ms, "
            f"p95 {seen_ms[int(len(seen_ms) * 0.95) - 1]:7.2f} ms, max {seen_ms[-1]:7.2f} ms ({samples} samples)"
        )
    finally:
        sync.close()
        writer.close()
        follower.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50, help="decisions put per propagation measurement")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    bench_lookup()
    print("put and propagation (one decision per put):")
    with tempfile.TemporaryDirectory() as directory:
        for interval_s in (0.5, 0.05):
            path = Path(directory) / f"bench-{interval_s}.db"
            bench_propagation(
                f"sqlite, polling every {interval_s} s",
                SQLiteStore(path, poll_interval_s=interval_s),
                SQLiteStore(path, poll_interval_s=interval_s),
                samples=args.samples if interval_s < 0.5 else max(10, args.samples // 3),
            )
        if REDIS_SERVER is None:
            print("  redis: skipped, redis-server is not installed")
        else:
            with RedisServer(Path(directory)) as redis:
                bench_propagation("redis, pub/sub", RedisStore(redis.url), RedisStore(redis.url), args.samples * 4)


if __name__ == "__main__":
    main()
