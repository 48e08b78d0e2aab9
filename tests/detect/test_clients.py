"""Client level, fleets and vectors on one synthetic flood: scores with reasons, fleets, vectors."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import polars as pl

from floodwall.detect.clients import ClientForest, client_features, score_clients
from floodwall.detect.fleet import find_fleets
from floodwall.detect.judge import quiet_client_features
from floodwall.detect.profile import build_profile, quiet_mask_of
from floodwall.detect.settings import DetectSettings
from floodwall.detect.vectors import attacker_vectors, incident_vectors
from floodwall.detect.windows import ClientWindows, tokens
from floodwall.model import Vector

SETTINGS = DetectSettings(signatures=False)


def _judged(site):
    windows = ClientWindows(SETTINGS.window_s)
    toks = tokens(site.frame)
    all_windows = pl.concat([windows.add(toks), windows.flush()])
    mask = quiet_mask_of(all_windows, [(site.onset - timedelta(minutes=5), site.end + timedelta(minutes=5))])
    profile = build_profile(all_windows, mask, SETTINGS)
    inside = all_windows.filter(pl.col("window").is_between(site.onset, site.end))
    features = client_features(inside, profile, site.onset, SETTINGS)
    quiet = quiet_client_features(all_windows.filter(mask), profile, SETTINGS)
    forest = ClientForest(quiet, SETTINGS)
    scored = score_clients(features, profile, forest, SETTINGS)
    return scored, quiet, profile, forest


def test_flood_clients_score_high_with_reasons_and_readers_low(flood_site):
    scored, _, _, forest = _judged(flood_site)
    assert forest.model is not None  # enough quiet clients to train on
    attackers = scored.filter(pl.col("client").is_in(list(flood_site.attackers)))
    readers = scored.filter(~pl.col("client").is_in(list(flood_site.attackers)))
    assert attackers.get_column("score").min() >= 0.6
    assert readers.get_column("score").max() < 0.6
    reasons = attackers.get_column("reasons").to_list()[0]
    assert any("cache busting" in r for r in reasons) and any("user agent" in r for r in reasons)


def test_low_rate_pool_is_one_hostile_fleet(fleet_site):
    scored, quiet, profile, _ = _judged(fleet_site)
    fleets = find_fleets(scored, score_clients(quiet, profile, None, SETTINGS), profile, SETTINGS)
    members = fleets.filter(pl.col("client").is_in(list(fleet_site.attackers)))
    assert members.get_column("fleet_hostile").mean() >= 0.95
    readers = fleets.filter(~pl.col("client").is_in(list(fleet_site.attackers)))
    assert not readers.get_column("fleet_hostile").fill_null(False).any()


def test_vectors_of_a_cache_busting_flood(flood_site):
    scored, _, _, _ = _judged(flood_site)
    attackers = attacker_vectors(scored.filter(pl.col("client").is_in(list(flood_site.attackers))))
    assert set(incident_vectors(attackers)) == {Vector.GET_FLOOD, Vector.CACHE_BUST}


def _vectors_of(**features: object) -> set[str]:
    row = {"template": "/", "query_keys": None, "posts": 0, "requests": 120, "cache_bust_share": 0.0}
    row.update(features)
    return set(attacker_vectors(pl.DataFrame([row])).get_column("vectors").item().to_list())


def test_random_paths_are_a_vector_of_a_mixed_flood_too():
    # A proxy pool sending a third of its requests to random paths (each a 404 of its own) and the rest to pages:
    # random-path is one of its vectors, as it is for a client of random paths only.
    assert "random-path" in _vectors_of(error_share=0.33, path_diversity=0.43, cache_bust_share=0.33)
    assert "random-path" in _vectors_of(error_share=0.95, path_diversity=0.97)
    # A few 404s, or many on few paths, are not; nor are a pagination flood's unique 404s (heavy pages).
    assert "random-path" not in _vectors_of(error_share=0.1, path_diversity=0.9)
    assert "random-path" not in _vectors_of(error_share=0.4, path_diversity=0.05)
    assert "random-path" not in _vectors_of(error_share=0.3, path_diversity=1.0, template="/page/0")


def test_pagination_floods_are_heavy_pages_by_path_or_query_string():
    # Deep listing pages, by path or by query string (the simulated article-html sites page with
    # `/archive.html?page=N`), are heavy pages; their unique 404s are not random paths.
    assert "heavy-page" in _vectors_of(template="/page/0/", error_share=0.3, path_diversity=1.0)
    by_query = _vectors_of(template="/*.html", query_keys="page", error_share=0.3, path_diversity=1.0)
    assert "heavy-page" in by_query
    assert "random-path" not in by_query
    assert "heavy-page" not in _vectors_of(template="/*.html", query_keys="q", error_share=0.0, path_diversity=0.1)


def test_analyze_starts_without_waiting_for_scikit_learn():
    # Importing scikit-learn takes most of a second; a batch analysis starts it beside reading (`preload_forest`), so
    # importing the job must not pull it in first.
    code = "import sys, floodwall.analyze; print('sklearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "False"
