"""Synthetic traffic for detection tests: readers, a flood, a low-rate proxy fleet, a breaking-news crowd.

Built columnar with NumPy (seeded), so a test's traffic is the same on every run and takes milliseconds to make.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from floodwall.model import REQUEST_SCHEMA

START = datetime(2024, 11, 4, 6, 0, tzinfo=UTC)
READER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
)
FLOOD_AGENTS = tuple(
    "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    f"Chrome/{100 + k}.0.{5000 + k}.{k} Safari/537.36"
    for k in range(12)
)
ASSETS = ("/wp-content/themes/news/style.css", "/wp-includes/js/jquery/jquery.min.js", "/wp-content/uploads/logo.png")


def _frame(columns: dict[str, object], n: int) -> pl.DataFrame:
    data = {
        name: columns.get(name, pl.repeat(None, n, dtype=REQUEST_SCHEMA[name], eager=True)) for name in REQUEST_SCHEMA
    }
    return pl.DataFrame(data).cast(dict(REQUEST_SCHEMA))  # type: ignore[arg-type]


def _times(start: datetime, offsets: np.ndarray) -> pl.Series:
    micros = int(start.timestamp() * 1_000_000) + (offsets * 1_000_000).astype(np.int64)
    return pl.Series("ts", micros).cast(pl.Datetime("us", "UTC"))


def _addresses(prefix: str, numbers: np.ndarray) -> pl.Series:
    ints = pl.Series(numbers.astype(np.int64))
    return pl.select(
        pl.format(prefix + ".{}.{}.{}", (ints // 65536) % 256, (ints // 256) % 256, ints % 256)
    ).to_series()


def _assemble(parts: list[pl.DataFrame]) -> pl.DataFrame:
    frame = pl.concat([p for p in parts if p.height]).sort("ts", maintain_order=True)
    return frame.with_columns(
        pl.col("client").str.replace(r"\.\d+$", ".0/24").alias("client_net"),
        pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias("line"),
    )


def readers(
    rng: np.random.Generator,
    start: datetime,
    seconds: int,
    views_per_s: float,
    *,
    first_ip: int = 0,
    articles: tuple[str, ...] = (),
    social: float = 0.1,
    pool: int = 4000,
) -> pl.DataFrame:
    """Page views of readers, each a page and its three assets within two seconds, from a pool of addresses."""
    views = rng.poisson(views_per_s * seconds)
    at = np.sort(rng.uniform(0, seconds, views))
    who = rng.integers(first_ip, first_ip + pool, views)
    paths = np.array(
        articles or tuple(f"/2024/11/0{d}/story-number-{k}-about-things/" for d in range(1, 4) for k in range(40))
    )
    page = paths[rng.zipf(1.5, views) % paths.size]
    agent = np.array(READER_AGENTS)[who % len(READER_AGENTS)]
    referer = np.where(rng.random(views) < social, "https://www.facebook.com/", "https://example-news.test/")
    rows_at = np.concatenate([at, *[at + rng.uniform(0.05, 2.0, views) for _ in ASSETS]])
    n = rows_at.size
    client = np.tile(_addresses("10", who).to_numpy(), 1 + len(ASSETS))
    path = np.concatenate([page, *[np.full(views, a) for a in ASSETS]])
    ref = np.concatenate([referer, *[np.full(views, "https://example-news.test/") for _ in ASSETS]])
    return _frame(
        {
            "ts": _times(start, rows_at),
            "client": client,
            "method": ["GET"] * n,
            "path": path,
            "status": [200] * n,
            "bytes": [5000] * n,
            "referer": ref,
            "user_agent": np.tile(agent, 1 + len(ASSETS)),
            "site": ["example-news"] * n,
            "source": ["test.log"] * n,
        },
        n,
    )


def flood(
    rng: np.random.Generator,
    start: datetime,
    seconds: int,
    rps: float,
    addresses: int,
    *,
    cache_bust: bool = True,
    net: int = 203,
) -> pl.DataFrame:
    """A GET flood: no assets, forged rotating user agents, random query values, from `addresses` clients."""
    n = rng.poisson(rps * seconds)
    at = np.sort(rng.uniform(0, seconds, n))
    who = rng.integers(0, addresses, n)
    keys = rng.integers(26**4, 26**5, n)
    query = (
        pl.select(pl.format("k{}={}", pl.Series(keys), pl.Series(rng.integers(10**8, 10**9, n)))).to_series()
        if cache_bust
        else pl.repeat(None, n, dtype=pl.String, eager=True)
    )
    return _frame(
        {
            "ts": _times(start, at),
            "client": _addresses(str(net), who * 7 + 1),
            "method": ["GET"] * n,
            "path": ["/"] * n,
            "query": query,
            "status": [200] * n,
            "bytes": [30000] * n,
            "user_agent": np.array(FLOOD_AGENTS)[rng.integers(0, len(FLOOD_AGENTS), n)],
            "site": ["example-news"] * n,
            "source": ["test.log"] * n,
        },
        n,
    )


@dataclass(frozen=True)
class Site:
    """A synthetic log and its truth."""

    frame: pl.DataFrame
    onset: datetime | None
    end: datetime | None
    attackers: frozenset[str]
    protected: frozenset[str]


def make_site(kind: str, seed: int = 1, minutes: int = 150) -> Site:
    """kind: "quiet", "flood", "fleet" (low-rate residential-like pool), "flash-crowd"."""
    rng = np.random.default_rng(seed)
    base = readers(rng, START, minutes * 60, 2.0)
    onset = START + timedelta(minutes=90)
    end = onset + timedelta(minutes=30)
    parts = [base]
    attackers: frozenset[str] = frozenset()
    protected: frozenset[str] = frozenset()
    if kind == "flood":
        attack = flood(rng, onset, 1800, 60.0, 40)
        parts.append(attack)
        attackers = frozenset(attack.get_column("client").to_list())
    elif kind == "fleet":
        attack = flood(rng, onset, 1800, 40.0, 3000, net=100)
        parts.append(attack)
        attackers = frozenset(attack.get_column("client").to_list())
    elif kind == "flash-crowd":
        crowd = readers(
            rng,
            onset,
            1800,
            25.0,
            first_ip=100_000,
            pool=20_000,
            social=0.6,
            articles=("/2024/11/04/breaking-the-big-story-today/", "/2024/11/04/live-the-big-story/"),
        )
        parts.append(crowd)
        protected = frozenset(crowd.get_column("client").to_list())
    frame = _assemble(parts)
    if kind == "quiet":
        return Site(frame, None, None, attackers, protected)
    return Site(frame, onset, end, attackers, protected)


@pytest.fixture(scope="session")
def site_factory() -> object:
    return make_site


@pytest.fixture(scope="session")
def flood_site() -> Site:
    return make_site("flood")


@pytest.fixture(scope="session")
def fleet_site() -> Site:
    return make_site("fleet")


@pytest.fixture(scope="session")
def crowd_site() -> Site:
    return make_site("flash-crowd")


@pytest.fixture(scope="session")
def quiet_site() -> Site:
    return make_site("quiet")
