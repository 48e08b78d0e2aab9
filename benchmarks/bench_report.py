"""Where `analyze`'s time goes on a large log: read + detect, the forensic pass, and writing the account.

    .venv/bin/python benchmarks/bench_report.py                       # simulates hano-like at --scale 0.4
    .venv/bin/python benchmarks/bench_report.py --log big.log --site szabad-hang --timezone Europe/Budapest

Issue 5 asks that forensics and report writing take at most 30% of the time of analysing 5M lines. The forensic
pass re-reads the inputs (attackers are only known after detection), so its time includes a second read; it is
printed apart. Report sizes are printed too.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from floodwall.detect import Engine
from floodwall.errors import FloodwallError
from floodwall.forensics import Forensics
from floodwall.geo import open_geo
from floodwall.logs import LogReader
from floodwall.report.outputs import write_account
from floodwall.simulate import load_scenario, simulate


def _largest_site(sim: Path) -> tuple[Path, str, str]:
    truth = json.loads((sim / "truth.json").read_text())
    site = max(truth["sites"], key=lambda s: s["lines"])
    return sim / site["log"], site["name"], site["timezone"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, help="an access log (default: simulate one)")
    parser.add_argument("--site", default="bench-site")
    parser.add_argument("--timezone", default="UTC")
    parser.add_argument("--scale", type=float, default=0.4)
    parser.add_argument("--out", type=Path, help="where to write the reports (default: a temporary folder)")
    args = parser.parse_args()

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
        for frame in reader:
            engine.feed(frame)
        detection = engine.finish()
        t1 = time.perf_counter()
        print(f"read + detect: {t1 - t0:.1f} s", flush=True)

        forensics = Forensics(site, detection, timezone=zone)
        second = LogReader([log], site=site)
        read_s = 0.0
        feed_s = 0.0
        mark = time.perf_counter()
        for frame in second:
            now = time.perf_counter()
            read_s += now - mark
            forensics.feed(frame)
            mark = time.perf_counter()
            feed_s += mark - now
        t2 = time.perf_counter()
        try:
            with open_geo() as geo:
                account = forensics.finish(inputs=second.inputs, first_pass=reader.inputs, geo=geo)
        except FloodwallError:
            account = forensics.finish(inputs=second.inputs, first_pass=reader.inputs)
        t3 = time.perf_counter()
        files = write_account(out, account, detection.incidents, detection.attackers, public=True)
        t4 = time.perf_counter()

        lines = sum(s.lines for s in reader.inputs)
        total = t4 - t0
        detect_s, forensic_s, finish_s, write_s = t1 - t0, t2 - t1, t3 - t2, t4 - t3
        print(f"{log.name}: {lines:,} lines, {len(detection.incidents)} incidents, python {sys.version.split()[0]}")
        print(f"  read + detect          {detect_s:8.1f} s  {detect_s / total:6.1%}")
        print(f"  forensic pass          {forensic_s:8.1f} s  {forensic_s / total:6.1%}"
              f"  (re-read {read_s:.1f} s, aggregate {feed_s:.1f} s)")  # fmt: skip
        print(f"  account (finish)       {finish_s:8.1f} s  {finish_s / total:6.1%}")
        print(f"  writing html/md/stix   {write_s:8.1f} s  {write_s / total:6.1%}")
        share = (forensic_s + finish_s + write_s) / total
        print(f"  forensics + writing    {forensic_s + finish_s + write_s:8.1f} s  {share:6.1%} (issue 5: at most 30%)")
        print(f"  peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
        for name, path in sorted(files.items()):
            print(f"  {name:24s} {path.stat().st_size:>12,} bytes")


if __name__ == "__main__":
    main()
