"""Simulated scenarios at small scale through the Python API: simulate, detect, score."""

from __future__ import annotations

from pathlib import Path

import pytest

from floodwall.detect import Engine
from floodwall.logs import LogReader
from floodwall.model import IncidentKind
from floodwall.simulate import load_scenario, simulate


def _detect(folder: Path) -> dict[str, object]:
    results = {}
    for log in sorted(folder.glob("*.access.log")):
        site = log.name.removesuffix(".access.log")
        engine = Engine(site, live=False)
        for frame in LogReader([log], site=site):
            engine.feed(frame)
        results[site] = engine.finish()
    return results


def _truth(folder: Path) -> dict[str, list[dict[str, object]]]:
    import json

    truth = json.loads((folder / "truth.json").read_text())
    return {site["name"]: site["incidents"] for site in truth["sites"]}


@pytest.mark.slow
def test_residential_proxies_fleet(tmp_path):
    simulate(load_scenario("residential-proxies"), tmp_path, seed=2, scale=0.03)
    results, truth = _detect(tmp_path), _truth(tmp_path)
    for site, incidents in truth.items():
        flood = next(i for i in incidents if i["kind"] == "flood")
        found = [i for i in results[site].incidents if i.kind is IncidentKind.FLOOD]
        assert len(found) == 1
        attackers = set(flood["attackers"])
        caught = set(found[0].attackers)
        assert len(caught & attackers) >= 0.9 * len(attackers)
        assert len(caught - attackers) <= 0.01 * len(caught)
        start = found[0].start.timestamp()
        assert abs(start - _ts(flood["start"])) <= 60


@pytest.mark.slow
def test_flash_crowd_scenario_blocks_no_reader(tmp_path):
    simulate(load_scenario("flash-crowd"), tmp_path, seed=2, scale=0.03)
    for result in _detect(tmp_path).values():
        assert not [i for i in result.incidents if i.kind is IncidentKind.FLOOD]


def _ts(text: object) -> float:
    from datetime import datetime

    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
