"""End-to-end `floodwall analyze` (read, detect, write) on a ~5M-line simulated log, next to CrowdSec's replay.

    .venv/bin/python benchmarks/bench_analyze.py                          # hano-like, scale 0.59: ~4.9M lines
    .venv/bin/python benchmarks/bench_analyze.py --scale 0.05 --repeat 1  # a quick look (~430k lines)
    .venv/bin/python benchmarks/bench_analyze.py --skip-crowdsec --json out.json

`simulate` writes the logs (cached in --workdir by scenario, seed and scale); the biggest site's log is analysed
--repeat times by `floodwall analyze` run as a child under GNU time, which reports wall and CPU seconds and the
child's peak RSS (`%M`). GNU time is used because Linux carries a process's RSS high-water mark across fork and
exec: the children are started from this small process, never from one that held a log. Attacker precision and
recall come from `floodwall score` against the simulation's truth.json. Each run is made with `--verbose`, and the
stage times analyze then logs (reading, detecting, judging, deciding, spooling, forensics, writing) are printed as
medians, with the share of the last three (issue 5 wants at most 30%); a stage's CPU seconds are the whole
process's while that stage ran (the reader's parsing threads included). `--also-scales 0.12` adds a ~1M-line log of
the same scenario (peak memory against log length); `--baseline-src DIR` runs another version's `src` (say, a
`git worktree` of an older commit, its C scanner copied in) alternately with this one, under the same load; given
twice or more, every version is run in turn ("baseline analyze", then "baseline 2 analyze", ...).

CrowdSec (Debian's `crowdsec` 1.4.6, installed here through scripts/ensure-debian-packages) replays a log in its
time-machine mode, offline, with the parsers and scenarios Debian enables from the hub copy it ships (the nginx,
apache2 and linux collections with base-http-scenarios and http-cve):

    crowdsec -c WORKDIR/crowdsec/config.yaml -dsn file:///LOG -type nginx -no-capi

with its own data folder, database and loopback port, so the system's installation is left alone. Its alerts are
read with `cscli alerts list -o json` against a local API started for that (`crowdsec -no-cs`). CrowdSec replays
at a few hundred lines a second here (its log fills with "stuck ... sending event to" bucket warnings), so it runs
on a smaller log: a site (--crowdsec-site, default the biggest) of the same scenario and seed at --crowdsec-scale,
which Floodwall also analyses for a like-for-like row. Its precision and recall are scored by `floodwall score`
too, from a report.json that lists each alerted source address as an attacker.

This is a benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FLOODWALL = Path(sys.executable).with_name("floodwall")
GNU_TIME = Path("/usr/bin/time")
CROWDSEC_DATA = Path("/usr/share/crowdsec/data")
# Debian's postinst registers to CrowdSec's Central API unless this file holds something (README.Debian); offline
# the registration fails and leaves the package half-configured.
CAPI_CREDENTIALS = Path("/etc/crowdsec/online_api_credentials.yaml")


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stages: dict[str, tuple[float, float]] = field(default_factory=dict)  # stage: (wall s, CPU s), from --verbose


@dataclass
class Row:
    tool: str
    log: str
    lines: int
    runs: list[Run]
    precision: float | None = None
    recall: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def wall_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def cpu_s(self) -> float:
        return statistics.median(r.cpu_s for r in self.runs)

    @property
    def peak_rss_mb(self) -> float:
        return max(r.peak_rss_mb for r in self.runs)

    def stage_medians(self) -> dict[str, tuple[float, float]]:
        """Median wall and CPU seconds per stage over the runs that reported stages."""
        names = [name for name in STAGES if all(name in r.stages for r in self.runs)]
        return {
            name: (
                statistics.median(r.stages[name][0] for r in self.runs),
                statistics.median(r.stages[name][1] for r in self.runs),
            )
            for name in names
        }


#: analyze's stages as its `--verbose` "stage times:" line names them; the last three are issue 5's 30% budget.
STAGES = ("reading", "detecting", "judging", "deciding", "spooling", "forensics", "writing")
FORENSIC_STAGES = ("spooling", "forensics", "writing")
_STAGE = re.compile(r"(\w+) ([0-9.]+) s \(cpu ([0-9.]+) s\)")


def stage_times(output: str) -> dict[str, tuple[float, float]]:
    """The (wall, CPU) seconds per stage of analyze's `stage times:` line in `output`, or {} when it has none."""
    for line in output.splitlines():
        if "stage times:" in line:
            return {name: (float(wall), float(cpu)) for name, wall, cpu in _STAGE.findall(line)}
    return {}


