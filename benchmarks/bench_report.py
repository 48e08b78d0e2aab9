"""Where `analyze`'s time goes on a large log: read + detect, the forensic pass, and writing the account.

    .venv/bin/python benchmarks/bench_report.py                       # simulates hano-like at --scale 0.4
    .venv/bin/python benchmarks/bench_report.py --log big.log --site szabad-hang --timezone Europe/Budapest

Issue 5 asks that forensics and report writing take at most 30% of the time of analysing 5M lines. Attackers are
known only after detection, so the forensic pass reads the batches a second time: here from a `FrameSpool` the
detection pass filled (its cost is counted as forensics); the time parsing the log again would take is printed
for comparison. Report sizes are printed too.

With `--spool` the same batches also go to a spool of the other format (Arrow IPC with LZ4, the spool's first
format) and both are read back: CPU seconds to write and to read each, and bytes on disk, side by side.

With `--stages DIR` it measures `analyze`'s last three stages alone, this version against `--baseline-src` (another
version's `src`), alternating, `--repeat` times, each run a child process:

    .venv/bin/python benchmarks/bench_report.py --log big.log --site szabad-hang --stages /tmp/stages \
        --baseline-src /tmp/old/src --repeat 3

With `--judging DIR` it measures the judging stage (`Engine.finish`) alone the same way, and says whether both
versions judged the same:

    .venv/bin/python benchmarks/bench_report.py --log big.log --site szabad-hang --judging /tmp/judging \
        --baseline-src /tmp/old/src --repeat 3

For --stages, the log is read and detected once (by this version) into DIR: the detection result (pickled) and the
batches as the spool holds them. Each child then spools those batches, runs the forensic pass and writes every file,
with `analyze`'s own functions (`analyze.forensic_account`, `_write_outputs`), and reports wall
and CPU seconds per stage: the process's CPU while only that stage runs (in `analyze`, the reader's read-ahead
thread can run during "spooling"). Medians and new/old ratios are printed. The baseline must unpickle this version's
detection result (the same `DetectionResult` fields) and have `analyze.forensic_account` (sixth session on).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from floodwall.detect import Engine
from floodwall.errors import FloodwallError
from floodwall.forensics import FingerprintAccumulator, Forensics, FrameSpool
from floodwall.forensics.spool import FORENSIC_COLUMNS
from floodwall.geo import open_geo
from floodwall.logs import LogReader
from floodwall.report.outputs import write_account
from floodwall.simulate import load_scenario, simulate


def _largest_site(sim: Path) -> tuple[Path, str, str]:
    truth = json.loads((sim / "truth.json").read_text())
    site = max(truth["sites"], key=lambda s: s["lines"])
    return sim / site["log"], site["name"], site["timezone"]


STAGES = ("spooling", "forensics", "writing")


def prepare_stages(log: Path, site: str, folder: Path) -> None:
    """Read and detect `log` once: the detection result and the reader's input stats pickled into `folder`, and the
    batches as parquet files of the columns the spool keeps."""
    folder.mkdir(parents=True, exist_ok=True)
    reader = LogReader([log], site=site)
    engine = Engine(site, live=False)
    for number, frame in enumerate(reader):
        engine.feed(frame)
        kept = frame.select(name for name in FORENSIC_COLUMNS if name in frame.columns)
        kept.write_parquet(folder / f"{number:06d}.parquet", compression="uncompressed", statistics=False)
    (folder / "detection.pickle").write_bytes(pickle.dumps((engine.finish(), reader.inputs)))


def run_stages(folder: Path, out: Path) -> dict[str, tuple[float, float]]:
    """`analyze`'s spooling, forensics and writing stages on `prepare_stages`'s result: (wall, CPU) seconds each."""
    import polars as pl

    import floodwall.analyze
    from floodwall.analyze import _open_geo, _write_outputs
    from floodwall.decide import Allowlist, Policy

    forensic_account = getattr(floodwall.analyze, "forensic_account", None)
    if forensic_account is None:
        sys.exit("this version's analyze has no forensic_account (before the sixth session): --stages cannot time it")
    from floodwall.report.html import preload_templates

    detection, inputs = pickle.loads((folder / "detection.pickle").read_bytes())
    frames = [pl.read_parquet(path) for path in sorted(folder.glob("*.parquet"))]
    started = datetime.now(UTC)
    decisions = Policy(allowlist=Allowlist()).decide(
        detection.findings, now=detection.window_end or started, site=detection.site
    )
    times: dict[str, tuple[float, float]] = {}

    def timed() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def done(name: str, mark: tuple[float, float]) -> None:
        times[name] = (time.perf_counter() - mark[0], time.process_time() - mark[1])

    with FrameSpool(columns=FORENSIC_COLUMNS) as spool:
        mark = timed()
        for frame in frames:
            spool.add(frame)
        done("spooling", mark)
        mark = timed()
        preload_templates()  # as analyze does
        geo = _open_geo()
        out.mkdir(parents=True, exist_ok=True)
        document, account, fingerprints = forensic_account(
            spool.frames,
            site=detection.site,
            detection=detection,
            decisions=decisions,
            inputs=inputs,
            geo=geo,
        )
        done("forensics", mark)
    mark = timed()
    _write_outputs(
        out,
        site=detection.site,
        document=document,
        account=account,
        detection=detection,
        decisions=decisions,
        inputs=inputs,
        fingerprints=fingerprints,
        command_line=["bench_report.py"],
        coalition_key=b"bench-report-coalition-key-32byt",
        public=True,
        started=started,
        geo=geo,
    )
    done("writing", mark)
    if geo is not None:
        geo.close()
    return times


def run_children(
    flag: str,
    folder: Path,
    output: Callable[[str], Path],
    baseline_src: Path | None,
    repeat: int,
    cpu_of_run: Callable[[Any], float],
) -> dict[str, list[Any]]:
    """This script as a child (`flag folder output(name)`), this version ("new") and `baseline_src`'s ("old")
    alternating, `repeat` times each: every run's result, the JSON of its last line of output. A failing child
    stops the benchmark with its last line of errors."""
    versions: list[tuple[str, dict[str, str] | None]] = [("new", None)]
    if baseline_src is not None:
        versions.append(("old", {**os.environ, "PYTHONPATH": str(baseline_src.resolve())}))
    runs: dict[str, list[Any]] = {name: [] for name, _ in versions}
    for number in range(repeat):
        for name, env in versions:
            argv = [sys.executable, __file__, flag, str(folder), str(output(name))]
            result = subprocess.run(argv, check=False, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"the {name} version failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
            runs[name].append(json.loads(result.stdout.strip().splitlines()[-1]))
            cpu = cpu_of_run(runs[name][-1])
            print(f"  {name} run {number + 1}/{repeat}: {cpu:.2f} CPU-s", file=sys.stderr, flush=True)
    return runs


def compare_stages(folder: Path, baseline_src: Path | None, repeat: int) -> None:
    """`run_stages` in child processes, this version and the baseline alternating; medians and ratios printed."""
    runs: dict[str, list[dict[str, list[float]]]] = run_children(
        "--stage-child",
        folder,
        lambda name: folder / f"out-{name}",
        baseline_src,
        repeat,
        lambda result: sum(cpu for _, cpu in result.values()),
    )
    print(f"medians of {repeat} (wall s / CPU s):")
    for stage in (*STAGES, "total"):
        names = STAGES if stage == "total" else (stage,)
        cells = []
        for name, each in runs.items():
            wall = statistics.median(sum(r[s][0] for s in names) for r in each)
            cells.append(f"{name} {wall:6.2f} / {cpu_of(each, stage):6.2f}")
        if "old" in runs:
            cells.append(f"CPU new/old {cpu_of(runs['new'], stage) / max(cpu_of(runs['old'], stage), 1e-9):.2f}")
        print(f"  {stage:10s} " + "   ".join(cells))


def prepare_judging(log: Path, site: str, folder: Path) -> None:
    """Read and detect `log` once, and keep what `Engine.finish` starts from: every closed window (Arrow IPC, one
    file per part), the per-second counts, the signature hits and the user agents. It reads the engine's private
    state, as it stands today (`_closed`, `_windows`, `_counter`, `_hits`, `_agents`)."""
    import polars as pl

    folder.mkdir(parents=True, exist_ok=True)
    engine = Engine(site, live=False)
    for frame in LogReader([log], site=site):
        engine.feed(frame)
    engine._closed.add(engine._windows.flush())
    for number, part in enumerate(engine._closed.parts()):
        part.write_ipc(folder / f"windows-{number:05d}.arrow")
    engine._counter.frame().write_ipc(folder / "seconds.arrow")
    hits = pl.concat(engine._hits) if engine._hits else None
    (folder / "engine.pickle").write_bytes(pickle.dumps((site, hits, engine._agents)))


def run_judging(folder: Path, out: Path) -> tuple[float, float]:
    """`Engine.finish` on `prepare_judging`'s state (scikit-learn imported first, as analyze's preload does): its
    wall and CPU seconds; the result pickled into `out`."""
    import importlib

    import polars as pl

    site, hits, agents = pickle.loads((folder / "engine.pickle").read_bytes())
    engine = Engine(site, live=False)
    for path in sorted(folder.glob("windows-*.arrow")):
        engine._closed.add(pl.read_ipc(path))
    engine._counter._parts = [pl.read_ipc(folder / "seconds.arrow")]
    engine._hits = [hits] if hits is not None else []
    engine._agents = agents
    importlib.import_module("sklearn.ensemble")
    wall, cpu = time.perf_counter(), time.process_time()
    result = engine.finish()
    times = (time.perf_counter() - wall, time.process_time() - cpu)
    out.write_bytes(pickle.dumps(result))
    return times


def compare_judging(folder: Path, baseline_src: Path | None, repeat: int) -> None:
    """`run_judging` in child processes, this version and the baseline alternating: medians, the CPU ratio, and
    whether both judged the same (incidents, findings, attackers, timeline, surges; row order aside)."""
    import dataclasses

    import polars as pl

    runs: dict[str, list[tuple[float, float]]] = run_children(
        "--judging-child",
        folder,
        lambda name: folder / f"result-{name}.pickle",
        baseline_src,
        repeat,
        lambda result: float(result[1]),
    )
    print(f"Engine.finish, medians of {repeat} (wall s / CPU s):")
    cpu = {name: statistics.median(c for _, c in each) for name, each in runs.items()}
    cells = [f"{name} {statistics.median(w for w, _ in each):6.2f} / {cpu[name]:6.2f}" for name, each in runs.items()]
    if "old" in cpu:
        cells.append(f"CPU new/old {cpu['new'] / max(cpu['old'], 1e-9):.2f}")
    print("  judging    " + "   ".join(cells))
    if "old" not in cpu:
        return
    new, old = (pickle.loads((folder / f"result-{name}.pickle").read_bytes()) for name in ("new", "old"))
    differ = []
    for item in dataclasses.fields(new):
        a, b = getattr(new, item.name), getattr(old, item.name)
        if item.name == "analysed_at":
            continue
        if isinstance(a, pl.DataFrame):
            same = a.height == b.height and a.sort(pl.all()).equals(b.sort(pl.all()))
        elif item.name == "findings":
            same = sorted(a, key=repr) == sorted(b, key=repr)
        else:
            same = a == b
        if not same:
            differ.append(item.name)
    print("  results: " + (f"differ in {', '.join(differ)}" if differ else "the same (row order aside)"))


def cpu_of(runs: list[dict[str, list[float]]], stage: str) -> float:
    """The median CPU seconds of `stage` (or of all three: "total") over `runs`."""
    names = STAGES if stage == "total" else (stage,)
    return statistics.median(sum(r[s][1] for s in names) for r in runs)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--stage-child":
        print(json.dumps(run_stages(Path(sys.argv[2]), Path(sys.argv[3]))))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--judging-child":
        print(json.dumps(run_judging(Path(sys.argv[2]), Path(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, help="an access log (default: simulate one)")
    parser.add_argument("--site", default="bench-site")
    parser.add_argument("--timezone", default="UTC")
    parser.add_argument("--scale", type=float, default=0.4)
    parser.add_argument("--out", type=Path, help="where to write the reports (default: a temporary folder)")
    parser.add_argument("--spool", action="store_true", help="also spool to Arrow IPC with LZ4 and compare")
    parser.add_argument(
        "--stages", type=Path, help="measure analyze's last three stages alone, prepared in this folder"
    )
    parser.add_argument(
        "--judging", type=Path, help="measure analyze's judging stage (Engine.finish) alone, prepared in this folder"
    )
    parser.add_argument(
        "--baseline-src", type=Path, help="with --stages or --judging: another version's src folder, run alternately"
    )
    parser.add_argument("--repeat", type=int, default=3, help="with --stages or --judging: runs of each version")
    args = parser.parse_args()
    # The two modes that time one part of analyze: what each prepares once into its folder, then compares.
    modes = (
        ("--judging", args.judging, "engine.pickle", prepare_judging, compare_judging),
        ("--stages", args.stages, "detection.pickle", prepare_stages, compare_stages),
    )
    for flag, folder, prepared, prepare, compare in modes:
        if folder is None:
            continue
        if args.log is None:
            sys.exit(f"{flag} needs --log (and --site)")
        if not (folder / prepared).exists():
            prepare(args.log, args.site, folder)
        compare(folder, args.baseline_src, args.repeat)
        return

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        if args.log is None:
            started = time.perf_counter()
            simulate(load_scenario("hano-like"), Path(tmp) / "sim", seed=7, scale=args.scale)
            log, site, zone = _largest_site(Path(tmp) / "sim")
            print(f"simulated hano-like at scale {args.scale} in {time.perf_counter() - started:.1f} s")
        else:
            log, site, zone = args.log, args.site, args.timezone
        out = args.out or Path(tmp) / "out"
        out.mkdir(parents=True, exist_ok=True)

        t0 = time.perf_counter()
        reader = LogReader([log], site=site)
        engine = Engine(site, live=False)
        spool = FrameSpool(columns=FORENSIC_COLUMNS)
        other = FrameSpool(columns=FORENSIC_COLUMNS, fmt="ipc-lz4") if args.spool else None
        spool_s = 0.0
        spool_cpu = {"parquet": 0.0, "ipc-lz4": 0.0}
        for frame in reader:
            engine.feed(frame)
            mark, cpu = time.perf_counter(), time.process_time()
            spool.add(frame)
            spool_s += time.perf_counter() - mark
            spool_cpu["parquet"] += time.process_time() - cpu
            if other is not None:
                cpu = time.process_time()
                other.add(frame)
                spool_cpu["ipc-lz4"] += time.process_time() - cpu
        detection = engine.finish()
        t1 = time.perf_counter()
        print(
            f"read + detect: {t1 - t0 - spool_s:.1f} s (+ spooling {spool_s:.1f} s, {spool.bytes:,} bytes)", flush=True
        )

        if other is not None:
            for name, each in (("parquet", spool), ("ipc-lz4", other)):
                cpu = time.process_time()
                for _ in each.frames():
                    pass
                read_cpu = time.process_time() - cpu
                print(f"  spool {name:8s} write {spool_cpu[name]:6.2f} CPU-s, read back {read_cpu:6.2f} CPU-s,"
                      f" {each.bytes / max(each.rows, 1):5.1f} bytes per request")  # fmt: skip
            other.close()
        mark = time.perf_counter()
        second = LogReader([log], site=site)
        for _ in second:
            pass
        reread_s = time.perf_counter() - mark
        fingerprints = FingerprintAccumulator()  # fed the attack rows by the forensic pass, as `analyze` does
        forensics = Forensics(site, detection, timezone=zone, fingerprints=fingerprints)
        read_s = 0.0
        feed_s = 0.0
        t1b = time.perf_counter()
        mark = t1b
        for frame in spool.frames():
            now = time.perf_counter()
            read_s += now - mark
            forensics.feed(frame)
            mark = time.perf_counter()
            feed_s += mark - now
        spool.close()
        t2 = time.perf_counter()
        try:
            with open_geo() as geo:
                account = forensics.finish(inputs=second.inputs, first_pass=reader.inputs, geo=geo)
        except FloodwallError:
            account = forensics.finish(inputs=second.inputs, first_pass=reader.inputs)
        t3 = time.perf_counter()
        files = write_account(out, account, detection.incidents, detection.attackers, public=True)
        fingerprints.finish(detection)
        t4 = time.perf_counter()

        lines = sum(s.lines for s in reader.inputs)
        detect_s = t1 - t0 - spool_s
        forensic_s, finish_s, write_s = spool_s + (t2 - t1b), t3 - t2, t4 - t3
        total = detect_s + forensic_s + finish_s + write_s
        print(f"{log.name}: {lines:,} lines, {len(detection.incidents)} incidents, python {sys.version.split()[0]}")
        print(f"  read + detect          {detect_s:8.1f} s  {detect_s / total:6.1%}")
        print(f"  forensic pass          {forensic_s:8.1f} s  {forensic_s / total:6.1%}"
              f"  (spool {spool_s:.1f} s + read back {read_s:.1f} s, aggregate {feed_s:.1f} s;"
              f" parsing the log again instead would take {reread_s:.1f} s)")  # fmt: skip
        print(f"  account (finish)       {finish_s:8.1f} s  {finish_s / total:6.1%}")
        print(f"  writing html/md/stix   {write_s:8.1f} s  {write_s / total:6.1%}  (and the bundle's fingerprints)")
        share = (forensic_s + finish_s + write_s) / total
        print(f"  forensics + writing    {forensic_s + finish_s + write_s:8.1f} s  {share:6.1%} (issue 5: at most 30%)")
        print(f"  peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
        for name, path in sorted(files.items()):
            print(f"  {name:24s} {path.stat().st_size:>12,} bytes")


if __name__ == "__main__":
    main()
