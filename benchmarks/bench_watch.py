"""How fast `watch` turns a flood in the log into an enforced ban, and what 100,000 bans cost nginx and nftables.

    .venv/bin/python benchmarks/bench_watch.py [--rate 50000] [--waves 6] [--spacing 10] [--bans 100000]
    .venv/bin/python benchmarks/bench_watch.py --skip-bans --waves 5 --spacing 75 --baseline-src OLD/src --repeat 1

1. Latency: a writer process appends to a log on tmpfs (/dev/shm) at `--rate` lines per second in all during the
   flood waves. Readers come from Floodwall's simulator (`floodwall.simulate`: its reader pool, visits and page
   views, with browsers' agents and referers), each address making a visit or two of one to a few pages with their
   assets, as people do; they make 40 % of the rate at all times. From the warm-up's end, flood waves (each from
   40 new addresses, 8 s of every `--spacing`, 10 by default) bring the total to the rate: a 2.5x surge the live
   onset must see. With `--spacing 75` or more each wave is a separate flood after quiet (a surge ends after 60 s
   below the threshold), so every wave's latency includes its onset.
   The watcher (this process) follows the log with an nftables enforcer inside a network namespace
   (`ip netns add`), and an nginx-map enforcer with a real nginx on a loopback port (reloads at most every 5 s, its
   default); a ban is enforced when `nft` has accepted it, and in nginx when a probe process (asking every 50 ms)
   gets 403 for the wave's first address. Latency per wave: from the writer's write of the
   wave's first line to the first of its addresses banned, split into stages: read (first line written to the
   batch holding it handed to the engine), surge (to the live onset being declared, for the first wave), judged
   (to the engine's finding on one of its addresses) and enforced (the policy, the store and `nft`). The watcher's
   CPU (user + system, all its threads) is reported against wall time, and the writer's achieved rate.
2. 100,000 banned addresses: `nginx -t` and reload of a real nginx (loopback port, temporary prefix) with a geo
   include of that size, until a newly banned address gets 403; one nft transaction adding them all, and an
   update of 1,000 more on top.

`--baseline-src DIR [DIR ...]` (other versions' `src` folders, e.g. `git worktree`s of older commits) measures
latency with those versions too: each run is a child process of this script (PYTHONPATH set to the version's
`src`), the versions taking turns `--repeat` times, so all see the same machine load; a table then puts them side
by side (a wave never banned before the run ended is counted apart, not in the median).

Bounded: the latency run lasts warm-up + waves x spacing seconds; everything is on loopback or in a namespace.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import floodwall.logs.parse as log_parse  # noqa: E402
from floodwall.enforce import NftablesEnforcer, NginxMapEnforcer  # noqa: E402
from floodwall.model import Action, Decision, Finding  # noqa: E402
from floodwall.store import store_from_url  # noqa: E402
from floodwall.watch import Watcher  # noqa: E402
from nginx_run import NginxUnderTest, free_port  # type: ignore[import-not-found]  # noqa: E402
from watch_traffic import FLOOD_AGENTS, flood_addresses, write_simulated_readers  # type: ignore[import-not-found]  # noqa: E402

WARMUP_S = 40
WAVE_S = 8
WAVE_ADDRESSES = 40
READER_SHARE = 0.4


NGINX_MIN_INTERVAL_S = 5.0  # the nginx-map enforcer's default reload interval
NGINX_BODY = """
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    geo $floodwall_banned { default 0; include INCLUDE; }
    server {
        listen 127.0.0.1:{port}; access_log off;
        if ($floodwall_banned) { return 403; }
        location / { return 200; }
    }
