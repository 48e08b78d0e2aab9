"""The forensic pass counts a request as an incident's attack traffic only inside that incident's span (a minute's
margin either side), for attackers of one incident and for an address that took part in two."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from floodwall.detect import ATTACKER_SCHEMA, TIMELINE_SCHEMA, DetectionResult
from floodwall.forensics import collect
from floodwall.forensics.collect import Collector
from floodwall.forensics.shapes import marker_candidates
from floodwall.model import Incident, IncidentKind, Vector
from floodwall.testing import requests_frame

START = datetime(2024, 11, 11, 8, 0, tzinfo=UTC)
BOTH = "203.0.113.7"  # floods, then tries an injection later
FLOODER = "203.0.113.9"
READER = "198.51.100.23"


def _incident(
    number: int, kind: IncidentKind, start: timedelta, end: timedelta, attackers: tuple[str, ...]
) -> Incident:
    vector = Vector.GET_FLOOD if kind is IncidentKind.FLOOD else Vector.SQLI
    return Incident(
        id=f"example-{number}",
        site="example",
        kind=kind,
        start=START + start,
        end=START + end,
        peak_rps=1.0,
        requests=10,
        attack_requests=10,
        vectors=(vector,),
        attackers=attackers,
    )


def _detection() -> DetectionResult:
    flood = _incident(1, IncidentKind.FLOOD, timedelta(0), timedelta(minutes=10), (BOTH, FLOODER))
    exploit = _incident(2, IncidentKind.EXPLOIT, timedelta(minutes=30), timedelta(minutes=31), (BOTH,))
    members = [(BOTH, flood.id), (FLOODER, flood.id), (BOTH, exploit.id)]
    attackers = pl.DataFrame(
        {
            "client": [c for c, _ in members],
            "incident_id": [i for _, i in members],
            "score": [0.9] * 3,
            "vectors": [["get-flood"], ["get-flood"], ["sqli"]],
            "reasons": [["rate"]] * 3,
            "requests": [1] * 3,
        },
        schema=ATTACKER_SCHEMA,
    )
    return DetectionResult(
        site="example",
        incidents=(flood, exploit),
        findings=(),
        attackers=attackers,
        timeline=pl.DataFrame(schema=TIMELINE_SCHEMA),
        surges=(),
        baseline_method="none",
        requests=0,
        clients=3,
        analysed_at=START,
        window_start=START,
        window_end=START + timedelta(hours=1),
    )


def _requests(at_minutes: list[float], client: str, query: str | None = None) -> list[dict[str, object]]:
    return [{"ts": START + timedelta(minutes=m), "client": client, "query": query} for m in at_minutes]


def test_requests_count_to_the_incident_whose_span_they_fall_in() -> None:
    rows = (
        _requests([1, 2, 3, 10.5], BOTH)  # the flood (10.5: within the minute's margin after its end)
        + _requests([20], BOTH)  # between the two: a reader's request as far as the account goes
        + _requests([30.2, 30.4], BOTH, query="id=1' or '1'='1")  # the injection attempt
        + _requests([4, 5], FLOODER)
        + _requests([30.3], FLOODER)  # not an attacker of the exploit: normal traffic
        + _requests([1, 30.5], READER)
    )
    frame = requests_frame(rows, site="example")
    collector = Collector(_detection())
    collector.feed(frame.slice(0, 6))  # two batches: the marks do not depend on where a batch ends
    collector.feed(frame.slice(6))
    collected = collector.collected()
    attack = {
        (r["incident_id"], r["client"]): r["requests"]
        for r in collected.attackers.group_by("incident_id", "client").agg(pl.col("requests").sum()).to_dicts()
    }
    assert attack == {("example-1", BOTH): 4, ("example-1", FLOODER): 2, ("example-2", BOTH): 2}
    readers = dict(collected.readers.select("client", "requests").iter_rows())
    assert readers == {BOTH: 1, FLOODER: 1, READER: 2}
    assert collected.minutes.get_column("attack").sum() == 8
    assert collected.rows == 12


def test_a_recurring_query_key_is_counted_in_full_and_one_off_keys_are_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cache-busting flood sends a new query key with every request: past `_KEY_SAMPLE` such requests per batch,
    only keys that recur in a sample are counted, and those are counted in every request that carries them (the
    marker "hano" here, in one request of 50), as when every key is counted."""
    rows = [
        {
            "ts": START + timedelta(seconds=n / 100),
            "client": (BOTH, FLOODER)[n % 2],
            "query": "hano=1" if n % 50 == 0 else f"k{n:06d}x={n}",
            "line": n + 1,
        }
        for n in range(50_000)
    ]
    frame = requests_frame(rows, site="example")

    def candidates() -> tuple[pl.DataFrame, set[str]]:
        collector = Collector(_detection())
        collector.feed(frame.slice(0, 25_000))
        collector.feed(frame.slice(25_000))
        found = collector.collected().candidates.filter(pl.col("kind") == "query-key")
        return found.drop("clients").sort("value", "incident_id"), collector.query_keys

    watched, keys = candidates()
    assert keys == {"hano"}
    assert watched.select("value", "requests", "line").rows() == [("hano", 1000, 1)]
    monkeypatch.setattr(collect, "_KEY_SAMPLE", 10**9)  # every key of every request
    every, keys = candidates()
    assert keys == set()
    assert every.height == 50_000 - 1000 + 1
    assert every.filter(pl.col("value") == "hano").equals(watched)


