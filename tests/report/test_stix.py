"""indicators.stix.json: every object of the bundle is what `stix2` makes of it, for each attacking address (the
indicators and sightings after an incident's first are written from its first one's document)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import stix2
from stix2validator import validate_string

from floodwall.model import Incident, IncidentKind, Vector
from floodwall.report.stix import stix_bundle

START = datetime(2024, 11, 11, 8, 0, tzinfo=UTC)
ATTACKERS = ("203.0.113.7", "2001:db8::9", "198.51.100.0/24", "2001:db8:1::/48", "203.0.113.8", "2001:db8::a")


def _incident(number: int, kind: IncidentKind, attackers: tuple[str, ...]) -> Incident:
    return Incident(
        id=f"example-{number}",
        site="example",
        kind=kind,
        start=START + timedelta(hours=number),
        end=START + timedelta(hours=number, minutes=30),
        peak_rps=10.0,
        requests=100,
        attack_requests=90,
        vectors=(Vector.GET_FLOOD,) if kind is IncidentKind.FLOOD else (Vector.SQLI,),
        attackers=attackers,
    )


def test_every_indicator_and_sighting_is_the_one_stix2_makes_for_its_address() -> None:
    incidents = [_incident(1, IncidentKind.FLOOD, ATTACKERS), _incident(2, IncidentKind.EXPLOIT, ATTACKERS[4:])]
    counts = {("example-1", address): n + 1 for n, address in enumerate(ATTACKERS)}
    bundle = stix_bundle("example", incidents, counts, created=START + timedelta(days=1))
    text = json.dumps(bundle)
    assert validate_string(text).is_valid
    objects = {o["id"]: o for o in bundle["objects"]}
    indicators = {o["name"].rsplit(": attacked", 1)[0]: o for o in bundle["objects"] if o["type"] == "indicator"}
    assert set(indicators) == set(ATTACKERS)
    for address, indicator in indicators.items():
        # stix2 parses each document again, checking every property and the pattern's grammar.
        parsed = stix2.parse(indicator, allow_custom=False)
        assert json.loads(parsed.serialize()) == indicator
        assert f"'{address.split('/')[0]}" in indicator["pattern"]
        assert indicator["description"].startswith("Took part in flood example-1")
    sightings = [o for o in bundle["objects"] if o["type"] == "sighting"]
    assert len(sightings) == len(ATTACKERS) + 2
    for sighting in sightings:
        assert json.loads(stix2.parse(sighting).serialize()) == sighting
        indicator = objects[sighting["sighting_of_ref"]]
        address = indicator["name"].rsplit(": attacked", 1)[0]
        incident_id = sighting["description"].split()[-1]
        assert sighting["count"] == counts.get((incident_id, address), 1)
        assert objects[sighting["observed_data_refs"][0]]["first_observed"] == sighting["first_seen"]
    assert len({o["id"] for o in bundle["objects"]}) == len(bundle["objects"])