"""


def lead_s(seconds: int) -> int:
    """Seconds the writer takes to generate `seconds` of readers before it starts (generously)."""
    return 15 + seconds // 6


def stamp(at: float) -> str:
    return datetime.fromtimestamp(int(at), UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def writer(path: str, rate: int, waves: int, spacing_s: int, starts: Any, done: Any, stop: Any) -> None:
    """Appends the simulated readers' lines as their time comes, and during a wave the flood's on top, up to
    `rate` in all; in ticks of 0.1 s. Reports each wave's first write time on `starts` and the lines written per
    second of waves on `done` (multiprocessing queues)."""
    rng = random.Random(3)
    seconds = WARMUP_S + waves * spacing_s + 10
    begin = float(int(time.time()) + lead_s(seconds))
    readers_path = Path(path).with_name("readers.log")
    reader_ts, reader_ends = write_simulated_readers(readers_path, begin, seconds, int(rate * READER_SHARE), seed=3)
    flood_per_tick = int(rate * (1 - READER_SHARE)) // 10
    time.sleep(max(0.0, begin - time.time()))
    sent: set[int] = set()
    position = 0
    copied = 0  # bytes of the readers' file copied so far
    wave_lines = 0
    wave_time = 0.0
    tick = 0
    with Path(path).open("ab") as log, readers_path.open("rb") as readers:
        while not stop.is_set() and tick < seconds * 10:
            now = time.time()
            elapsed = now - begin
            wave = int((elapsed - WARMUP_S) // spacing_s) if elapsed >= WARMUP_S else -1
            in_wave = 0 <= wave < waves and (elapsed - WARMUP_S) % spacing_s < WAVE_S
            upto = int(reader_ts.searchsorted(now, side="right"))
            end = int(reader_ends[upto - 1]) if upto else 0
            chunk = readers.read(end - copied)
            copied = end
            written = upto - position
            position = upto
            if in_wave:
                when = stamp(now)
                addresses = flood_addresses(WAVE_ADDRESSES, first=1 + wave * WAVE_ADDRESSES)
                flood = "".join(
                    f'{addresses[k % WAVE_ADDRESSES]} - - [{when}] "GET /?r={rng.randrange(10**9)} HTTP/1.1" 200 '
                    f'5120 "-" "{FLOOD_AGENTS[k % len(FLOOD_AGENTS)]}"\n'
                    for k in range(flood_per_tick)
                ).encode("ascii")
                written += flood_per_tick
                if wave not in sent:  # the wave's first lines: note when they reached the file
                    log.write(flood)
                    log.flush()
                    starts.put((wave, time.time()))
                    sent.add(wave)
                else:
                    chunk += flood
                wave_lines += written
                wave_time += 0.1
            log.write(chunk)
            log.flush()
            tick += 1
            time.sleep(max(0.0, begin + tick * 0.1 - time.time()))
    readers_path.unlink()
    done.put((wave_lines, wave_time, len(reader_ts)))


def probe(port: int, waves: int, refused: Any, stop: Any) -> None:
    """Asks nginx every 50 ms for each wave's first address until it answers 403; reports (wave, time) on
    `refused`. Runs in its own process, so the watcher's CPU is its own."""
    pending = {wave: flood_addresses(1, first=1 + wave * WAVE_ADDRESSES)[0] for wave in range(waves)}
    while pending and not stop.is_set():
        for wave, address in list(pending.items()):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"X-Forwarded-For": address})
            try:
                with urllib.request.urlopen(request, timeout=2):
                    pass
            except urllib.error.HTTPError as error:
                if error.code == 403:
                    refused.put((wave, time.time()))
                    del pending[wave]
            except OSError:
                pass
        time.sleep(0.05)


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


