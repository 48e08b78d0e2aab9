"""How fast `watch` turns a flood in the log into an enforced ban, and what 100,000 bans cost nginx and nftables.

    .venv/bin/python benchmarks/bench_watch.py [--rate 50000] [--waves 4] [--bans 100000]

1. Latency: a writer process appends to a log on tmpfs (/dev/shm) at `--rate` lines per second in all: readers,
   and from the warm-up's end, flood waves (each from new addresses, 8 s of every 10) on top of the readers,
   bringing the total to the rate (readers 40 %, flood 60 %: a surge the site-level onset can see).
   The watcher (this process) follows the log with an nftables enforcer inside a network namespace
   (`ip netns add`); a ban is enforced when `nft` has accepted it. Latency per wave: from the writer's write of the
   wave's first line to the first of its addresses banned. The watcher's CPU (user + system, all its threads) is
   reported against wall time.
2. 100,000 banned addresses: `nginx -t` and reload of a real nginx (loopback port, temporary prefix) with a geo
   include of that size, until a newly banned address gets 403; one nft transaction adding them all, and an
   update of 1,000 more on top.

Bounded: the latency run lasts warm-up + waves x spacing seconds; everything is on loopback or in a namespace.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from floodwall.enforce import NftablesEnforcer, NginxMapEnforcer  # noqa: E402
from floodwall.model import Action, Decision  # noqa: E402
from floodwall.store import store_from_url  # noqa: E402
from floodwall.watch import Watcher  # noqa: E402
from nginx_run import NginxUnderTest, free_port  # type: ignore[import-not-found]  # noqa: E402
from watch_traffic import FLOOD_AGENTS, READER_AGENT, flood_addresses  # type: ignore[import-not-found]  # noqa: E402

WARMUP_S = 35
WAVE_S = 8
SPACING_S = 10
WAVE_ADDRESSES = 40


def stamp(at: float) -> str:
    return datetime.fromtimestamp(int(at), UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def writer(path: str, rate: int, waves: int, flood_share: float, starts: Any, stop: Any) -> None:
    """Appends readers' lines at `rate * (1 - flood_share)` a second, and during a wave the flood's on top, up to
    `rate` in all; in ticks of 0.1 s. Reports each wave's first write time on `starts` (a multiprocessing queue)."""
    rng = random.Random(3)
    pages = [f"/2024/11/0{d}/story-{k}/" for d in range(1, 4) for k in range(60)]
    # Readers: a page and its three assets; 60,000 addresses (a reader makes a view every ten seconds or so).
    templates = []
    for _ in range(4000):
        who = rng.randrange(60000)
        client = f"10.{who // 65536}.{who // 256 % 256}.{who % 256}"
        page = rng.choice(pages)
        for path_ in (page, "/static/style.css", "/static/app.js", "/static/logo.png"):
            templates.append(f'{client} - - [@] "GET {path_} HTTP/1.1" 200 5120 "https://x.test/" "{READER_AGENT}"\n')
    per_tick = rate // 10
    start = time.time()
    tick = 0
    sent: set[int] = set()
    with Path(path).open("a", encoding="ascii") as log:
        while not stop.is_set() and tick < (WARMUP_S + waves * SPACING_S + 5) * 10:
            now = time.time()
            elapsed = now - start
            wave = int((elapsed - WARMUP_S) // SPACING_S) if elapsed >= WARMUP_S else -1
            in_wave = 0 <= wave < waves and (elapsed - WARMUP_S) % SPACING_S < WAVE_S
            flood_n = int(per_tick * flood_share) if in_wave else 0
            when = stamp(now)
            offset = (tick * per_tick) % len(templates)
            readers_n = per_tick - int(per_tick * flood_share)  # readers always; a wave brings the total to `rate`
            lines = [templates[(offset + k) % len(templates)] for k in range(readers_n)]
            chunk = "".join(lines).replace("@", when)
            if flood_n:
                addresses = flood_addresses(WAVE_ADDRESSES, first=1 + wave * WAVE_ADDRESSES)
                chunk += "".join(
                    f'{addresses[k % WAVE_ADDRESSES]} - - [{when}] "GET /?r={rng.randrange(10**9)} HTTP/1.1" 200 '
                    f'5120 "-" "{FLOOD_AGENTS[k % len(FLOOD_AGENTS)]}"\n'
                    for k in range(flood_n)
                )
                if wave not in sent:  # the wave's first lines: note when they reached the file
                    log.write(chunk)
                    log.flush()
                    starts.put((wave, time.time()))
                    sent.add(wave)
                    chunk = ""
            log.write(chunk)
            log.flush()
            tick += 1
            time.sleep(max(0.0, start + tick * 0.1 - time.time()))


class TimedEnforcer:
    """Wraps an enforcer and records when each address was first banned (after the wrapped apply returned)."""

    def __init__(self, inner: NftablesEnforcer) -> None:
        self.inner = inner
        self.banned_at: dict[str, float] = {}

    def apply(self, decisions: Iterable[Decision]) -> None:
        decisions = list(decisions)
        self.inner.apply(decisions)
        done = time.time()
        for d in decisions:
            if d.action is Action.BAN:
                self.banned_at.setdefault(d.target, done)

    def revoke(self, targets: Iterable[str]) -> None:
        self.inner.revoke(targets)


def namespace() -> tuple[str, tuple[str, ...]]:
    name = f"fwbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    return name, ("ip", "netns", "exec", name, "nft")


def latency(rate: int, waves: int) -> None:
    name, nft = namespace()
    folder = Path(tempfile.mkdtemp(prefix="floodwall-bench-", dir="/dev/shm"))
    log = folder / "access.log"
    log.touch()
    try:
        enforcer = TimedEnforcer(NftablesEnforcer("inet/floodwall/banned", nft_command=nft))
        store = store_from_url(f"sqlite:///{folder}/state.db")
        watcher = Watcher(log, site="bench", store=store, enforcers=[enforcer])
        thread = threading.Thread(target=watcher.run, daemon=True)
        cpu0, wall0 = time.process_time(), time.monotonic()
        thread.start()
        starts: Any = mp.Queue()
        stop = mp.Event()
        proc = mp.Process(target=writer, args=(str(log), rate, waves, 0.6, starts, stop))
        proc.start()
        proc.join(timeout=WARMUP_S + waves * SPACING_S + 30)
        time.sleep(3)
        watcher.stop()
        thread.join(timeout=30)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        first: dict[int, float] = {}
        while not starts.empty():
            wave, at = starts.get()
            first[wave] = at
        results = []
        for wave in range(waves):
            addresses = flood_addresses(WAVE_ADDRESSES, first=1 + wave * WAVE_ADDRESSES)
            banned = [enforcer.banned_at[a] for a in addresses if a in enforcer.banned_at]
            if wave in first and banned:
                results.append((wave, min(banned) - first[wave], len(banned)))
        summary = watcher.summary
        print(f"latency at {rate:,} lines/s ({summary.lines:,} lines read in {wall:.0f} s):")
        for wave, seconds, count in results:
            kind = "onset" if wave == 0 else "during the surge"
            print(f"  wave {wave + 1} ({kind}): {seconds:.2f} s to the first ban, {count}/{WAVE_ADDRESSES} banned")
        missing = waves - len(results)
        if results:
            print(f"  median {statistics.median(s for _, s, _ in results):.2f} s over {len(results)} waves")
        if missing:
            print(f"  {missing} wave(s) never banned")
        reader_bans = [t for t in enforcer.banned_at if t.startswith("10.")]
        print(f"  readers banned: {len(reader_bans)}")
        print(f"  watcher CPU: {cpu:.1f} s over {wall:.1f} s wall ({100 * cpu / wall:.0f}% of one core)")
        store.close()
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def many_bans(count: int) -> None:
    now = datetime.now(UTC)
    decisions = [
        Decision(f"10.{k // 65536}.{k // 256 % 256}.{k % 256}", Action.BAN, now, now + timedelta(hours=1), ("bench",))
        for k in range(count)
    ]
    extra = [
        Decision(f"172.16.{k // 256}.{k % 256}", Action.BAN, now, now + timedelta(hours=1), ("bench",))
        for k in range(1000)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp)
        include = prefix / "banned.conf"
        include.write_text("")
        port = free_port()
        body = f"""
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    geo $floodwall_banned {{ default 0; include {include}; }}
    server {{ listen 127.0.0.1:{port}; if ($floodwall_banned) {{ return 403; }} location / {{ return 200; }} }}
"""
        with NginxUnderTest(prefix, body, port) as nginx:
            enforcer = NginxMapEnforcer(include, None, 0.0, nginx.test_command)
            started = time.monotonic()
            enforcer.apply(decisions)
            written_and_tested = time.monotonic() - started
            started = time.monotonic()
            subprocess.run(nginx.reload_command, check=True)
            while nginx.get("/", "10.0.0.5")[0] != 403:
                time.sleep(0.01)
            reloaded = time.monotonic() - started
            size = include.stat().st_size
            print(f"nginx, {count:,} banned addresses ({size / 1e6:.1f} MB include):")
            print(f"  render + nginx -t + rename: {written_and_tested:.2f} s; reload until enforced: {reloaded:.2f} s")
    name, nft = namespace()
    try:
        enforcer_nft = NftablesEnforcer("inet/floodwall/banned", nft_command=nft)
        enforcer_nft.ensure()
        started = time.monotonic()
        enforcer_nft.apply(decisions)
        added = time.monotonic() - started
        started = time.monotonic()
        enforcer_nft.apply(extra)
        updated = time.monotonic() - started
        print(f"nftables, {count:,} banned addresses: one transaction {added:.2f} s; 1,000 more on top {updated:.2f} s")
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=50_000)
    parser.add_argument("--waves", type=int, default=4)
    parser.add_argument("--bans", type=int, default=100_000)
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}")
    print(f"load average before: {os.getloadavg()}")
    if not args.skip_latency:
        latency(args.rate, args.waves)
    many_bans(args.bans)


if __name__ == "__main__":
    main()
