"""Access-log lines for the watcher's tests and benchmark: readers, and a cache-busting GET flood.

Plain nginx `combined` lines, seeded, with the time stamps asked for, so a test can write a simulated history and a
flood into a log that a real nginx also writes. `reader_lines`: readers fetch a page and its three assets from a
small pool of addresses in 10.0.0.0/8 (quick, for tests). `simulated_readers`: the simulator's readers
(`floodwall.simulate.traffic`: its pool of home and diaspora addresses, IPv6 included, browsers' agents, visits of
one to a few pages with referers, assets, redirects and 404s), each address making about one visit over the span,
for the benchmark's rate, written to a file. A flood sends bare GETs of the front page with random query values
and rotating forged agents.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from floodwall.simulate.scenario import SiteSpec
from floodwall.simulate.sites import build_content
from floodwall.simulate.traffic import build_pool, sample_pages, visits
from floodwall.simulate.writer import format_lines

READER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"
FLOOD_AGENTS = tuple(
    f"Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{100 + k}.0 Safari/537.36"
    for k in range(12)
)
ASSETS = ("/static/style.css", "/static/app.js", "/static/logo.png")
PAGES = tuple(f"/2024/11/0{d}/story-number-{k}/" for d in range(1, 4) for k in range(30))


def stamp(at: float) -> str:
    return datetime.fromtimestamp(int(at), UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def line(client: str, at: float, path: str, agent: str, referer: str = "-", status: int = 200) -> str:
    return f'{client} - - [{stamp(at)}] "GET {path} HTTP/1.1" {status} 5120 "{referer}" "{agent}"\n'


def reader_lines(rng: random.Random, start: float, seconds: int, views_per_s: float, pool: int = 400) -> list[str]:
    """Page views with their assets, time-ordered, from `pool` reader addresses."""
    rows: list[tuple[float, str]] = []
    for second in range(seconds):
        for _ in range(max(1, round(rng.gauss(views_per_s, views_per_s**0.5)))):
            at = start + second + rng.random()
            who = rng.randrange(pool)
            client = f"10.{who // 65536 % 256}.{who // 256 % 256}.{who % 256}"
            page = PAGES[min(int(rng.paretovariate(1.2)) - 1, len(PAGES) - 1)]
            rows.append((at, line(client, at, page, READER_AGENT, "https://www.example-news.test/")))
            for asset in ASSETS:
                rows.append((at + 0.2, line(client, at + 0.2, asset, READER_AGENT, f"https://example-news.test{page}")))
    rows.sort(key=lambda row: row[0])
    return [text for _, text in rows]


def flood_addresses(count: int, first: int = 1, v6: bool = False) -> list[str]:
    if v6:
        return [f"2001:db8:f00d::{k:x}" for k in range(first, first + count)]
    return [f"203.0.{113 + k // 250}.{k % 250 + 1}" for k in range(first - 1, first - 1 + count)]


def flood_lines(rng: random.Random, start: float, seconds: int, rps: float, addresses: list[str]) -> list[str]:
    """A cache-busting GET flood at `rps`, time-ordered."""
    count = int(rps * seconds)
    times = sorted(start + rng.random() * seconds for _ in range(count))
    return [
        line(rng.choice(addresses), at, f"/?k{rng.randrange(10**5)}={rng.randrange(10**9)}", rng.choice(FLOOD_AGENTS))
        for at in times
    ]


_LINES_PER_VISIT = 5.5  # measured on this generator: pages (1.7 a visit), assets, images, redirects


def write_simulated_readers(
    path: Path, start_s: float, seconds: int, lines_per_s: int, seed: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Write `seconds` of readers from `start_s` at about `lines_per_s`, time-ordered, to `path`, from a pool large
    enough that a reader makes about one visit in that span; returns (each line's epoch seconds, the byte offset
    after each line), so a writer can copy them out as their time comes without holding them in memory."""
    rng = np.random.default_rng(seed)
    begin = datetime.fromtimestamp(start_s, UTC)
    site = SiteSpec(
        name="example-news",
        host="example-news.test",
        start=begin - timedelta(days=1),
        end=begin + timedelta(seconds=seconds, days=1),
    )
    content = build_content(site, [], rng, start_s, start_s + seconds)
    # Visits that began before the span still bring later pages into it: start them up to two minutes early.
    lead_s = 120
    count = int(lines_per_s * (seconds + lead_s) / _LINES_PER_VISIT)
    pool = build_pool(site, count, rng, set())
    ts = start_s - lead_s + rng.random(count) * (seconds + lead_s)
    who = rng.permutation(len(pool.addresses))[: min(count, len(pool.addresses))]
    if len(who) < count:
        who = np.concatenate([who, rng.integers(0, len(pool.addresses), count - len(who))])
    pages = sample_pages(content, count, start_s, rng)
    frame = visits(content, ts, pool.addresses.gather(who), pool.agents.gather(who), pages, False, start_s, rng)
    frame = (
        frame.filter(pl.col("ts").is_between(int(start_s * 1e6), int((start_s + seconds) * 1e6), closed="left"))
        .with_columns(protocol=pl.lit("HTTP/2.0"))
        .sort("ts")
    )
    stamps = frame.get_column("ts").to_numpy() / 1e6
    lines = format_lines(frame, "UTC")
    del frame
    ends = np.cumsum(lines.get_column("line").str.len_bytes().to_numpy().astype(np.int64) + 1)
    with path.open("wb") as handle:
        lines.write_csv(handle, include_header=False, quote_style="never")
    return stamps, ends
