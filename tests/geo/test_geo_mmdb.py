"""MaxMind DB files, written here by a small writer and judged by the official `maxminddb` reader."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import polars as pl
import pytest
from mmdb_writer import write_mmdb

from floodwall.geo import GeoLookup, GeoRecord, open_geo

ASN_NETWORKS = {
    "8.8.8.0/24": {"autonomous_system_number": 15169, "autonomous_system_organization": "GOOGLE"},
    "185.220.100.0/22": {"autonomous_system_number": 205100, "autonomous_system_organization": "F3 Netze e.V."},
    "45.0.0.0/8": {"autonomous_system_number": 64500, "autonomous_system_organization": "EXAMPLE-BIG"},
    "2a00:1450::/32": {"autonomous_system_number": 15169, "autonomous_system_organization": "GOOGLE"},
}
COUNTRY_NETWORKS = {
    "8.8.0.0/16": {"country": {"iso_code": "US"}, "traits": {"is_anycast": True}},
    "185.220.0.0/16": {"registered_country": {"iso_code": "DE"}, "traits": {"is_anonymous_proxy": True}},
    "2a00::/16": {"country": {"iso_code": "IE"}},
}
ANONYMOUS_NETWORKS = {"45.1.0.0/16": {"is_anonymous": True, "is_hosting_provider": True}}


@pytest.fixture(params=[24, 28, 32], ids=lambda size: f"record-{size}")
def asn_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / "Test-ASN.mmdb"
    write_mmdb(path, ASN_NETWORKS, record_size=request.param, database_type="GeoLite2-ASN")
    return path


@pytest.fixture
def country_file(tmp_path: Path) -> Path:
    path = tmp_path / "Test-Country.mmdb"
    write_mmdb(path, COUNTRY_NETWORKS, database_type="GeoLite2-Country", build_epoch=1_717_200_000)
    return path


def _records(geo: GeoLookup, addresses: list[str]) -> list[GeoRecord | None]:
    records: list[GeoRecord | None] = []
    for row in geo.lookup(pl.Series(addresses)).iter_rows(named=True):
        fields = {key: value for key, value in row.items() if key not in ("address", "reserved")}
        records.append(None if row["prefix"] is None else GeoRecord(**fields))
    return records


def test_asn_database(asn_file: Path) -> None:
    geo = open_geo(asn_file)
    frame = geo.lookup(pl.Series(["8.8.8.8", "2a00:1450:4001::1", "9.9.9.9", "10.0.0.1", "::ffff:8.8.4.4"]))
    assert frame["prefix"].to_list() == ["8.8.8.0/24", "2a00:1450::/32", None, None, None]
    assert frame["asn"].to_list() == [15169, 15169, None, None, None]
    assert frame["as_name"].to_list()[0] == "GOOGLE"
    assert frame["country"].null_count() == frame.height and frame["anycast"].null_count() == frame.height
    assert geo.database.kind == "mmdb" and geo.database.database_type == "GeoLite2-ASN"
    assert geo.database.to_dict()["built_at"] == "2023-11-14T22:13:20Z"


def test_bulk_equals_official_reader(asn_file: Path) -> None:
    geo = open_geo(asn_file)
    rng = random.Random(3)
    sample = [f"45.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(300)]
    sample += [f"185.220.{rng.randrange(99, 105)}.{rng.randrange(256)}" for _ in range(100)]
    sample += [
        str(ipaddress.IPv6Address((0x2A00_1450 << 96) | rng.getrandbits(96 + rng.choice([0, 1])))) for _ in range(50)
    ]
    expected = [geo.lookup_address(address) for address in sample]
    assert _records(geo, sample) == expected
    assert sum(record is not None for record in expected) > 350


def test_country_flags_and_several_files(asn_file: Path, country_file: Path, tmp_path: Path) -> None:
    anonymous = tmp_path / "Test-Anonymous-IP.mmdb"
    write_mmdb(anonymous, ANONYMOUS_NETWORKS, database_type="GeoIP2-Anonymous-IP")
    geo = open_geo([asn_file, country_file, anonymous])
    assert [database.database_type for database in geo.databases] == [
        "GeoLite2-ASN",
        "GeoLite2-Country",
        "GeoIP2-Anonymous-IP",
    ]
    frame = geo.lookup(pl.Series(["8.8.8.8", "185.220.101.5", "2a00:1450::9", "45.1.2.3", "45.2.2.2"]))
    assert frame["prefix"].to_list() == ["8.8.8.0/24", "185.220.100.0/22", "2a00:1450::/32", "45.0.0.0/8", "45.0.0.0/8"]
    assert frame["country"].to_list() == ["US", "DE", "IE", None, None]
    assert frame["anycast"].to_list() == [True, False, False, None, None]
    assert frame["anonymous_proxy"].to_list() == [False, True, False, True, None]
    assert frame["hosting"].to_list() == [None, None, None, True, None]
    assert _records(geo, ["8.8.8.8", "185.220.101.5", "45.1.2.3"]) == [
        geo.lookup_address(address) for address in ["8.8.8.8", "185.220.101.5", "45.1.2.3"]
    ]