class TimedEngine:
    """Wraps the watcher's engine: when each client was first handed to it, when the live onset was declared,
    when each client was first found, and how long each batch took."""

    def __init__(self, watcher: Watcher) -> None:
        self.engine = watcher.engine
        self.fed_at: dict[str, float] = {}
        self.found_at: dict[str, float] = {}
        self.surges_at: list[float] = []  # when each live onset was declared
        self.batch_s: list[float] = []
        self.batch_cpu_s: list[float] = []  # the process's CPU (all threads: polars works on several)
        self.batch_rows: list[int] = []
        self._feed = self.engine.feed
        self._surging = False
        self.engine.feed = self.feed  # type: ignore[method-assign]

    def feed(self, frame: pl.DataFrame) -> list[Finding]:
        arrived = time.time()
        cpu = time.process_time()
        for client in frame.get_column("client").filter(frame.get_column("client").str.starts_with("203.0.")).unique():
            self.fed_at.setdefault(client, arrived)
        found = self._feed(frame)
        done = time.time()
        self.batch_s.append(done - arrived)
        self.batch_cpu_s.append(time.process_time() - cpu)
        self.batch_rows.append(frame.height)
        live = self.engine._live
        surging = live is not None and live.surge_start is not None
        if surging and not self._surging:
            self.surges_at.append(done)
        self._surging = surging
        for finding in found:
            self.found_at.setdefault(finding.target, done)
        return found


def namespace() -> tuple[str, tuple[str, ...]]:
    name = f"fwbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    return name, ("ip", "netns", "exec", name, "nft")


def _first(times: dict[str, float], addresses: list[str]) -> float | None:
    found = [times[a] for a in addresses if a in times]
    return min(found) if found else None


