"""The IPFire location database as Debian installs it: known networks, special addresses, bulk equals one by one."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floodwall.errors import InputError, ServiceError
from floodwall.geo import DEFAULT_LIBLOC_PATHS, LOOKUP_SCHEMA, GeoLookup, GeoRecord, open_geo

pytestmark = pytest.mark.skipif(
    not any(path.is_file() for path in DEFAULT_LIBLOC_PATHS),
    reason="Debian package libloc-database is not installed (no /var/lib/location/database.db)",
)


@pytest.fixture(scope="module")
def geo() -> GeoLookup:
    return open_geo()


def _row(geo: GeoLookup, address: str) -> dict[str, object]:
    return geo.lookup(pl.Series([address])).row(0, named=True)


def _as_record(row: dict[str, object]) -> GeoRecord | None:
    if row["prefix"] is None:
        return None
    return GeoRecord(**{key: value for key, value in row.items() if key not in ("address", "reserved")})  # type: ignore[arg-type]


def test_known_networks(geo: GeoLookup) -> None:
    google = _row(geo, "8.8.8.8")
    assert (google["prefix"], google["asn"], google["as_name"], google["country"]) == (
        "8.8.8.0/24",
        15169,
        "GOOGLE",
        "US",
    )
    assert google["anycast"] is True and google["reserved"] is False
    cloudflare = _row(geo, "1.1.1.1")
    assert (cloudflare["asn"], cloudflare["as_name"], cloudflare["prefix"]) == (13335, "CLOUDFLARENET", "1.1.1.0/24")
    google6 = _row(geo, "2a00:1450:4001::1")
    assert (google6["prefix"], google6["asn"], google6["country"]) == ("2a00:1450:4001::/48", 15169, "IE")
    assert _row(geo, "::ffff:8.8.8.8")["prefix"] == "8.8.8.0/24"


@pytest.mark.parametrize(
    "address", ["10.1.2.3", "192.168.0.1", "172.16.5.5", "127.0.0.1", "100.64.0.1", "::1", "fe80::1", "2001:db8::1"]
)
def test_special_purpose_addresses_have_no_network(geo: GeoLookup, address: str) -> None:
    row = _row(geo, address)
    assert row["reserved"] is True
    assert row["prefix"] is None and row["asn"] is None and row["country"] is None
    assert geo.lookup_address(address) is None


def test_text_that_is_not_an_address_gives_nulls(geo: GeoLookup) -> None:
    frame = geo.lookup(pl.Series(["8.8.8.8", "not-an-ip", None, "256.1.1.1", "01.2.3.4", "fe80::1%eth0", "8.8.8.8"]))
    assert frame.schema == pl.Schema(LOOKUP_SCHEMA)
    assert frame["address"].to_list()[:3] == ["8.8.8.8", "not-an-ip", None]
    assert frame["asn"].to_list() == [15169, None, None, None, None, None, 15169]
    assert frame["reserved"].to_list() == [False, None, None, None, None, None, False]


def test_database_is_described_with_its_date(geo: GeoLookup) -> None:
    described = geo.database
    assert described.kind == "libloc" and described.vendor == "IPFire Project"
    assert described.size_bytes == described.path.stat().st_size
    assert 2017 <= described.built_at.year <= 2100
    assert described.to_dict()["built_at"].endswith("Z")
    assert described.built_at.strftime("%Y-%m-%d") in described.describe()


def _sample_addresses(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    v4 = [".".join(str(rng.randrange(256)) for _ in range(4)) for _ in range(count)]
    # Most of the IPv6 space is empty; draw from the allocated 2000::/4 so most addresses hit a network.
    v6 = [str(__import__("ipaddress").IPv6Address((0x2 << 124) | rng.getrandbits(124))) for _ in range(count // 4)]
    return v4 + v6


def test_bulk_lookup_equals_one_by_one(geo: GeoLookup) -> None:
    sample = _sample_addresses(3000, seed=7)
    frame = geo.lookup(pl.Series(sample + sample[:100]))
    assert frame.height == len(sample) + 100
    assert frame["prefix"].null_count() < frame.height / 2
    for row in frame.head(len(sample)).iter_rows(named=True):
        assert _as_record(row) == geo.lookup_address(str(row["address"])), row["address"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.ip_addresses(), min_size=1, max_size=20))
def test_bulk_lookup_equals_one_by_one_for_any_address(geo: GeoLookup, addresses: list[object]) -> None:
    texts = [str(address) for address in addresses]
    for row in geo.lookup(pl.Series(texts)).iter_rows(named=True):
        assert _as_record(row) == geo.lookup_address(str(row["address"]))


_DEBIAN_LOOKUP = """
import json, sys, location
db = location.Database(sys.argv[1])
out = {}
for address in json.load(sys.stdin):
    n = db.lookup(address)
    out[address] = None if n is None else [str(n), n.asn or None, n.country_code or None]
print(json.dumps(out))
"""


def test_agrees_with_debian_libloc(geo: GeoLookup) -> None:
    """Debian's own libloc (python3-location, for Debian's Python) is the independent judge of the reader."""
    python = Path("/usr/bin/python3")
    if subprocess.run([python, "-c", "import location"], capture_output=True, check=False).returncode != 0:
        pytest.skip("Debian's python3-location is not installed")
    sample = [address for address in _sample_addresses(1200, seed=11) if geo.lookup_address(address) is not None]
    result = subprocess.run(
        [python, "-c", _DEBIAN_LOOKUP, str(geo.database.path)],
        input=json.dumps(sample),
        capture_output=True,
        text=True,
        check=True,
    )
    expected = json.loads(result.stdout)
    frame = geo.lookup(pl.Series(sample))
    for address, prefix, asn, country in frame.select("address", "prefix", "asn", "country").iter_rows():
        assert [prefix, asn, country] == expected[address], address


def test_missing_database_names_the_debian_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("floodwall.geo.lookup.DEFAULT_LIBLOC_PATHS", (tmp_path / "database.db",))
    with pytest.raises(ServiceError, match="libloc-database"):
        open_geo()
    with pytest.raises(InputError, match="does not exist"):
        open_geo(tmp_path / "GeoLite2-ASN.mmdb")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 10)
    with pytest.raises(InputError, match="not an IPFire location database"):
        open_geo(tmp_path / "junk.db")
