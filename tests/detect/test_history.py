"""A long log's windows kept on disk and judged from per-client totals: the same account as holding them all."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from polars.testing import assert_frame_equal

from floodwall.detect import DetectSettings, Engine
from floodwall.detect.clients import ClientTotals, client_features, features_of
from floodwall.detect.history import WindowHistory, summarise
from floodwall.detect.profile import build_profile, quiet_mask_of
from floodwall.detect.windows import ClientWindows, tokens

SETTINGS = DetectSettings(signatures=False)


def windows_of(frame: pl.DataFrame, batch_s: int = 60) -> list[pl.DataFrame]:
    """The closed windows of `frame` fed in `batch_s`-second batches, as the engine makes them."""
    maker = ClientWindows(SETTINGS.window_s)
    parts = [maker.add(tokens(part)) for _, part in frame.group_by_dynamic("ts", every=f"{batch_s}s")]
    return [part for part in [*parts, maker.flush()] if part.height]


def account(frame: pl.DataFrame, memory_windows: int) -> tuple[object, ...]:
    engine = Engine("example-news", SETTINGS, live=False, memory_windows=memory_windows)
    for _, part in frame.group_by_dynamic("ts", every="60s"):
        engine.feed(part)
    spilled = engine._closed.spilled_files
    result = engine.finish()
    findings = sorted((f.target, f.kind, f.score, f.reasons, f.evidence) for f in result.findings)
    return spilled, result.incidents, findings, result.attackers.sort("client"), result.timeline, result.clients


def test_windows_spilled_to_disk_give_the_same_account(fleet_site):
    held, *in_memory = account(fleet_site.frame, memory_windows=10**9)
    spilled, *on_disk = account(fleet_site.frame, memory_windows=5_000)
    assert held == 0 and spilled > 5
    incidents, findings, attackers, timeline, clients = on_disk
    assert incidents == in_memory[0] and len(incidents) >= 1
    assert findings == in_memory[1]
    assert_frame_equal(attackers, in_memory[2])
    assert_frame_equal(timeline, in_memory[3])
    assert clients == in_memory[4]


def test_history_reads_back_its_parts_in_order_and_removes_its_files(flood_site, tmp_path):
    parts = windows_of(flood_site.frame)
    history = WindowHistory(memory_rows=3_000, folder=tmp_path)
    for part in parts:
        history.add(part)
    assert history.spilled_files > 1 and any(tmp_path.iterdir())
    assert_frame_equal(pl.concat(history.parts()), pl.concat(parts))
    assert_frame_equal(pl.concat(history.parts(["client", "requests"])), pl.concat(parts).select("client", "requests"))
    history.close()
    assert not any(tmp_path.iterdir())


def test_client_features_from_folded_totals_equal_those_of_all_windows(fleet_site):
    windows = pl.concat(windows_of(fleet_site.frame))
    onset = fleet_site.onset
    profile = build_profile(windows, quiet_mask_of(windows, [(onset, fleet_site.end)]), SETTINGS)
    uneven = [windows.slice(start, size) for start, size in ((0, 1), (1, 7_000), (7_001, 20_000), (27_001, 10**9))]
    folded = ClientTotals.fold([ClientTotals.of(part) for part in uneven])
    for at in (None, onset):
        whole = client_features(windows, profile, at, SETTINGS).sort("client")
        assert_frame_equal(features_of(folded, profile, at, SETTINGS).sort("client"), whole, rel_tol=1e-12)
        if at is not None:  # the fleet's forged agents are novel during the surge
            assert whole.get_column("novel_ua_share").max() == 1.0


def test_profile_from_one_pass_equals_the_profile_of_all_windows(flood_site):
    parts = windows_of(flood_site.frame)
    history = WindowHistory(memory_rows=4_000)
    for part in parts:
        history.add(part)
    busy = [(flood_site.onset - timedelta(minutes=5), flood_site.end + timedelta(minutes=5))]
    windows = pl.concat(parts)
    expected = build_profile(windows, quiet_mask_of(windows, busy), SETTINGS)
    summary = summarise(history, busy, [], SETTINGS)
    history.close()
    got = summary.profile
    assert got.quiet_window_rps == expected.quiet_window_rps > 0
    assert (got.quiet_requests, got.asset_share) == (expected.quiet_requests, expected.asset_share)
    for name in ("known_agents", "known_query_keys", "known_templates", "first_seen", "net_first_seen"):
        mine, theirs = getattr(got, name), getattr(expected, name)
        key = mine.columns[0]
        assert_frame_equal(mine.sort(key), theirs.sort(key), check_dtypes=False)
    assert summary.clients == windows.get_column("client").n_unique()


def test_spilled_parts_keep_each_windows_input_whether_one_or_several(flood_site, tmp_path):
    parts = windows_of(flood_site.frame)
    # The second half of the windows as if read from another input: a part then holds two inputs' windows.
    half = len(parts) // 2
    parts = parts[:half] + [p.with_columns(pl.lit("other.log").alias("source")) for p in parts[half:]]
    history = WindowHistory(memory_rows=3_000, folder=tmp_path)
    for part in parts:
        history.add(part)
    assert history.spilled_files > 1
    back = pl.concat(history.parts())
    assert_frame_equal(back, pl.concat(parts))
    assert set(back.get_column("source").unique()) == {parts[0].get_column("source")[0], "other.log"}
    assert_frame_equal(pl.concat(history.parts(["source", "line"])), pl.concat(parts).select("source", "line"))
    history.close()