def latency(rate: int, waves: int, spacing_s: int) -> dict[str, Any]:
    """Runs the latency measurement, prints it, and returns its figures (for `--result-json`)."""
    name, nft = namespace()
    folder = Path(tempfile.mkdtemp(prefix="floodwall-bench-", dir="/dev/shm"))
    log = folder / "access.log"
    log.touch()
    try:
        enforcer = TimedEnforcer(NftablesEnforcer("inet/floodwall/banned", nft_command=nft))
        store = store_from_url(f"sqlite:///{folder}/state.db")
        include = folder / "banned.conf"
        include.write_text("")
        nginx = NginxUnderTest(folder, NGINX_BODY.replace("INCLUDE", str(include)))
        nginx.start()
        nginx_map = NginxMapEnforcer(include, nginx.reload_command, NGINX_MIN_INTERVAL_S, nginx.test_command)
        watcher = Watcher(log, site="bench", store=store, enforcers=[enforcer, nginx_map])
        timed = TimedEngine(watcher)
        thread = threading.Thread(target=watcher.run, daemon=True)
        starts: Any = mp.Queue()
        done: Any = mp.Queue()
        refused: Any = mp.Queue()
        stop = mp.Event()
        proc = mp.Process(target=writer, args=(str(log), rate, waves, spacing_s, starts, done, stop))
        proc.start()
        prober = mp.Process(target=probe, args=(nginx.port, waves, refused, stop))
        prober.start()
        time.sleep(lead_s(WARMUP_S + waves * spacing_s + 10) - 1)  # the writer prepares its readers meanwhile
        cpu0, wall0 = time.process_time(), time.monotonic()
        thread.start()
        proc.join(timeout=WARMUP_S + waves * spacing_s + 90)
        time.sleep(NGINX_MIN_INTERVAL_S + 3)
        watcher.stop()
        thread.join(timeout=30)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        stop.set()
        prober.join(timeout=10)
        nginx.stop()
        in_nginx: dict[int, float] = {}
        while not refused.empty():
            wave, at = refused.get()
            in_nginx[wave] = at
        first: dict[int, float] = {}
        while not starts.empty():
            wave, at = starts.get()
            first[wave] = at
        wave_lines, wave_time, reader_total = done.get(timeout=10)
        summary = watcher.summary
        print(
            f"latency at {rate:,} lines/s asked, {wave_lines / max(wave_time, 1e-9):,.0f} lines/s achieved during "
            f"the waves ({summary.lines:,} lines read in {wall:.0f} s, {reader_total:,} of them simulated readers):"
        )
        totals = []
        for wave in range(waves):
            addresses = flood_addresses(WAVE_ADDRESSES, first=1 + wave * WAVE_ADDRESSES)
            banned = _first(enforcer.banned_at, addresses)
            if wave not in first or banned is None:
                print(f"  wave {wave + 1}: never banned")
                continue
            written = first[wave]
            fed = _first(timed.fed_at, addresses)
            found = _first(timed.found_at, addresses)
            count = sum(1 for a in addresses if a in enforcer.banned_at)
            stages = [f"read {fed - written:.2f}" if fed else "read ?"]
            surge_at = next((at for at in timed.surges_at if fed is not None and at >= fed), None)
            onset = surge_at if surge_at is not None and found is not None and surge_at <= found else None
            if onset is not None and fed is not None:
                stages.append(f"surge +{onset - fed:.2f}")
            if found is not None:
                stages.append(f"judged +{found - (onset or fed or written):.2f}")
                stages.append(f"enforced +{banned - found:.2f}")
            if wave in in_nginx:
                stages.append(f"nginx 403 {in_nginx[wave] - written:.2f} after the first line")
            totals.append(banned - written)
            kind = "onset" if onset is not None else "during the surge"
            print(
                f"  wave {wave + 1} ({kind}): {banned - written:.2f} s to the first ban ({', '.join(stages)} s), "
                f"{count}/{WAVE_ADDRESSES} banned"
            )
        if totals:
            print(f"  median {statistics.median(totals):.2f} s over {len(totals)} waves (max {max(totals):.2f} s)")
        flood = {a for w in range(waves) for a in flood_addresses(WAVE_ADDRESSES, first=1 + w * WAVE_ADDRESSES)}
        others = [t for t in watcher.active if t not in flood]
        print(f"  others decided (readers): {len(others)} {sorted(others)[:5]}")
        batches, cpus = sorted(timed.batch_s), sorted(timed.batch_cpu_s)
        print(
            f"  engine per batch: median {statistics.median(batches):.3f} s wall, {statistics.median(cpus):.3f} s CPU; "
            f"max {batches[-1]:.3f} s wall, {cpus[-1]:.3f} s CPU ({len(batches)} batches, median "
            f"{statistics.median(timed.batch_rows):,.0f} rows)"
        )
        print(f"  watcher CPU: {cpu:.1f} s over {wall:.1f} s wall ({100 * cpu / wall:.0f}% of one core)")
        slowest = sorted(zip(timed.batch_s, timed.batch_cpu_s, timed.batch_rows, strict=True), reverse=True)[:3]
        print("  slowest batches: " + ", ".join(f"{w:.2f} s wall / {c:.2f} s CPU / {r:,} rows" for w, c, r in slowest))
        store.close()
        return {
            "waves_s": totals,
            "readers_decided": len(others),
            "cpu_share": cpu / wall,
            "batch_wall_median_s": statistics.median(batches),
            "batch_wall_max_s": batches[-1],
            "load": os.getloadavg()[0],
        }
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(folder, ignore_errors=True)


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
        restoring = NftablesEnforcer("inet/floodwall/banned", nft_command=nft)
        restoring.ensure()
        started = time.monotonic()
        restoring.apply(decisions)  # a first apply replaces whatever the kernel kept: add, delete, add
        restored = time.monotonic() - started
        running = NftablesEnforcer("inet/floodwall/fresh", nft_command=nft)
        running.apply(extra[:1])  # past its first apply: bans on targets it never added are one add each
        started = time.monotonic()
        running.apply(decisions)
        added = time.monotonic() - started
        started = time.monotonic()
        running.apply(extra)
        updated = time.monotonic() - started
        print(
            f"nftables, {count:,} banned addresses: restored in one transaction {restored:.2f} s (add, delete, add "
            f"each); added by a running watcher {added:.2f} s (one add each); 1,000 more on top {updated:.2f} s"
        )
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def overlay(baseline_src: Path, into: Path) -> Path:
    """A copy of `baseline_src` with the modules it lacks taken from this `src`: the harness (tests/nginx_run.py,
    tests/watch_traffic.py) may use modules newer than the baseline, which the baseline's own code never imports."""
    shutil.copytree(baseline_src, into)
    added = []
    for module in (ROOT / "src" / "floodwall").rglob("*.py"):
        target = into / "floodwall" / module.relative_to(ROOT / "src" / "floodwall")
        if not target.exists() and target.parent.exists():
            shutil.copy2(module, target)
            added.append(str(target.relative_to(into)))
    if added:
        print(f"baseline: added modules it lacks, for the harness: {', '.join(sorted(added))}")
    return into


