"""Correlate's linking rule on synthetic bundles: what must link, what must not, what must be refused."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stix2validator import ValidationOptions, validate_instance
from synthetic_bundles import KEY, START, bundle, fresh_addresses, incident, make_actor

from floodwall.cli import main
from floodwall.correlate import correlate
from floodwall.errors import BundleError

DO = [(14061, "DIGITALOCEAN-ASN", "US")]


def _write(folder: Path, documents: dict[str, dict[str, Any]]) -> list[Path]:
    paths = []
    for site, document in documents.items():
        path = folder / site / "bundle.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document), encoding="utf-8")
        paths.append(path)
    return paths


def _together(document: dict[str, Any], a: str, b: str) -> bool:
    for campaign in document["campaigns"]:
        ids = {m["id"] for m in campaign["incidents"]}
        if a in ids or b in ids:
            return a in ids and b in ids
    raise AssertionError(f"{a} or {b} in no campaign")


def _pair(tmp_path: Path, first: dict[str, Any], second: dict[str, Any], key: bytes | None = KEY) -> dict[str, Any]:
    paths = _write(tmp_path, {"alpha": bundle("alpha", [first], key), "beta": bundle("beta", [second], key)})
    return correlate(paths, tmp_path / "out").document


def test_five_percent_address_reuse_still_links(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    actor = make_actor(rng, "vandal", 400, DO)
    first = actor.pool[:200]
    second = first[:10] + fresh_addresses(rng, 190)  # 10 of 200 reused: 5%
    a = incident(rng, actor, "alpha", 1, addresses=first, start=START)
    b = incident(rng, actor, "beta", 1, addresses=second, start=START + timedelta(days=9))
    document = _pair(tmp_path, a, b)
    assert _together(document, a["id"], b["id"])
    (link,) = document["links"]
    assert link["shared_addresses"] == 10 and "shared-addresses" in link["reasons"]
    assert link["share_of_each"] == [0.05, 0.05]


def test_a_changed_user_agent_list_still_links(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    actor = make_actor(rng, "vandal", 400, DO)
    first = actor.pool[:200]
    second = first[:10] + fresh_addresses(rng, 190)
    new_agents = [f"Mozilla/5.0 (Windows NT 10.0) Chrome/{120 + k}.0 Safari/537.36" for k in range(15)]
    a = incident(rng, actor, "alpha", 1, addresses=first, start=START)
    b = incident(rng, actor, "beta", 1, addresses=second, start=START + timedelta(days=3), agents=new_agents)
    document = _pair(tmp_path, a, b)
    assert _together(document, a["id"], b["id"])
    assert document["links"][0]["fingerprint"]["user_agents"] == 0.0


def test_a_shared_hosting_network_alone_does_not_link(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    one, other = make_actor(rng, "vandal", 300, DO), make_actor(rng, "raider", 300, DO)
    other.vectors = one.vectors  # the same vectors, the same network, the same day: still strangers
    a = incident(rng, one, "alpha", 1, addresses=one.pool[:150], start=START)
    b = incident(rng, other, "beta", 1, addresses=other.pool[:150], start=START + timedelta(hours=2))
    document = _pair(tmp_path, a, b)
    assert not _together(document, a["id"], b["id"])
    assert document["links"] == []
    (near,) = document["near_misses"] or [None]
    if near is not None:
        assert near["components"]["asns"] == 1.0 and near["shared_addresses"] == 0


def test_strangers_renting_the_same_hosting_prefixes_are_not_merged(tmp_path: Path) -> None:
    """Two unrelated attacks from the same provider's /24s (one network, many shared prefixes, the same vectors and
    browser families, the same day) share no address, marker or tool: they stay two campaigns."""
    rng = np.random.default_rng(10)
    one, other = make_actor(rng, "vandal", 300, DO), make_actor(rng, "raider", 300, DO)
    other.vectors = one.vectors
    taken = set(one.pool[:150])
    # The other's addresses: the same /24s as the first's, other hosts in them.
    neighbours = sorted(
        {f"{a.rsplit('.', 1)[0]}.{(int(a.rsplit('.', 1)[1]) + 7) % 254 + 1}" for a in one.pool[:150]} - taken
    )
    a = incident(rng, one, "alpha", 1, addresses=one.pool[:150], start=START)
    b = incident(rng, other, "beta", 1, addresses=neighbours, start=START + timedelta(hours=2))
    document = _pair(tmp_path, a, b)
    assert not _together(document, a["id"], b["id"])
    (near,) = document["near_misses"] or [None]
    assert near is None or (near["shared_addresses"] == 0 and near["shared_prefixes"] >= 10)


def test_campaigns_json_summarises_the_links_beyond_each_campaigns_spanning_tree(tmp_path: Path) -> None:
    """A campaign of six incidents has 15 linked pairs: 5 hold it together and are listed with their evidence, the
    other 10 are counted in the campaign's summary (so the file grows with incidents, not with their pairs)."""
    rng = np.random.default_rng(11)
    actor = make_actor(rng, "vandal", 400, DO)
    documents = {}
    for k in range(6):
        site = f"outlet-{k}"
        inc = incident(rng, actor, site, 1, addresses=actor.pool[:200], start=START + timedelta(days=k))
        documents[site] = bundle(site, [inc])
    document = correlate(_write(tmp_path, documents), tmp_path / "out").document
    (campaign,) = document["campaigns"]
    assert len(campaign["incidents"]) == 6 and document["links_total"] == 15
    assert len(document["links"]) == 5 and all(link["linked"] for link in document["links"])
    assert campaign["other_links"]["count"] == 10
    assert campaign["other_links"]["reasons"]["shared-addresses"] == 10


