"""The scorer: perfect results score 1, empty results score 0, and false positives land in the right bins."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from floodwall.errors import BundleError, InputError
from floodwall.score import results_from_truth, score
from floodwall.simulate import load_scenario, simulate


@pytest.fixture(scope="module")
def truth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("truth")
    simulate(load_scenario("coalition"), out, scale=0.01)
    return out


def _truth(truth_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((truth_dir / "truth.json").read_text())
    return data


def test_results_made_from_the_truth_score_perfectly(truth_dir: Path, tmp_path: Path) -> None:
    results_from_truth(truth_dir, tmp_path)
    overall = score(truth_dir, tmp_path)["overall"]
    assert overall["attackers"]["precision"] == overall["attackers"]["recall"] == overall["attackers"]["f1"] == 1.0
    assert overall["incidents"]["recall"] == overall["incidents"]["precision"] == 1.0
    assert overall["vector_agreement"] == overall["markers_found"] == 1.0
    assert set(overall["false_positives"].values()) == {0}
    phases = overall["phases"]
    assert phases["truth"] == phases["reported"] == phases["matched"] > 0
    assert phases["boundaries_found"] == phases["boundaries"] > 0
    campaigns = overall["campaigns"]
    assert campaigns["pairwise_precision"] == campaigns["pairwise_recall"] == campaigns["adjusted_rand_index"] == 1.0


def test_an_empty_results_folder_scores_zero(truth_dir: Path, tmp_path: Path) -> None:
    document = score(truth_dir, tmp_path)
    overall = document["overall"]
    assert overall["attackers"]["f1"] == overall["attackers"]["recall"] == 0.0
    assert overall["incidents"]["recall"] == overall["incidents"]["precision"] == 0.0
    assert overall["vector_agreement"] == overall["markers_found"] == 0.0
    assert overall["campaigns"]["pairwise_recall"] == overall["campaigns"]["adjusted_rand_index"] == 0.0
    assert all(site["report"] is None for site in document["sites"].values())


def test_a_prefix_that_covers_readers_counts_them_as_false_positives(truth_dir: Path, tmp_path: Path) -> None:
    results_from_truth(truth_dir, tmp_path)
    truth = _truth(truth_dir)
    site = truth["sites"][0]
    crowd_client = next(c for c in site["flash_crowds"][0]["clients"] if "." in c)
    monitor = next(r["address"] for r in site["automation"] if r["kind"] == "monitor")
    crawler = next(r["address"] for r in site["automation"] if r["kind"] == "crawler")
    report_path = tmp_path / site["name"] / "report.json"
    report = json.loads(report_path.read_text())
    report["incidents"][0]["attackers"] += [crowd_client.rsplit(".", 1)[0] + ".0/24", monitor, crawler, "192.0.2.1"]
    report_path.write_text(json.dumps(report))
    result = score(truth_dir, tmp_path)["sites"][site["name"]]
    assert result["attackers"]["recall"] == 1.0
    assert result["attackers"]["precision"] < 1.0
    fp = result["false_positives"]
    assert fp["flash_crowd"] >= 1 and fp["readers"] >= 1
    assert fp["monitors"] == 1 and fp["crawlers"] == 1 and fp["not_in_log"] == 1


def test_a_late_detection_matches_with_its_timing_error(truth_dir: Path, tmp_path: Path) -> None:
    results_from_truth(truth_dir, tmp_path)
    site = _truth(truth_dir)["sites"][0]
    report_path = tmp_path / site["name"] / "report.json"
    report = json.loads(report_path.read_text())
    first = report["incidents"][0]
    late = datetime.fromisoformat(first["start"].replace("Z", "+00:00")) + timedelta(minutes=10)
    first["start"] = late.strftime("%Y-%m-%dT%H:%M:%SZ")
    report_path.write_text(json.dumps(report))
    result = score(truth_dir, tmp_path)["sites"][site["name"]]["incidents"]
    assert result["recall"] == 1.0
    assert result["start_error_s"]["max"] == 600.0


def test_broken_inputs_name_the_file(truth_dir: Path, tmp_path: Path) -> None:
    site = _truth(truth_dir)["sites"][0]["name"]
    (tmp_path / site).mkdir()
    (tmp_path / site / "report.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"report\.json"):
        score(truth_dir, tmp_path)
    (tmp_path / site / "report.json").write_text(json.dumps({"incidents": [{"id": "x", "kind": "flood"}]}))
    with pytest.raises(BundleError, match=r"incidents\.0\.start"):
        score(truth_dir, tmp_path)
    with pytest.raises(InputError, match=r"truth\.json"):
        score(tmp_path, tmp_path)


def test_the_command_prints_and_writes_json(truth_dir: Path, tmp_path: Path) -> None:
    results_from_truth(truth_dir, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "floodwall", "score", "--truth", str(truth_dir), "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "overall: attackers P 1.000 R 1.000 F1 1.000" in result.stdout
    assert json.loads((tmp_path / "score.json").read_text())["overall"]["markers_found"] == 1.0
    missing = subprocess.run(
        [sys.executable, "-m", "floodwall", "score", "--truth", str(tmp_path / "nowhere"), "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2
    assert "truth.json" in missing.stderr


def test_with_no_attack_doing_nothing_is_perfect_and_blocking_readers_is_not(tmp_path: Path) -> None:
    truth_dir = tmp_path / "truth"
    simulate(load_scenario("flash-crowd"), truth_dir, scale=0.01)
    empty = tmp_path / "empty"
    empty.mkdir()
    overall = score(truth_dir, empty)["overall"]
    assert overall["attackers"]["f1"] == overall["incidents"]["precision"] == 1.0
    site = _truth(truth_dir)["sites"][0]
    (empty / site["name"]).mkdir()
    report = {
        "incidents": [
            {
                "id": "x-1",
                "kind": "flood",
                "start": site["window"]["start"],
                "end": site["window"]["end"],
                "attackers": site["flash_crowds"][0]["clients"][:5],
            }
        ]
    }
    (empty / site["name"] / "report.json").write_text(json.dumps(report))
    overall = score(truth_dir, empty)["overall"]
    assert overall["attackers"]["precision"] == 0.0
    assert overall["false_positives"]["flash_crowd"] == 5
    assert overall["incidents"]["precision"] == 0.0
