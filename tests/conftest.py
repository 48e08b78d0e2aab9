"""Fixtures shared across test folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from floodwall.analyze import analyze
from floodwall.config import Settings, SiteSettings
from floodwall.simulate import load_scenario, simulate

# Shared CI machines are noisy: a property test is judged on what it finds, never on how long one example took.
hypothesis_settings.register_profile("floodwall", deadline=None)
hypothesis_settings.load_profile("floodwall")

HANO_SITES = ("istina-danas", "delta-press")  # the two small sites of the scenario; szabad-hang is ten times larger


@pytest.fixture(scope="session")
def hano(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A small simulated hano-like campaign, analysed once per session (tests/forensics and tests/report).

    Returns (root, truth): root/sim holds the logs, root/out/<site> each site's analyze outputs (with --public).
    """
    root = tmp_path_factory.mktemp("hano")
    simulate(load_scenario("hano-like"), root / "sim", seed=7, scale=0.03)
    truth: dict[str, Any] = json.loads((root / "sim" / "truth.json").read_text())
    for site in truth["sites"]:
        if site["name"] not in HANO_SITES:
            continue
        settings = Settings(site=SiteSettings(name=site["name"], timezone=site["timezone"]))
        analyze(
            [root / "sim" / site["log"]],
            site=site["name"],
            out_dir=root / "out" / site["name"],
            settings=settings,
            public=True,
        )
    return root, truth