def timed(argv: list[str], *, log_to: Path, timeout_s: float | None = None, env: dict[str, str] | None = None) -> Run:
    """Runs `argv` under GNU time; its stdout and stderr go to `log_to`. Raises with the log's tail on failure.

    On a timeout the whole process group (GNU time and the tool) is killed, and RuntimeError says so.
    """
    with tempfile.NamedTemporaryFile(suffix=".time") as measure, log_to.open("wb") as out:
        command = [str(GNU_TIME), "-f", "%e %U %S %M", "-o", measure.name, *argv]
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            tail = log_to.read_text(errors="replace")[-600:]
            raise RuntimeError(f"{argv[0]} did not finish within {timeout_s:.0f} s; its last output:\n{tail}") from None
        fields = Path(measure.name).read_text().split()
    if proc.returncode != 0:
        tail = log_to.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}:\n{tail}")
    wall, user, system, peak_kb = fields[-4:]
    stages = stage_times(log_to.read_text(errors="replace"))
    return Run(float(wall), float(user) + float(system), int(peak_kb) / 1024, stages)


def ensure_gnu_time() -> None:
    if not GNU_TIME.exists():
        subprocess.run([str(REPO / "scripts" / "ensure-debian-packages"), "time"], check=False)
    if not GNU_TIME.exists():
        sys.exit("GNU time (/usr/bin/time, Debian's `time` package) is needed to measure peak memory")


def simulated(
    workdir: Path, scenario: str, seed: int, scale: float, site: str | None = None
) -> tuple[Path, str, Path, int]:
    """(simulation folder, the site's (default: biggest site's) name, its log, its line count), simulated once."""
    folder = workdir / f"sim-{scenario}-seed{seed}-scale{scale}"
    if not (folder / "truth.json").exists():
        print(f"simulating {scenario} (seed {seed}, scale {scale}) into {folder}", file=sys.stderr)
        argv = [str(FLOODWALL), "simulate", "--scenario", scenario, "--seed", str(seed), "--scale", str(scale)]
        subprocess.run([*argv, "--out", str(folder), "--quiet"], check=True)
    truth = json.loads((folder / "truth.json").read_text())
    sites = [s for s in truth["sites"] if site in (None, s["name"])]
    if not sites:
        sys.exit(f"{scenario} has no site {site!r}: {', '.join(s['name'] for s in truth['sites'])}")
    chosen = max(sites, key=lambda s: s["lines"])
    return folder, chosen["name"], folder / chosen["log"], int(chosen["lines"])