def test_a_shared_marker_links_without_a_key(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    actor = make_actor(rng, "vandal", 300, DO)
    actor.marker = "hano"
    a = incident(rng, actor, "alpha", 1, addresses=actor.pool[:100], start=START, key=None)
    b = incident(rng, actor, "beta", 1, addresses=fresh_addresses(rng, 100), start=START + timedelta(days=20), key=None)
    document = _pair(tmp_path, a, b, key=None)
    assert _together(document, a["id"], b["id"])
    assert document["links"][0]["shared_markers"] == ["hano"]
    assert document["campaigns"][0]["infrastructure"]["addresses"] is None


def test_bundles_made_with_different_keys_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    actor = make_actor(rng, "vandal", 100, DO)
    other_key = b"another coalition's key, 32 byte"
    a = incident(rng, actor, "alpha", 1, addresses=actor.pool[:50], start=START)
    b = incident(rng, actor, "beta", 1, addresses=actor.pool[:50], start=START, key=other_key)
    paths = _write(tmp_path, {"alpha": bundle("alpha", [a]), "beta": bundle("beta", [b], other_key)})
    with pytest.raises(BundleError, match="different coalition keys") as caught:
        correlate(paths, tmp_path / "out")
    assert str(paths[0]) in str(caught.value) and str(paths[1]) in str(caught.value)
    with pytest.raises(BundleError, match="different coalition key"):
        correlate(paths[:1], tmp_path / "out", key=other_key)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["incidents"][0].update(start="yesterday"), "incidents.0.start"),
        (lambda d: d["incidents"][0].update(vectors=["ddos"]), "incidents.0.vectors.0"),
        (lambda d: d["incidents"][0]["address_hashes"].append("203.0.113.7"), "incidents.0.address_hashes"),
        (lambda d: d["incidents"][0].pop("kind"), "incidents.0.kind"),
        (lambda d: d.pop("schema_version"), "schema_version"),
        (lambda d: d.update(schema_version="2.0"), "schema_version"),
    ],
)
def test_schema_errors_name_the_file_and_the_field(tmp_path: Path, change: Any, field: str) -> None:
    rng = np.random.default_rng(12)
    actor = make_actor(rng, "vandal", 50, DO)
    document = bundle("alpha", [incident(rng, actor, "alpha", 1, addresses=actor.pool[:20], start=START)])
    change(document)
    (path,) = _write(tmp_path, {"alpha": document})
    with pytest.raises(BundleError) as caught:
        correlate([path], tmp_path / "out")
    assert str(path) in str(caught.value) and f"'{field}" in str(caught.value)


