"""The engine end to end on synthetic traffic: floods found, readers left alone, odd inputs handled."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

from floodwall.detect import DetectSettings, Engine
from floodwall.model import IncidentKind, Vector, empty_requests
from floodwall.testing import REQUEST_DEFAULTS, requests_frame

SETTINGS = DetectSettings(signatures=False)


def run(frame: pl.DataFrame, batch_s: int | None = None, live: bool = False) -> tuple[object, list[object]]:
    engine = Engine("example-news", SETTINGS, live=live)
    findings = []
    if batch_s is None:
        findings += engine.feed(frame)
    else:
        for _, part in frame.group_by_dynamic("ts", every=f"{batch_s}s", start_by="datapoint"):
            findings += engine.feed(part)
    return engine.finish(), findings


def test_flood_found_with_onset_end_and_attackers(flood_site):
    result, _ = run(flood_site.frame)
    floods = [i for i in result.incidents if i.kind is IncidentKind.FLOOD]
    assert len(floods) == 1
    incident = floods[0]
    assert abs((incident.start - flood_site.onset).total_seconds()) <= 30
    assert abs((incident.end - flood_site.end).total_seconds()) <= 120
    assert set(incident.attackers) == flood_site.attackers
    assert Vector.CACHE_BUST in incident.vectors and Vector.GET_FLOOD in incident.vectors
    assert incident.id == f"example-news-{incident.start:%Y%m%dT%H%M}-1"
    assert 0 < incident.attack_requests <= incident.requests
    assert result.attackers.height == len(flood_site.attackers)
    finding = next(f for f in result.findings if f.target in flood_site.attackers)
    assert finding.reasons and finding.evidence and finding.score >= 0.6
    timeline = result.timeline
    assert timeline.get_column("requests").sum() == flood_site.frame.height
    assert timeline.get_column("attack_requests").sum() > 0


def test_low_rate_proxy_fleet_caught(fleet_site):
    result, _ = run(fleet_site.frame)
    caught = {a for i in result.incidents for a in i.attackers}
    recall = len(caught & fleet_site.attackers) / len(fleet_site.attackers)
    assert recall >= 0.95
    assert not caught - fleet_site.attackers


def test_flash_crowd_is_never_convicted(crowd_site):
    result, _ = run(crowd_site.frame)
    assert not [i for i in result.incidents if i.kind is IncidentKind.FLOOD]
    assert result.attackers.height == 0
    assert any(s.verdict == "flash-crowd" for s in result.surges)


def test_quiet_site_has_no_incident(quiet_site):
    result, _ = run(quiet_site.frame)
    assert result.incidents == () and result.attackers.height == 0


def test_batch_boundaries_do_not_change_results(flood_site):
    frame = flood_site.frame.filter(pl.col("ts") >= flood_site.onset - timedelta(minutes=40))
    whole, _ = run(frame)
    cut, _ = run(frame, batch_s=7)
    assert [(i.start, i.end, i.attackers, i.requests, i.attack_requests) for i in whole.incidents] == [
        (i.start, i.end, i.attackers, i.requests, i.attack_requests) for i in cut.incidents
    ]
    assert whole.timeline.equals(cut.timeline)


def test_streaming_first_finding_within_ten_seconds(flood_site):
    frame = flood_site.frame.filter(
        pl.col("ts").is_between(flood_site.onset - timedelta(minutes=45), flood_site.onset + timedelta(minutes=2))
    )
    # As a watcher runs it, for weeks: history=False keeps nothing for finish(), so memory does not grow with uptime.
    engine = Engine("example-news", SETTINGS, history=False)
    first = None
    for (second,), part in frame.group_by_dynamic("ts", every="1s", start_by="datapoint"):
        if engine.feed(part) and first is None:
            first = second
    assert first is not None
    assert (first - flood_site.onset).total_seconds() <= 10
    assert engine._closed.rows == 0 and engine._hits == []
    with pytest.raises(RuntimeError, match="history"):
        engine.finish()


def test_empty_input():
    engine = Engine("example-news", SETTINGS)
    assert engine.feed(empty_requests()) == []
    result = engine.finish()
    assert result.incidents == () and result.requests == 0 and result.timeline.height == 0


def test_one_client():
    start = REQUEST_DEFAULTS["ts"]
    assert isinstance(start, datetime)
    rows = [{"ts": start + timedelta(seconds=s)} for s in range(0, 600, 3)]
    result, _ = run(requests_frame(rows))
    assert result.requests == 200 and result.clients == 1
    assert result.incidents == ()


def test_only_attack(flood_site):
    attack = flood_site.frame.filter(pl.col("client").is_in(list(flood_site.attackers)))
    result, _ = run(attack)
    assert result.requests == attack.height  # no crash; with no quiet traffic there is no baseline to beat


def test_feed_after_finish_is_an_error():
    engine = Engine("example-news", SETTINGS)
    engine.finish()
    with pytest.raises(RuntimeError):
        engine.feed(requests_frame([{}]))