def test_user_agent_and_path_candidates_read_off_the_shared_groupings_are_those_of_the_rows() -> None:
    """The user-agent and path-word marker candidates come from the (client, user agent) and (host, path) counts
    the collector makes anyway: the same candidates, counts, clients, times and evidence as grouping the attack rows
    themselves; a random-path flood's 404s give no path words."""
    paths = ["/hano-was-here/story", "/Hano-Was-Here/2", "/2024/11/opinion", None, "/qwxzrtyplk"]
    agents = ["Stop spreading lies. Hano was here", "STOP SPREADING LIES. HANO WAS HERE", "curl/8.5", None]
    rows = [
        {
            "ts": START + timedelta(seconds=n),
            "client": (BOTH, FLOODER)[n % 2],
            "path": paths[n % 5],
            "status": 404 if n % 5 == 4 else 200,
            "user_agent": agents[n % 4],
            "host": ("a.example", "b.example", None)[n % 3],
            "line": 100 + n,
        }
        for n in range(120)
    ]
    frame = requests_frame(rows, site="example")
    collector = Collector(_detection())
    collector.feed(frame)
    got = collector.collected().candidates.filter(pl.col("kind").is_in(["user-agent", "path"]))
    attack = frame.with_columns(
        pl.lit("example-1").alias("incident_id"),
        pl.when(pl.col("status") == 404).then(pl.lit("notfound")).otherwise(pl.lit("page")).alias("kind"),
    )
    expected = marker_candidates(
        attack, keys=("incident_id",), skip_paths=pl.col("kind") == "notfound", count_clients=True
    ).filter(pl.col("kind").is_in(["user-agent", "path"]))
    order = ["kind", "value"]
    assert got.select(expected.columns).sort(order).equals(expected.sort(order))
    assert {"hano-was-here", "stop spreading lies. hano was here"} <= set(got.get_column("value"))
    assert "qwxzrtyplk" not in set(got.get_column("value"))


def test_batches_fed_all_at_once_give_the_same_account_as_fed_one_by_one() -> None:
    """`Forensics.feed_all` marks the next batch on a thread of its own while this one is aggregated: the same
    tables come out as from `feed`, batch after batch, and a batch that cannot be read stops the pass with its error."""
    from floodwall.forensics import Forensics

    rows = (
        _requests([n / 10 for n in range(100)], BOTH, query="hano=1")
        + _requests([n / 7 for n in range(70)], FLOODER)
        + _requests([30.2, 30.4], BOTH, query="id=1' or '1'='1")
        + _requests([n / 3 for n in range(180)], READER)
    )
    frame = requests_frame(rows, site="example").sort("ts")
    batches = [frame.slice(start, 40) for start in range(0, frame.height, 40)]
    one_by_one = Forensics("example", _detection())
    for batch in batches:
        one_by_one.feed(batch)
    at_once = Forensics("example", _detection())
    at_once.feed_all(iter(batches))
    expected, got = one_by_one._collector.collected(), at_once._collector.collected()
    assert got.rows == expected.rows == frame.height and got.batches == len(batches)
    for name in ("minutes", "attackers", "agents", "candidates", "readers", "breach", "samples"):
        table, wanted = getattr(got, name), getattr(expected, name)
        assert table.sort(pl.all()).equals(wanted.sort(pl.all())), name

    def broken() -> Iterator[pl.DataFrame]:
        yield batches[0]
        raise OSError("spool file gone")

    with pytest.raises(OSError, match="spool file gone"):
        Forensics("example", _detection()).feed_all(broken())