def test_many_actors_many_outlets(tmp_path: Path) -> None:
    """Eight actors over twenty outlets, each incident reusing 5-40% of its addresses from the actor's previous
    one, every other one with new user agents; and strangers on shared hosting: every campaign recovered exactly."""
    rng = np.random.default_rng(101)
    sites = [f"outlet-{k:02d}" for k in range(20)]
    per_site: dict[str, list[dict[str, Any]]] = {s: [] for s in sites}
    truth: dict[str, str] = {}
    for n in range(8):
        actor = make_actor(rng, f"actor{n}", 600, DO if n % 2 else [(64500 + n, f"NET-{n}", "NL")])
        previous = actor.pool[:200]
        for k in range(int(rng.integers(2, 6))):
            site = sites[int(rng.integers(len(sites)))]
            reuse = float(rng.uniform(0.05, 0.4))
            size = int(rng.integers(60, 200))
            kept = [str(x) for x in rng.choice(previous, max(3, int(reuse * size)), replace=False)]
            agents = None if k % 2 == 0 else [f"Agent {n}-{k}-{j}" for j in range(8)]
            start = START + timedelta(days=float(rng.uniform(0, 60)))
            inc_addresses = kept + fresh_addresses(rng, size)
            inc = incident(
                rng, actor, site, len(per_site[site]) + 1, addresses=inc_addresses, start=start, agents=agents
            )
            per_site[site].append(inc)
            truth[inc["id"]] = actor.name
            previous = inc_addresses  # each incident reuses 5-40% of its addresses from the one before
    for n in range(10):  # strangers: one incident each, most on the same hosting network
        actor = make_actor(rng, f"stranger{n}", 100, DO)
        site = sites[n]
        inc = incident(rng, actor, site, len(per_site[site]) + 1, addresses=actor.pool, start=START + timedelta(days=n))
        per_site[site].append(inc)
        truth[inc["id"]] = actor.name
    paths = _write(tmp_path, {s: bundle(s, incs) for s, incs in per_site.items() if incs})
    document = correlate(paths, tmp_path / "out").document
    found = {m["id"]: c["id"] for c in document["campaigns"] for m in c["incidents"]}
    assert sorted(found) == sorted(truth)  # every incident in exactly one campaign
    assert sum(len(c["incidents"]) for c in document["campaigns"]) == len(truth)
    for a, actor_a in truth.items():
        for b, actor_b in truth.items():
            assert (actor_a == actor_b) == (found[a] == found[b]), (a, b)


def test_outputs_follow_the_contract_and_stix_validates(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    actor = make_actor(rng, "vandal", 300, DO)
    actor.marker = "zastava"
    a = incident(rng, actor, "alpha", 1, addresses=actor.pool[:100], start=START)
    b = incident(rng, actor, "beta", 1, addresses=actor.pool[50:150], start=START + timedelta(days=1))
    c = incident(rng, make_actor(rng, "other", 50, DO), "beta", 2, addresses=fresh_addresses(rng, 30), start=START)
    paths = _write(tmp_path, {"alpha": bundle("alpha", [a]), "beta": bundle("beta", [b, c])})
    out = tmp_path / "out"
    result = correlate(paths, out)
    document = json.loads((out / "campaigns.json").read_text())
    assert document == json.loads(json.dumps(result.document))
    for campaign in document["campaigns"]:
        assert set(campaign) >= {"id", "confidence", "incidents", "evidence"}
        assert 0.0 <= campaign["confidence"] <= 1.0
        assert {"shared_addresses", "jaccard", "shared_markers", "fingerprint_similarity"} <= set(campaign["evidence"])
    (linked,) = [c for c in document["campaigns"] if len(c["incidents"]) == 2]
    assert linked["evidence"]["shared_addresses"] == 50 and linked["evidence"]["shared_markers"] == ["zastava"]
    page = (out / "campaigns.html").read_text()
    assert "<script" not in page and 'rel="stylesheet" href="http' not in page
    assert '<figure class="chart" id="chart-campaign-timeline">' in page and 'role="img"' in page
    assert all(c["id"] in page for c in document["campaigns"]) and a["id"] in page
    stix = json.loads((out / "campaigns.stix.json").read_text())
    results = validate_instance(stix, ValidationOptions(strict=True))
    assert results.is_valid, [str(e) for e in results.errors]
    assert sum(o["type"] == "campaign" for o in stix["objects"]) == len(document["campaigns"])


def test_the_correlate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(14)
    actor = make_actor(rng, "vandal", 100, DO)
    a = incident(rng, actor, "alpha", 1, addresses=actor.pool[:50], start=START)
    paths = _write(tmp_path, {"alpha": bundle("alpha", [a])})
    key_file = tmp_path / "coalition.key"
    key_file.write_bytes(KEY + b"\n")
    with pytest.raises(SystemExit) as done:
        main(["correlate", str(paths[0].parent), "--out", str(tmp_path / "out"), "--key-file", str(key_file)])
    assert done.value.code in (0, None)
    assert (tmp_path / "out" / "campaigns.json").exists()
    key_file.write_bytes(b"a different key of 32 bytes ....")
    with pytest.raises(SystemExit) as failed:
        main(["correlate", str(paths[0]), "--out", str(tmp_path / "out"), "--key-file", str(key_file)])
    assert failed.value.code == 2
    assert str(paths[0]) in capsys.readouterr().err
