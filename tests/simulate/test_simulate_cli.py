"""`floodwall simulate` as a user runs it, and the progress the library reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from floodwall.simulate import SimulationProgress, load_scenario, simulate


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "floodwall", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_progress_is_reported_through_the_callback(tmp_path: Path) -> None:
    seen: list[SimulationProgress] = []
    summary = simulate(load_scenario("scanner"), tmp_path, scale=0.05, progress=seen.append)
    assert len(seen) > 3
    written = [p.lines_written for p in seen]
    assert written == sorted(written)
    assert written[-1] == summary.lines
    assert all(p.lines_expected >= p.lines_written for p in seen)
    assert 0.7 < summary.lines / seen[0].lines_expected < 1.3  # the estimate is an honest one


def test_the_command_writes_logs_and_truth_and_prints_one_line(tmp_path: Path) -> None:
    result = run(
        "simulate", "--scenario", "scanner", "--out", str(tmp_path), "--seed", "9", "--scale", "0.03", "--gzip"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert "scanner:" in result.stdout and "seed 9" in result.stdout
    assert (tmp_path / "nasha-pravda.access.log.gz").exists()
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["seed"] == 9 and truth["sites"][0]["log"] == "nasha-pravda.access.log.gz"
    assert result.stderr == ""  # no progress bar when stdout is not a terminal


def test_bad_options_exit_2(tmp_path: Path) -> None:
    assert run("simulate", "--scenario", "scanner", "--out", str(tmp_path), "--scale", "0").returncode == 2
    assert run("simulate", "--out", str(tmp_path)).returncode == 2
    help_text = run("simulate", "--help").stdout
    assert "--scenario" in help_text and "--scale" in help_text and "--gzip" in help_text


def test_output_does_not_depend_on_the_process(tmp_path: Path) -> None:
    """Same seed, another process with another hash seed: the same bytes."""
    simulate(load_scenario("scanner"), tmp_path / "here", seed=2, scale=0.03)
    env_run = subprocess.run(
        [
            sys.executable,
            "-m",
            "floodwall",
            "simulate",
            "--scenario",
            "scanner",
            "--out",
            str(tmp_path / "there"),
            "--seed",
            "2",
            "--scale",
            "0.03",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert env_run.returncode == 0, env_run.stderr
    for name in ("nasha-pravda.access.log", "truth.json"):
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "there" / name).read_bytes()
