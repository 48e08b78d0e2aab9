"""Decisions to and from JSON: a round trip keeps everything, and bad input is refused naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floodwall.errors import InputError
from floodwall.model import Action, Decision
from floodwall.store import FORMAT_VERSION, decision_from_json, decision_to_dict, decision_to_json, normalise_target

times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(lambda a: a.compressed)
decisions = st.builds(
    Decision,
    target=addresses,
    action=st.sampled_from(Action),
    created=times,
    expires=times,
    reasons=st.lists(st.text(), max_size=3).map(tuple),
    site=st.none() | st.text(max_size=20),
    origin=st.text(min_size=1, max_size=20),
    evidence=st.lists(st.tuples(st.text(max_size=30), st.integers(min_value=1, max_value=10**9)), max_size=3).map(
        tuple
    ),
)


@given(decisions)
def test_round_trip_keeps_every_field(decision: Decision) -> None:
    assert decision_from_json(decision_to_json(decision)) == decision


def test_the_format_is_versioned_and_readable() -> None:
    created = datetime(2023, 9, 1, 8, 12, 5, tzinfo=UTC)
    decision = Decision("203.0.113.7", Action.BAN, created, created + timedelta(hours=1), ("fleet member",))
    data = decision_to_dict(decision)
    assert data["v"] == FORMAT_VERSION == 1
    assert data["created"] == "2023-09-01T08:12:05Z" and data["action"] == "ban"


def _with(**changes: object) -> str:
    created = datetime(2023, 9, 1, tzinfo=UTC)
    data = decision_to_dict(Decision("203.0.113.7", Action.BAN, created, created + timedelta(hours=1), ()))
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v != "DROP"})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"v": 2}, "'v'"),
        ({"v": "DROP"}, "'v'"),
        ({"target": "DROP"}, "'target'"),
        ({"target": "example.org"}, "'target'"),
        ({"action": "nuke"}, "'action'"),
        ({"expires": "tomorrow"}, "'expires'"),
        ({"created": "2023-09-01T00:00:00"}, "'created'"),
        ({"reasons": "one"}, "'reasons'"),
        ({"evidence": [["access.log", "12"]]}, "'evidence\\[0\\]'"),
        ({"site": 5}, "'site'"),
    ],
)
def test_bad_json_names_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InputError, match=field):
        decision_from_json(_with(**changes))


def test_not_json_at_all() -> None:
    with pytest.raises(InputError, match="not JSON"):
        decision_from_json("{")
    with pytest.raises(InputError, match="JSON object"):
        decision_from_json("[]")


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7/32", "203.0.113.7"),
        ("198.51.100.0/24", "198.51.100.0/24"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("2001:db8::/48", "2001:db8::/48"),
    ],
)
def test_targets_are_canonical(text: str, canonical: str) -> None:
    assert normalise_target(text) == canonical
