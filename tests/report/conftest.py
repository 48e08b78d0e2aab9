"""The same simulated hano-like campaign as tests/forensics uses (one copy per test process per folder)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from floodwall.analyze import analyze
from floodwall.config import Settings, SiteSettings
from floodwall.simulate import load_scenario, simulate

SITES = ("istina-danas", "delta-press")  # the two small sites of the scenario; szabad-hang is ten times larger


@cache
def hano_run() -> tuple[Path, dict[str, Any]]:
    """(root, truth): root/sim holds the logs, root/out/<site> each site's analyze outputs (with --public)."""
    # Keyed by process, so tests/forensics and tests/report (each with its own conftest) share one run.
    root = Path(tempfile.gettempdir()) / f"floodwall-hano-{os.getpid()}"
    done = root / "done"
    if done.exists():
        return root, json.loads((root / "sim" / "truth.json").read_text())
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    atexit.register(shutil.rmtree, root, True)
    simulate(load_scenario("hano-like"), root / "sim", seed=7, scale=0.03)
    truth = json.loads((root / "sim" / "truth.json").read_text())
    for site in truth["sites"]:
        if site["name"] not in SITES:
            continue
        settings = Settings(site=SiteSettings(name=site["name"], timezone=site["timezone"]))
        analyze(
            [root / "sim" / site["log"]],
            site=site["name"],
            out_dir=root / "out" / site["name"],
            settings=settings,
            public=True,
        )
    done.touch()
    return root, truth


@pytest.fixture(scope="module")
def hano() -> tuple[Path, dict[str, Any]]:
    return hano_run()
