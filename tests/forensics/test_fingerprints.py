"""The attackers' query-string shapes in bundle.json: the same whether a query has one part or several."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from floodwall.detect import ATTACKER_SCHEMA, TIMELINE_SCHEMA, DetectionResult
from floodwall.forensics.fingerprints import FingerprintAccumulator, query_shape
from floodwall.model import Incident, IncidentKind, Vector
from floodwall.testing import requests_frame

START = datetime(2024, 11, 11, 8, 0, tzinfo=UTC)
QUERIES = [
    "k9796d=6570871986",  # one part: a cache buster
    "s=hano+was+here&_=1731312000",  # two parts, given in another order than they are shaped
    "ver=deadbeef00",
    "Q=%27%20or",
    "",  # an empty query string
]


def _detection(clients: list[str]) -> DetectionResult:
    incident = Incident(
        id="example-1",
        site="example",
        kind=IncidentKind.FLOOD,
        start=START,
        end=START + timedelta(minutes=10),
        peak_rps=1.0,
        requests=100,
        attack_requests=100,
        vectors=(Vector.CACHE_BUST,),
        attackers=tuple(clients),
    )
    attackers = pl.DataFrame(
        {"client": clients, "incident_id": [incident.id] * len(clients), "score": [0.9] * len(clients)}
        | {"vectors": [["cache-bust"]] * len(clients), "reasons": [["rate"]] * len(clients)}
        | {"requests": [20] * len(clients)},
        schema=ATTACKER_SCHEMA,
    )
    return DetectionResult(
        site="example",
        incidents=(incident,),
        findings=(),
        attackers=attackers,
        timeline=pl.DataFrame(schema=TIMELINE_SCHEMA),
        surges=(),
        baseline_method="none",
        requests=100,
        clients=len(clients),
        analysed_at=START,
    )


def test_one_part_and_several_part_queries_get_their_shapes() -> None:
    clients = ["203.0.113.7", "203.0.113.9"]
    rows = [
        {"ts": START + timedelta(seconds=k), "client": clients[k % 2], "query": QUERIES[k % len(QUERIES)]}
        for k in range(100)
    ]
    accumulator = FingerprintAccumulator()
    accumulator.feed(requests_frame(rows, site="example"))
    shapes = accumulator.finish(_detection(clients))["example-1"].query_shapes
    assert shapes == {
        "{r}={n}": 0.2,  # a name with digits looks random
        "_={n}&s={u}": 0.2,  # names sorted
        "ver={h}": 0.2,
        "q={u}": 0.2,  # names lower-cased
        "{r}=": 0.2,  # an empty query string has an empty name
    }
    single = pl.DataFrame({"query": QUERIES}).select(query_shape(pl.col("query"))).to_series().to_list()
    assert sorted(single) == sorted(shapes)