def attacker_scores(truth_dir: Path, results: Path, site: str) -> tuple[float, float]:
    """Attacker precision and recall of `results/<site>/report.json`, as `floodwall score` counts them."""
    out = results / "score.json"
    subprocess.run(
        [str(FLOODWALL), "score", "--truth", str(truth_dir), "--results", str(results), "--out", str(out), "--quiet"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    attackers = json.loads(out.read_text())["sites"][site]["attackers"]
    return float(attackers["precision"]), float(attackers["recall"])


def measure_floodwall(
    truth_dir: Path, site: str, log: Path, lines: int, repeat: int, workdir: Path, baseline_src: Sequence[Path] = ()
) -> list[Row]:
    """`floodwall analyze` on `log`, `repeat` times; each of `baseline_src` (other versions' `src` folders) is run
    too, in turn with this one, so all see the same machine load."""
    versions: list[tuple[str, dict[str, str] | None]] = [("floodwall analyze", None)]
    for number, src in enumerate(baseline_src, start=1):
        name = "baseline analyze" if number == 1 else f"baseline {number} analyze"
        versions.append((name, {**os.environ, "PYTHONPATH": str(src.resolve())}))
    runs: dict[str, list[Run]] = {name: [] for name, _ in versions}
    scores: dict[str, tuple[float, float]] = {}
    for i in range(repeat):
        for name, env in versions:
            results = workdir / f"results-{truth_dir.name}" / name.split()[0]
            shutil.rmtree(results / site, ignore_errors=True)
            argv = [sys.executable, "-m", "floodwall", "analyze", str(log), "--site", site]
            argv += ["--out", str(results / site), "--verbose"]  # --verbose: the stage times line
            runs[name].append(timed(argv, log_to=workdir / "analyze.out", env=env))
            print(f"  {name} run {i + 1}/{repeat}: {runs[name][-1].wall_s:.1f} s", file=sys.stderr)
            if i == 0:
                scores[name] = attacker_scores(truth_dir, results, site)
    return [
        Row(name, log.name, lines, runs[name], *scores[name], [] if runs[name][0].stages else ["no stage times"])
        for name, _ in versions
    ]


# -- CrowdSec ---------------------------------------------------------------------------------------------------


def ensure_crowdsec() -> list[str]:
    """Installs Debian's crowdsec offline; returns notes on what had to be done."""
    notes: list[str] = []
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", "crowdsec"], capture_output=True, text=True, check=False
    ).stdout
    if "install ok installed" in status:
        return notes
    if os.geteuid() == 0 and (not CAPI_CREDENTIALS.exists() or CAPI_CREDENTIALS.stat().st_size == 0):
        CAPI_CREDENTIALS.parent.mkdir(parents=True, exist_ok=True)
        CAPI_CREDENTIALS.write_text("# no thanks: offline, no Central API registration (README.Debian)\n")
        notes.append(f"wrote {CAPI_CREDENTIALS} first so the postinst skips the Central API registration")
    proc = subprocess.run([str(REPO / "scripts" / "ensure-debian-packages"), "crowdsec"], check=False)
    if proc.returncode != 0 and "half-configured" in status:
        subprocess.run(["dpkg", "--configure", "crowdsec"], check=False)
    return notes


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def crowdsec_config(folder: Path) -> Path:
    """A config using Debian's enabled parsers and scenarios, with its own data, database, logs and port."""
    shutil.rmtree(folder, ignore_errors=True)
    data = folder / "data"
    shutil.copytree(CROWDSEC_DATA, data)
    # http-path-traversal-probing reads sec-lists' web/path_traversal.txt saved as http_path_traversal.txt; Debian
    # ships it under the first name only, and the scenario's filter then logs a 20 KB error on every event.
    shutil.copy(data / "path_traversal.txt", data / "http_path_traversal.txt")
    (folder / "acquis.yaml").write_text("")
    config = folder / "config.yaml"
    config.write_text(
        f"""common:
  daemonize: false
  log_media: stdout
  log_level: warning
  working_dir: {folder}
config_paths:
  config_dir: /etc/crowdsec/
  data_dir: {data}/
  simulation_path: /etc/crowdsec/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub/
  index_path: /var/lib/crowdsec/hub/.index.json
  notification_dir: /etc/crowdsec/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service:
  acquisition_path: {folder}/acquis.yaml
  parser_routines: 1
cscli:
  output: json
db_config:
  log_level: warning
  type: sqlite
  db_path: {folder}/crowdsec.db
  use_wal: true
api:
  client:
    credentials_path: {folder}/local_api_credentials.yaml
  server:
    log_level: warning
    listen_uri: 127.0.0.1:{_free_port()}
    profiles_path: /etc/crowdsec/profiles.yaml
    trusted_ips:
      - 127.0.0.1
prometheus:
  enabled: false
"""
    )
    credentials = folder / "local_api_credentials.yaml"
    subprocess.run(
        ["cscli", "-c", str(config), "machines", "add", "floodwall-bench", "--auto", "--force", "-f", str(credentials)],
        check=True,
        capture_output=True,
    )
    return config


def crowdsec_alerts(config: Path) -> list[dict[str, Any]]:
    """`cscli alerts list -o json`, against a local API started for it and stopped after."""
    folder = config.parent
    with (folder / "lapi.out").open("wb") as out:
        lapi = subprocess.Popen(["crowdsec", "-c", str(config), "-no-cs", "-no-capi"], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            listed = subprocess.run(
                ["cscli", "-c", str(config), "alerts", "list", "-o", "json", "--limit", "0"],
                capture_output=True,
                text=True,
                check=False,
            )
            if listed.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if listed.returncode != 0:
            raise RuntimeError(f"cscli alerts list failed: {listed.stderr.strip()[-500:]}")
        alerts: list[dict[str, Any]] = json.loads(listed.stdout or "[]") or []
        return alerts
    finally:
        lapi.terminate()
        lapi.wait(timeout=30)


def measure_crowdsec(
    truth_dir: Path, site: str, log: Path, lines: int, repeat: int, workdir: Path, timeout_s: float
) -> Row:
    notes = ensure_crowdsec()
    if shutil.which("crowdsec") is None or shutil.which("cscli") is None:
        return Row("crowdsec replay", log.name, lines, [], notes=[*notes, "crowdsec could not be installed"])
    runs = []
    alerts: list[dict[str, Any]] = []
    for i in range(repeat):
        config = crowdsec_config(workdir / "crowdsec")
        argv = ["crowdsec", "-c", str(config), "-dsn", f"file://{log}", "-type", "nginx", "-no-capi"]
        runs.append(timed(argv, log_to=workdir / "crowdsec.out", timeout_s=timeout_s))
        print(f"  crowdsec replay run {i + 1}/{repeat}: {runs[-1].wall_s:.1f} s", file=sys.stderr)
        alerts = crowdsec_alerts(config)
    sources: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        address = (alert.get("source") or {}).get("ip") or (alert.get("source") or {}).get("value")
        if address:
            sources.setdefault(address, []).append(alert)
    scenarios = sorted({str(alert.get("scenario")) for alert in alerts})
    # One scan incident per alerted address: `score` counts attackers by address, so the kind does not matter.
    results = workdir / f"results-crowdsec-{truth_dir.name}"
    (results / site).mkdir(parents=True, exist_ok=True)
    truth_site = next(s for s in json.loads((truth_dir / "truth.json").read_text())["sites"] if s["name"] == site)
    window = truth_site["window"]
    incidents = [
        {
            "id": f"{site}-crowdsec-{n}",
            "kind": "scan",
            "start": window["start"],
            "end": window["end"],
            "vectors": ["scan"],
            "attackers": [address],
            "requests": 0,
            "attack_requests": 0,
            "peak_rps": 0.0,
            "phases": [],
            "sources": {"ips": 1, "prefixes": 1, "asns": []},
            "markers": [],
        }
        for n, address in enumerate(sorted(sources), start=1)
    ]
    report = {"floodwall_version": "crowdsec", "site": site, "inputs": [], "window": window, "incidents": incidents}
    (results / site / "report.json").write_text(json.dumps(report))
    precision, recall = attacker_scores(truth_dir, results, site)
    notes += [f"{len(alerts)} alerts from {len(sources)} addresses", "scenarios: " + (", ".join(scenarios) or "none")]
    return Row("crowdsec replay", log.name, lines, runs, precision, recall, notes)


# -- report -----------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()}


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_table(rows: list[Row]) -> None:
    print(
        f"\n{'tool':<18} {'log':<28} {'lines':>10} {'wall s':>8} {'lines/s':>9} {'CPU s':>8} {'CPU lines/s':>11} "
        f"{'peak MB':>8} {'runs':>4} {'P':>6} {'R':>6}"
    )
    for row in rows:
        if not row.runs:
            print(f"{row.tool:<18} {row.log:<28} {row.lines:>10,}  did not run: {'; '.join(row.notes)}")
            continue
        print(
            f"{row.tool:<18} {row.log:<28} {row.lines:>10,} {row.wall_s:>8.1f} {row.lines / row.wall_s:>9,.0f} "
            f"{row.cpu_s:>8.1f} {row.lines / row.cpu_s:>11,.0f} {row.peak_rss_mb:>8,.0f} {len(row.runs):>4} "
            f"{_score(row.precision):>6} {_score(row.recall):>6}"
        )
        for note in row.notes:
            print(f"{'':<20}{note}")


def print_stages(rows: list[Row]) -> None:
    """Per analyze row: median wall and CPU seconds per stage and the share of forensics and writing."""
    for row in rows:
        stages = row.stage_medians() if row.runs else {}
        if not stages:
            continue
        total = sum(wall for wall, _ in stages.values()) or 1.0
        print(f"\n{row.tool} on {row.log} ({row.lines:,} lines): median seconds per stage")
        for name, (wall, cpu) in stages.items():
            print(f"  {name:<10} {wall:>8.2f} s wall {wall / total:>6.1%}  {cpu:>8.2f} s CPU")
        forensic = sum(stages[name][0] for name in FORENSIC_STAGES if name in stages)
        print(f"  forensics + writing (spooling, forensics, writing): {forensic / total:.1%} (issue 5: at most 30%)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/floodwall-bench/analyze"))
    parser.add_argument("--scenario", default="hano-like")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--scale", type=float, default=0.59, help="0.59 gives hano-like's biggest site ~4.9M lines")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--crowdsec-scale", type=float, default=0.005, help="scale of the log both tools share")
    parser.add_argument("--crowdsec-site", help="the site whose log both tools share (default: the biggest)")
    parser.add_argument("--crowdsec-repeat", type=int, default=1)
    parser.add_argument("--crowdsec-timeout", type=float, default=900, help="seconds before a replay is given up")
    parser.add_argument("--skip-crowdsec", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--also-scales",
        type=float,
        nargs="*",
        default=[],
        help="more scales to analyse, for peak memory against log length (0.12 gives ~1M lines)",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        action="append",
        default=[],
        help="another version's src folder (e.g. from `git worktree add`, with its C scanner built), run alternately;"
        " may be given more than once",
    )
    args = parser.parse_args(argv)

    ensure_gnu_time()
    args.workdir.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores; load average at start {info['load']}")
    for number, src in enumerate(args.baseline_src, start=1):
        print(f"{'baseline' if number == 1 else f'baseline {number}'} analyze: PYTHONPATH={src}")

    rows = []
    truth_dir, site, log, lines = simulated(args.workdir, args.scenario, args.seed, args.scale)
    subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=False)  # into the page cache
    rows += measure_floodwall(truth_dir, site, log, lines, args.repeat, args.workdir, args.baseline_src)
    for scale in args.also_scales:
        other = simulated(args.workdir, args.scenario, args.seed, scale)
        rows += measure_floodwall(*other, args.repeat, args.workdir, args.baseline_src)
    if not args.skip_crowdsec:
        small_truth, small_site, small_log, small_lines = simulated(
            args.workdir, args.scenario, args.seed, args.crowdsec_scale, args.crowdsec_site
        )
        rows += measure_floodwall(small_truth, small_site, small_log, small_lines, args.repeat, args.workdir)
        try:
            rows.append(
                measure_crowdsec(
                    small_truth,
                    small_site,
                    small_log,
                    small_lines,
                    args.crowdsec_repeat,
                    args.workdir,
                    args.crowdsec_timeout,
                )
            )
        except (RuntimeError, subprocess.CalledProcessError) as error:
            rows.append(Row("crowdsec replay", small_log.name, small_lines, [], notes=[f"failed: {error}"]))
    info["load_at_end"] = os.getloadavg()
    print_table(rows)
    print_stages(rows)
    print(f"\nload average at end {info['load_at_end']} (a shared machine: medians of {args.repeat} runs)")
    if args.json is not None:
        payload = {
            "machine": info,
            "rows": [
                {**asdict(row), "wall_s": row.wall_s if row.runs else None, "cpu_s": row.cpu_s if row.runs else None}
                for row in rows
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