def side_by_side(baselines: list[Path], rate: int, waves: int, spacing_s: int, repeat: int) -> None:
    """Latency of this version and of each of `baselines`, each run a child process of this script, in turn."""
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"this": str(ROOT / "src")}
        for k, baseline_src in enumerate(baselines):
            name = "baseline" if len(baselines) == 1 else f"baseline{k + 1}"
            versions[name] = str(overlay(baseline_src, Path(tmp) / name))
            print(f"{name}: {baseline_src}")
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
        for round_ in range(repeat):
            for name, src in versions.items():
                out = Path(tmp) / f"{name}-{round_}.json"
                command = [sys.executable, __file__, "--skip-bans", "--rate", str(rate), "--waves", str(waves)]
                command += ["--spacing", str(spacing_s), "--result-json", str(out)]
                print(f"--- {name} ({src}), run {round_ + 1} of {repeat}", flush=True)
                subprocess.run(command, env={**os.environ, "PYTHONPATH": src}, check=True)
                runs[name].append(json.loads(out.read_text()))
    print(f"side by side ({repeat} run(s) each, alternating; first line to first ban, per wave):")
    for name, figures in runs.items():
        waves_s = [w for run in figures for w in run["waves_s"]]
        never = waves * len(figures) - len(waves_s)
        median = f"{statistics.median(waves_s):.2f} s" if waves_s else "none banned"
        cpu = ", ".join(f"{100 * run['cpu_share']:.0f}%" for run in figures)
        load = ", ".join(f"{run['load']:.1f}" for run in figures)
        print(
            f"  {name:9}: median {median} over {len(waves_s)} waves ({', '.join(f'{w:.2f}' for w in waves_s)}), "
            f"{never} never banned; "
            f"readers decided {sum(run['readers_decided'] for run in figures)}; watcher CPU "
            f"{cpu} of one core; load average at the end {load}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=50_000)
    parser.add_argument("--waves", type=int, default=6)
    parser.add_argument(
        "--spacing",
        type=int,
        default=10,
        help="seconds from one wave's start to the next; above 70 each wave is a new onset (a surge ends after 60 s)",
    )
    parser.add_argument("--bans", type=int, default=100_000)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-bans", action="store_true")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        nargs="+",
        help="other versions' src folders: their latency is measured too, in turn with this one's",
    )
    parser.add_argument("--repeat", type=int, default=1, help="latency runs per version with --baseline-src")
    parser.add_argument("--result-json", type=Path, help=argparse.SUPPRESS)  # a child run's figures, for the parent
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}")
    print(f"load average before: {os.getloadavg()}, nice {os.nice(0)}")
    # Without the C scanner (a build artefact: absent from a `git archive` copy) every line takes the strict parser.
    scanner = getattr(log_parse, "_clfscan", None) is not None  # older versions have no fast_path_available()
    print(f"log parser: {'the C scanner' if scanner else 'the strict per-line parser only (C scanner not built)'}")
    if args.baseline_src is not None and not args.skip_latency:
        side_by_side(args.baseline_src, args.rate, args.waves, args.spacing, args.repeat)
    elif not args.skip_latency:
        figures = latency(args.rate, args.waves, args.spacing)
        if args.result_json is not None:
            args.result_json.write_text(json.dumps(figures))
    if not args.skip_bans:
        many_bans(args.bans)


if __name__ == "__main__":
    main()
