"""bundle.json: keyed hashes only with a key, no address in clear, fingerprints of the attackers' requests only."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from floodwall.detect import ATTACKER_SCHEMA, TIMELINE_SCHEMA, DetectionResult
from floodwall.errors import BundleError, InputError
from floodwall.forensics.bundle import (
    build_bundle,
    coalition_key,
    hash_address,
    key_fingerprint,
    read_bundle,
)
from floodwall.forensics.fingerprints import FingerprintAccumulator, ua_hash
from floodwall.model import Incident, IncidentKind, Vector
from floodwall.testing import requests_frame

KEY = b"a coalition key of thirty-two by"
START = datetime(2024, 11, 11, 8, 0, tzinfo=UTC)
ATTACKERS = ("203.0.113.7", "203.0.113.9", "2001:db8::7")
READER = "198.51.100.23"
BOT_AGENT = "Mozilla/5.0 (Windows NT 10.0) Chrome/120.0 Safari/537.36 zastava"


def _frames() -> list[pl.DataFrame]:
    rows = []
    for k in range(600):
        ts = START + timedelta(seconds=k)
        rows.append(
            {"ts": ts, "client": ATTACKERS[k % 3], "path": "/", "query": f"zastava={k}", "user_agent": BOT_AGENT}
        )
        if k % 20 == 0:
            rows.append(
                {
                    "ts": ts,
                    "client": READER,
                    "path": "/2024/11/11/a-long-article-slug/",
                    "query": None,
                    "user_agent": "Mozilla/5.0 (iPhone) Safari/605",
                }
            )
    frame = requests_frame(rows, site="example")
    return [frame.slice(0, 300), frame.slice(300)]


def _detection() -> DetectionResult:
    incident = Incident(
        id="example-20241111T0800-1",
        site="example",
        kind=IncidentKind.FLOOD,
        start=START,
        end=START + timedelta(minutes=10),
        peak_rps=3.0,
        requests=630,
        attack_requests=600,
        vectors=(Vector.GET_FLOOD, Vector.CACHE_BUST),
        attackers=(*ATTACKERS, "192.0.2.0/24"),
        markers=("zastava",),
    )
    attackers = pl.DataFrame(
        {
            "client": list(ATTACKERS),
            "incident_id": [incident.id] * 3,
            "score": [0.9] * 3,
            "vectors": [["get-flood"]] * 3,
            "reasons": [["rate"]] * 3,
            "requests": [200] * 3,
        },
        schema=ATTACKER_SCHEMA,
    )
    timeline = pl.DataFrame(
        {"ts": [START + timedelta(seconds=k) for k in range(600)], "requests": [1] * 600, "attack_requests": [1] * 600}
        | {name: [0] * 600 for name in ("s2xx", "s3xx", "s4xx", "s5xx")},
        schema=TIMELINE_SCHEMA,
    )
    return DetectionResult(
        site="example",
        incidents=(incident,),
        findings=(),
        attackers=attackers,
        timeline=timeline,
        surges=(),
        baseline_method="none",
        requests=630,
        clients=4,
        analysed_at=START,
        window_start=START,
        window_end=START + timedelta(minutes=10),
    )


def _bundle(key: bytes | None) -> dict[str, object]:
    accumulator = FingerprintAccumulator()
    for frame in _frames():
        accumulator.feed(frame)
    return build_bundle("example", _detection(), accumulator, key, None, version="test", generated=START)


def test_with_a_key_attackers_are_hashed_and_nobody_is_in_clear() -> None:
    document = _bundle(KEY)
    text = json.dumps(document)
    (incident,) = document["incidents"]  # type: ignore[attr-defined]
    assert sorted(incident["address_hashes"]) == sorted(hash_address(a, KEY) for a in ATTACKERS)
    assert hash_address(READER, KEY) not in text
    for address in (*ATTACKERS, READER):
        assert f'"{address}"' not in text
    assert document["key_fingerprint"] == key_fingerprint(KEY)
    assert {p["prefix"] for p in incident["prefixes"]} >= {"203.0.113.0/24", "2001:db8::/48", "192.0.2.0/24"}


def test_without_a_key_there_is_no_address_level_data() -> None:
    document = _bundle(None)
    (incident,) = document["incidents"]  # type: ignore[attr-defined]
    assert incident["address_hashes"] is None and document["key_fingerprint"] is None
    assert incident["addresses"] == 3


def test_fingerprints_come_from_the_attackers_requests_only() -> None:
    (incident,) = _bundle(KEY)["incidents"]  # type: ignore[index]
    fingerprint = incident["fingerprint"]
    assert fingerprint["user_agents"] == {ua_hash(BOT_AGENT): 1.0}
    assert fingerprint["ua_families"] == {"chrome/windows": 1.0}
    assert fingerprint["query_shapes"] == {"zastava={n}": 1.0}
    assert fingerprint["path_shapes"] == {"/": 1.0}
    assert fingerprint["rate_quantiles_rps"]["p50"] == pytest.approx(200 / 600, rel=0.01)
    assert fingerprint["hour_profile"][8] == 1.0


def test_hashes_are_canonical_and_keyed() -> None:
    assert hash_address("2001:DB8::7", KEY) == hash_address("2001:db8:0::7", KEY)
    assert hash_address("203.0.113.7", KEY) != hash_address("203.0.113.7", KEY[::-1])
    assert key_fingerprint(KEY) != key_fingerprint(KEY[::-1])


def test_short_keys_are_refused_and_long_ones_fit() -> None:
    with pytest.raises(InputError, match=r"coalition\.key"):
        coalition_key(b"short\n", "coalition.key")
    assert coalition_key(KEY + b"\n", "f") == KEY
    assert len(coalition_key(b"x" * 100, "f")) == 64


def test_read_bundle_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(_bundle(KEY)))
    bundle = read_bundle(path)
    assert bundle.incidents[0].markers == ["zastava"]
    broken = json.loads(path.read_text())
    broken["incidents"][0]["peak_rps"] = -1
    path.write_text(json.dumps(broken))
    with pytest.raises(BundleError, match=re.escape(f"{path}: field 'incidents.0.peak_rps'")):
        read_bundle(path)
    path.write_text("{not json")
    with pytest.raises(BundleError, match=re.escape(str(path))):
        read_bundle(path)


def test_the_forensic_pass_counts_the_same_fingerprints() -> None:
    """analyze feeds the fingerprints from the forensic pass's attack rows: the bundle is the same as from an
    accumulator fed every request (the reader's requests are no attacker's, and every attacker's are in the flood)."""
    from floodwall.forensics import Forensics

    counted = FingerprintAccumulator()
    forensics = Forensics("example", _detection(), fingerprints=counted)
    for frame in _frames():
        forensics.feed(frame)
    forensics.finish()
    via_pass = build_bundle("example", _detection(), counted, KEY, None, version="test", generated=START)
    assert via_pass == _bundle(KEY)
