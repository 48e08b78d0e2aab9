"""Simulator speed and memory: lines per second and peak RSS at two or more scales.

Each run is a fresh process (so its peak RSS is its own), writing into a temporary folder. Memory should stay flat
as the scale grows: the simulator works one time slice at a time; only the address pools grow with the audience.

    .venv/bin/python benchmarks/bench_simulate.py [--scenario hano-like] [--scales 0.2 1.0] [--gzip]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

CHILD = """
import json, resource, sys, time
from pathlib import Path
from floodwall.simulate import load_scenario, simulate
scenario, scale, out, compress = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "1"
loaded = load_scenario(scenario)
wall, cpu = time.perf_counter(), time.process_time()
summary = simulate(loaded, out, scale=scale, compress=compress)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
size = sum(p.stat().st_size for _, p, _ in summary.logs)
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"lines": summary.lines, "wall_s": wall, "cpu_s": cpu, "bytes": size, "peak_rss_mib": peak_mib}))
"""


def run(scenario: str, scale: float, compress: bool, where: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="floodwall-bench-", dir=where) as tmp:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, scenario, str(scale), tmp, "1" if compress else "0"],
            capture_output=True,
            text=True,
            check=True,
        )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="hano-like")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.2, 1.0])
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--dir", default=None, help="where to write (e.g. /dev/shm to leave the disk out of it)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f}")
    print(
        f"scenario {args.scenario}{' (gzip)' if args.gzip else ''}, writing under {args.dir or tempfile.gettempdir()}"
    )
    # lines per CPU-second does not depend on what else the machine is doing; lines/s (wall clock) does.
    header = f"{'scale':>6} {'lines':>12} {'wall s':>8} {'lines/s':>10} {'cpu s':>8} {'lines/cpu-s':>12}"
    print(f"{header} {'MB/s':>7} {'peak RSS MiB':>13}")
    for scale in args.scales:
        r = run(args.scenario, scale, args.gzip, args.dir)
        print(
            f"{scale:>6g} {int(r['lines']):>12,} {r['wall_s']:>8.2f} {r['lines'] / r['wall_s']:>10,.0f} "
            f"{r['cpu_s']:>8.2f} {r['lines'] / r['cpu_s']:>12,.0f} {r['bytes'] / r['wall_s'] / 1e6:>7.1f} "
            f"{r['peak_rss_mib']:>13.0f}"
        )


if __name__ == "__main__":
    main()
