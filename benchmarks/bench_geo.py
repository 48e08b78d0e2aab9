"""Distinct addresses looked up per second: bulk (`GeoLookup.lookup`) against one-by-one Python in the same run.

    .venv/bin/python benchmarks/bench_geo.py [--addresses 1000000] [--baseline 20000] [--mmdb FILE.mmdb]

Without --mmdb, a MaxMind DB of the IPFire database's /24 networks is written to a temporary directory with the
tests' small writer, so both readers are measured on the same machine and the same addresses.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from floodwall.geo import GeoLookup, open_geo


def random_addresses(count: int, seed: int) -> pl.Series:
    """Distinct addresses: 90% IPv4 across the whole space, 10% IPv6 in 2000::/4, as text."""
    rng = np.random.default_rng(seed)
    v4 = np.unique(rng.integers(0, 2**32, int(count * 0.9), dtype=np.uint64))
    octets = [((v4 >> np.uint64(shift)) & np.uint64(255)).astype(str) for shift in (24, 16, 8, 0)]
    v4_text = np.char.add(np.char.add(np.char.add(np.char.add(octets[0], "."), octets[1]), "."), octets[2])
    v4_text = np.char.add(np.char.add(v4_text, "."), octets[3])
    groups = rng.integers(0, 65536, (count - v4.size, 8))
    groups[:, 0] = 0x2000 | (groups[:, 0] & 0x0FFF)
    v6_text = [":".join(f"{group:x}" for group in row) for row in groups.tolist()]
    return pl.Series("client", [*v4_text.tolist(), *v6_text]).unique()


def measure(name: str, geo: GeoLookup, addresses: pl.Series, baseline: int) -> None:
    started = time.perf_counter()
    frame = geo.lookup(addresses)
    bulk_seconds = time.perf_counter() - started
    sample = addresses.head(baseline).to_list()
    started = time.perf_counter()
    for address in sample:
        geo.lookup_address(address)
    one_seconds = time.perf_counter() - started
    bulk_rate, one_rate = addresses.len() / bulk_seconds, len(sample) / one_seconds
    print(
        f"{name:8} bulk {addresses.len():>9,} distinct in {bulk_seconds:6.2f} s = {bulk_rate:>11,.0f}/s"
        f" (found {frame['prefix'].count():,}) | one by one {len(sample):,} in {one_seconds:6.2f} s"
        f" = {one_rate:>9,.0f}/s | speed-up x{bulk_rate / one_rate:,.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=20_000)
    parser.add_argument("--mmdb", type=Path)
    options = parser.parse_args()
    addresses = random_addresses(options.addresses, seed=1)

    started = time.perf_counter()
    libloc = open_geo()
    print(f"open libloc {time.perf_counter() - started:.2f} s: {libloc.database.describe()}")
    measure("libloc", libloc, addresses, options.baseline)
    repeated = pl.concat([addresses] * 5).shuffle(seed=2)
    started = time.perf_counter()
    libloc.lookup(repeated)
    print(f"libloc   {repeated.len():,} rows ({addresses.len():,} distinct) in {time.perf_counter() - started:.2f} s")

    with tempfile.TemporaryDirectory() as scratch:
        mmdb_path = options.mmdb
        if mmdb_path is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "geo"))
            from mmdb_writer import write_mmdb

            facts = libloc.lookup(addresses).filter(pl.col("prefix").str.ends_with("/24") & pl.col("asn").is_not_null())
            networks = {
                prefix: {"autonomous_system_number": asn, "autonomous_system_organization": name or ""}
                for prefix, asn, name in facts.select("prefix", "asn", "as_name").unique("prefix").iter_rows()
            }
            mmdb_path = Path(scratch) / "bench-ASN.mmdb"
            started = time.perf_counter()
            write_mmdb(mmdb_path, networks, database_type="Bench-ASN")
            print(f"wrote {mmdb_path.name}: {len(networks):,} networks in {time.perf_counter() - started:.1f} s")
        with open_geo(mmdb_path) as mmdb:
            measure("mmdb", mmdb, addresses, options.baseline)


if __name__ == "__main__":
    main()
