"""The flash-crowd guard: breaking-news readers are protected, flood clients are not."""

from __future__ import annotations

import polars as pl

from floodwall.detect import DetectSettings, Engine
from floodwall.model import IncidentKind


def test_crowd_readers_are_protected_and_nothing_is_convicted(crowd_site):
    engine = Engine("example-news", DetectSettings(signatures=False), live=False)
    engine.feed(crowd_site.frame)
    result = engine.finish()
    assert all(i.kind is not IncidentKind.FLOOD for i in result.incidents)
    flagged = set(result.attackers.get_column("client").to_list())
    assert not flagged & crowd_site.protected
    crowd = [s for s in result.surges if s.verdict == "flash-crowd"]
    assert crowd and crowd[0].protected_share >= 0.5


def test_crowd_during_a_flood_still_spares_the_readers(flood_site, crowd_site):
    crowd_only = crowd_site.frame.filter(pl.col("client").is_in(list(crowd_site.protected)))
    both = pl.concat([flood_site.frame, crowd_only]).sort("ts", maintain_order=True)
    engine = Engine("example-news", DetectSettings(signatures=False), live=False)
    engine.feed(both)
    result = engine.finish()
    flagged = set(result.attackers.get_column("client").to_list())
    assert not flagged & crowd_site.protected
    assert len(flagged & flood_site.attackers) >= 0.95 * len(flood_site.attackers)
