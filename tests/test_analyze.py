"""The analyze job end to end: a simulated attack in, CONTRACT.md's files out; odd inputs give sensible results."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from floodwall.analyze import analyze
from floodwall.model import INCIDENT_KINDS, VECTORS
from floodwall.simulate import load_scenario, simulate

START = datetime(2023, 9, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def scanner_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    sim = tmp_path_factory.mktemp("sim")
    simulate(load_scenario("scanner"), sim, seed=11, scale=0.05)
    log = sorted(sim.glob("*.access.log"))[0]
    out = tmp_path_factory.mktemp("out")
    analyze([log], site=log.name.removesuffix(".access.log"), out_dir=out)
    return log, out


def _is_utc(text: str) -> bool:
    return text.endswith("Z") and datetime.fromisoformat(text) is not None


def test_report_json_follows_the_contract(scanner_run: tuple[Path, Path]) -> None:
    log, out = scanner_run
    report = json.loads((out / "report.json").read_text())
    assert report["floodwall_version"]
    assert report["inputs"][0]["sha256"] == hashlib.sha256(log.read_bytes()).hexdigest()
    assert report["inputs"][0]["lines"] == log.read_bytes().count(b"\n")
    assert _is_utc(report["window"]["start"]) and _is_utc(report["window"]["end"])
    assert report["incidents"], "the scanner scenario has breach attempts to find"
    for incident in report["incidents"]:
        assert incident["kind"] in INCIDENT_KINDS
        assert set(incident["vectors"]) <= set(VECTORS)
        assert _is_utc(incident["start"]) and _is_utc(incident["end"]) and incident["start"] <= incident["end"]
        assert incident["id"].startswith(report["site"] + "-")
        assert incident["attack_requests"] <= incident["requests"]
        for address in incident["attackers"]:
            ipaddress.ip_network(address, strict=False)
        assert {"ips", "prefixes", "asns"} <= set(incident["sources"])


def test_blocklist_and_evidence(scanner_run: tuple[Path, Path]) -> None:
    log, out = scanner_run
    entries = [x for x in (out / "blocklist.txt").read_text().splitlines() if x and not x.startswith("#")]
    report = json.loads((out / "report.json").read_text())
    attackers = {a for i in report["incidents"] for a in i["attackers"]}
    assert entries and set(entries) <= attackers | {e for e in entries if "/" in e}
    evidence = json.loads((out / "evidence.json").read_text())
    assert evidence["inputs"][0]["sha256"] == hashlib.sha256(log.read_bytes()).hexdigest()
    assert evidence["inputs"][0]["size_bytes"] == log.stat().st_size
    assert evidence["analysed_at"].endswith("Z")


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines))
    return path


def _line(i: int, client: str = "192.0.2.10", path: str = "/") -> str:
    stamp = (START + timedelta(seconds=i)).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{client} - - [{stamp}] "GET {path} HTTP/1.1" 200 512 "-" "Mozilla/5.0 (X11; Linux x86_64)"\n'


@pytest.mark.parametrize(
    "lines",
    [
        [],
        [_line(i) for i in range(0, 600, 5)],
        [_line(i, path=f"/?{i}") for i in range(3000)],
        [_line(i % 3000, client=f"198.51.{i % 200}.{i % 250 + 1}") for i in range(6000)],
    ],
    ids=["empty", "one-quiet-client", "one-busy-client", "quiet-traffic"],
)
def test_odd_inputs_give_sensible_results(tmp_path: Path, lines: list[str]) -> None:
    log = _write(tmp_path / "access.log", lines)
    result = analyze([log], site="odd", out_dir=tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["inputs"][0]["lines"] == len(lines)
    assert all(i["kind"] in INCIDENT_KINDS for i in report["incidents"])
    assert len(result.incidents) == len(report["incidents"])


def test_cli_analyze_bad_input_is_status_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "floodwall", "analyze", str(tmp_path / "missing.log"), "--site", "s", "--out", "o"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "missing.log: no such file" in result.stderr
    assert not (tmp_path / "o").exists()


def test_stdin_gets_the_same_account_and_leaves_no_spool(scanner_run: tuple[Path, Path], tmp_path: Path) -> None:
    """The forensic pass reads the detection pass's spooled batches, so a log piped in is told as fully as a file,
    and the spool is gone when analyze ends."""
    log, out = scanner_run
    spool_parent = tmp_path / "tmp"
    spool_parent.mkdir()
    site = log.name.removesuffix(".access.log")
    with log.open("rb") as stdin:
        subprocess.run(
            [sys.executable, "-m", "floodwall", "analyze", "-", "--site", site, "--out", str(tmp_path / "o"), "-q"],
            stdin=stdin,
            env={**os.environ, "TMPDIR": str(spool_parent)},
            timeout=600,
            check=True,
        )
    piped = json.loads((tmp_path / "o" / "report.json").read_text())["account"]
    from_file = json.loads((out / "report.json").read_text())["account"]
    assert piped["attack_requests"] > 0
    for key in ("summary", "attack_requests", "peaks", "possible_breach_success"):
        assert piped[key] == from_file[key]
    without_source = [({**m, "evidence": m["evidence"]["line"]}) for m in piped["markers"]]
    assert without_source == [({**m, "evidence": m["evidence"]["line"]}) for m in from_file["markers"]]
    assert list(spool_parent.iterdir()) == []


def test_stage_times_cover_every_stage_once_per_step(tmp_path: Path) -> None:
    """`--verbose` and the benchmarks read where the time went: each stage is timed where it runs (a fake clock
    that ticks once per reading makes the count of timed steps visible)."""
    from floodwall.analyze import STAGES, StageTimes

    ticks = iter(range(10_000))
    times = StageTimes(clock=lambda: float(next(ticks)), cpu_clock=lambda: 0.0)
    log = _write(tmp_path / "access.log", [_line(i, client=f"198.51.100.{i % 50 + 1}") for i in range(3000)])
    result = analyze([log], site="timed", out_dir=tmp_path / "out", times=times)
    assert result.times is times
    assert set(times.wall) == set(STAGES)
    batches = times.wall["detecting"]  # one tick per batch fed
    # Spooling: one step per batch handed to the spool's thread, and one waiting for the last write.
    assert batches >= 1 and times.wall["spooling"] == batches + 1 and times.wall["reading"] == batches + 1
    assert all(times.wall[name] == 1.0 for name in ("judging", "deciding", "forensics", "writing"))
    assert "forensics and writing" in times.describe()
