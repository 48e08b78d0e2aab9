"""bench_edge's machinery at a very low rate: every part runs end to end and its figures add up (no timing checks).

The benchmark itself is never a timed test; this only proves that `benchmarks/bench_edge.py` still runs: the
origin, nginx fronts, wrk, the readers and the flood, the edge when it is there, and the solver of its challenge.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from edgebench.edge_front import edge_missing  # noqa: E402
from edgebench.loadgen import pow_verify_target  # noqa: E402

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(), reason="nginx is not installed"
)


def test_the_readers_solver_passes_the_edges_real_challenge() -> None:
    from floodwall.edge.challenge import Challenger
    from floodwall.edge.settings import ChallengeSettings

    challenger = Challenger(ChallengeSettings(difficulty_bits=8), "contact us", b"s" * 32)
    status, _, page = challenger.page("/news/story-1.html", "127.1.0.1", "reader")
    assert status == 429
    target = pow_verify_target(page)
    assert target is not None
    path, _, query = target.partition("?")
    status, headers, _ = challenger.answer(path, query, "127.1.0.1", "reader")
    assert status == 303
    cookie = dict(headers)[b"Set-Cookie"].decode().split(";", 1)[0]
    assert challenger.verify(cookie, "127.1.0.1", "reader")
    assert pow_verify_target(b"<html>no puzzle here</html>") is None


@pytest.mark.slow
def test_a_tiny_run_of_every_part(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    parts = ["flood", "latency"] + (["throughput"] if shutil.which("wrk") else [])
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_edge.py"),
        "--parts",
        *parts,
        "--repeat=1",
        "--wrk-duration=1",
        "--wrk-connections=4",
        "--flood-seconds=2",
        "--warmup=1",
        "--readers=10",
        "--reader-rps=5",
        "--flood-addresses=20",
        "--flood-processes=1",
        "--flood-connections=2",
        "--samples=20",
        f"--json={out}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "machine:" in done.stdout
    figures = json.loads(out.read_text())
    edge = edge_missing() is None
    if not edge:
        assert "edge: skipped" in done.stdout

    fronts = {r["front"]: r for r in figures["flood"]}
    assert set(fronts) == ({"none", "nginx", "edge"} if edge else {"none", "nginx"})
    for result in fronts.values():
        # A trickle every front should serve: readers get their pages, the origin stays within its slots.
        assert result["readers_during"] > 0
        assert result["readers_ok_share"] == 1.0, result["readers_outcomes"]
        assert result["flood_sent"] > 0
        assert 0 < result["origin"]["max_in_service"] <= result["origin"]["slots"]
    if edge:
        assert fronts["edge"]["readers_decided"] == 0

    if "throughput" in parts:
        rows = {(r["case"], r["front"]): r for r in figures["throughput"]}
        assert {("cache hit", "nginx"), ("pass-through", "nginx")} <= set(rows)
        assert all(r["rps"] > 0 for r in rows.values())
        assert "nginx: /news/story-1.html -> 200 cache HIT" in done.stdout
    if edge:
        assert {r["case"] for r in figures["latency"]} == {"pass-through", "cache hit"}
