"""Load generators on raw sockets, each source address a distinct 127.x.y.z (Linux routes 127.0.0.0/8 to `lo`).

- Readers (`127.1.x.y`): browse pages chosen by popularity (Zipf), one keep-alive connection each, with think
  time so that together they make about `rate` requests a second; they keep cookies as a browser does. Every answer
  is classed: `ok` (200 and the page asked for), `challenge`, `blocked` (403), `limited` (429), `error` (5xx),
  `wrong` (anything else), `timeout`, `refused` (could not connect or the connection broke).
- The flood (`127.2.x.y`): several processes, each with many connections sending back to back (closed loop: the
  highest rate the generator can drive), half GETs of hot pages and half cache-busting (a random query string);
  each connection sends a few requests, then the next one comes from another address.
- Sequential samples (the added latency on a quiet site): one request at a time, alternating targets.

Times sent back are seconds relative to the flood's start (`flood_at`, a shared wall-clock time).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import html
import itertools
import multiprocessing as mp
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from edgebench.httpclient import Connection, Response
from edgebench.origin import page_marker

PAGES = [f"/news/story-{k}.html" for k in range(1, 201)]
HOT_PAGES = PAGES[:10]
READER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36"
)
FLOOD_AGENTS = [
    "Mozilla/5.0 (Windows NT 6.1; rv:52.0) Gecko/20100101 Firefox/52.0",
    "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; Trident/6.0)",
    "python-requests/2.25.1",
    "Go-http-client/1.1",
]
HOST = b"bench.test"


def reader_address(k: int) -> str:
    """Reader k's address: 50 /24 networks, a few readers in each (readers come from everywhere)."""
    return f"127.1.{k % 50}.{k // 50 + 1}"


def flood_address(k: int) -> str:
    """Flood source k's address: 250 /24 networks, 8 each for 2,000 (a botnet spread over many networks)."""
    return f"127.2.{k % 250}.{k // 250 + 1}"


def use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


def classify(response: Response, path: str, is_challenge: Callable[[Response], bool]) -> str:
    if response.status == 200 and page_marker(path) in response.body:
        return "ok"
    if is_challenge(response):
        return "challenge"
    if response.status == 403:
        return "blocked"
    if response.status == 429:
        return "limited"
    if response.status >= 500:
        return "error"
    return "wrong"


def never_challenge(response: Response) -> bool:
    return False


@dataclass
class ReaderResults:
    samples: list[tuple[float, float, str]] = field(default_factory=list)  # (sent at, latency s, outcome)
    challenges_solved: int = 0


def _cookie_header(jar: dict[str, str]) -> bytes:
    if not jar:
        return b""
    return b"Cookie: " + "; ".join(f"{k}={v}" for k, v in jar.items()).encode() + b"\r\n"


def _store_cookies(jar: dict[str, str], response: Response) -> None:
    for raw in response.set_cookies:
        name, _, value = raw.decode("latin-1").split(";", 1)[0].partition("=")
        if name.strip():
            jar[name.strip()] = value.strip()


def pow_verify_target(body: bytes) -> str | None:
    """What a browser's script does with the edge's challenge page: read the challenge, its difficulty and the verify
    path from the page's data attributes, find a nonce whose SHA-256(`challenge:nonce`) starts with that many zero
    bits, and return the verify URL (path and query) to load; None for a page without a puzzle."""
    found = {key: re.search(rb'data-%s="([^"]*)"' % key.encode(), body) for key in ("challenge", "bits", "verify")}
    if any(m is None for m in found.values()):
        return None
    challenge = html.unescape(found["challenge"].group(1).decode())  # type: ignore[union-attr]
    bits = int(found["bits"].group(1))  # type: ignore[union-attr]
    verify = html.unescape(found["verify"].group(1).decode())  # type: ignore[union-attr]
    for nonce in itertools.count():
        digest = hashlib.sha256(f"{challenge}:{nonce}".encode()).digest()
        if 256 - int.from_bytes(digest, "big").bit_length() >= bits:
            return f"{verify}?c={quote(challenge, safe='')}&n={nonce}"
    return None  # unreachable: count() never ends


class _Browser:
    """One reader's connection and cookie jar; reconnects when the server closed the connection."""

    def __init__(self, host: str, port: int, source: str, timeout_s: float) -> None:
        self.host, self.port, self.source, self.timeout_s = host, port, source, timeout_s
        self.conn: Connection | None = None
        self.jar: dict[str, str] = {}

    async def get(self, target: str, deadline: float) -> Response:
        if self.conn is None or not self.conn.usable:
            self.conn = await Connection.open(self.host, self.port, self.source, max(0.05, deadline - time.time()))
        headers = b"Host: %s\r\nUser-Agent: %s\r\nAccept: text/html\r\n%s" % (
            HOST,
            READER_AGENT.encode(),
            _cookie_header(self.jar),
        )
        response = await self.conn.get(target, headers, max(0.05, deadline - time.time()))
        _store_cookies(self.jar, response)
        return response

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


async def _reader(
    k: int,
    host: str,
    port: int,
    start_at: float,
    end_at: float,
    flood_at: float,
    mean_think_s: float,
    timeout_s: float,
    is_challenge: Callable[[Response], bool],
    solve: bool,
    out: ReaderResults,
) -> None:
    rng = random.Random(k)
    cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(PAGES))))
    browser = _Browser(host, port, reader_address(k), timeout_s)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - time.time()) + rng.uniform(0, mean_think_s))
    while time.time() < end_at:
        path = PAGES[bisect.bisect(cumulative, rng.uniform(0, cumulative[-1]))]
        sent = time.time()
        deadline = sent + timeout_s
        try:
            response = await browser.get(path, deadline)
            outcome = classify(response, path, is_challenge)
            if outcome == "challenge" and solve:
                # As a browser does: solve the puzzle, load the verify URL (which sets the pass cookie and
                # redirects back), load the page again. The reader's wait includes all of it.
                verify = await loop.run_in_executor(None, pow_verify_target, response.body)
                if verify is not None:
                    answer = await browser.get(verify, deadline)
                    if answer.status in (301, 302, 303, 307):
                        out.challenges_solved += 1
                        response = await browser.get(path, deadline)
                        outcome = classify(response, path, is_challenge)
        except TimeoutError:
            outcome = "timeout"
        except OSError:
            outcome = "refused"
        latency = min(time.time() - sent, timeout_s)
        out.samples.append((sent - flood_at, latency, outcome))
        await asyncio.sleep(min(rng.expovariate(1 / mean_think_s), max(0.0, end_at - time.time())))
    browser.close()


def _readers_main(
    host: str,
    port: int,
    readers: int,
    rate: float,
    start_at: float,
    end_at: float,
    flood_at: float,
    timeout_s: float,
    is_challenge: Callable[[Response], bool],
    solve: bool,
    results: Any,
) -> None:
    use_uvloop()
    out = ReaderResults()
    mean_think_s = readers / rate

    async def run() -> None:
        await asyncio.gather(
            *(
                _reader(k, host, port, start_at, end_at, flood_at, mean_think_s, timeout_s, is_challenge, solve, out)
                for k in range(readers)
            )
        )

    asyncio.run(run())
    results.put(out)


@dataclass
class FloodResults:
    outcomes: Counter[str] = field(default_factory=Counter)
    sent_per_s: Counter[int] = field(default_factory=Counter)  # by whole second since the flood's start
    first_refused: dict[int, float] = field(default_factory=dict)  # address index -> first 403/429/challenge
    first_blocked: dict[int, float] = field(default_factory=dict)  # address index -> first 403 or challenge

    def merge(self, other: FloodResults) -> None:
        self.outcomes.update(other.outcomes)
        self.sent_per_s.update(other.sent_per_s)
        for mine, theirs in ((self.first_refused, other.first_refused), (self.first_blocked, other.first_blocked)):
            for k, at in theirs.items():
                mine[k] = min(at, mine.get(k, at))


async def _flooder(
    addresses: Sequence[int],
    host: str,
    port: int,
    flood_at: float,
    end_at: float,
    per_connection: int,
    is_challenge: Callable[[Response], bool],
    rng: random.Random,
    out: FloodResults,
) -> None:
    agent = rng.choice(FLOOD_AGENTS).encode()
    headers = b"Host: %s\r\nUser-Agent: %s\r\nAccept: */*\r\n" % (HOST, agent)
    await asyncio.sleep(max(0.0, flood_at - time.time()))
    for k in itertools.cycle(addresses):
        if time.time() >= end_at:
            return
        try:
            conn = await Connection.open(host, port, flood_address(k), 2.0)
        except (OSError, TimeoutError):
            out.outcomes["refused"] += 1
            await asyncio.sleep(0.01)
            continue
        for _ in range(per_connection):
            now = time.time()
            if now >= end_at:
                break
            path = rng.choice(HOT_PAGES)
            target = f"{path}?r={rng.randrange(10**12)}" if rng.random() < 0.5 else path
            out.sent_per_s[int(now - flood_at)] += 1
            try:
                response = await conn.get(target, headers, 5.0)
            except TimeoutError:
                out.outcomes["timeout"] += 1
                break
            except OSError:
                out.outcomes["refused"] += 1
                break
            outcome = classify(response, path, is_challenge)
            out.outcomes[outcome] += 1
            if outcome in ("challenge", "blocked", "limited"):
                out.first_refused.setdefault(k, time.time() - flood_at)
            if outcome in ("challenge", "blocked"):
                out.first_blocked.setdefault(k, time.time() - flood_at)
            if not conn.usable:
                break
        conn.close()


def _flood_main(
    index: int,
    processes: int,
    connections: int,
    addresses: int,
    host: str,
    port: int,
    flood_at: float,
    end_at: float,
    per_connection: int,
    is_challenge: Callable[[Response], bool],
    results: Any,
) -> None:
    use_uvloop()
    out = FloodResults()
    mine = [k for k in range(addresses) if k % processes == index]
    rng = random.Random(1000 + index)

    async def run() -> None:
        # Connection j of this process cycles through every `connections`-th of the process's addresses.
        await asyncio.gather(
            *(
                _flooder(
                    mine[j::connections] or mine,
                    host,
                    port,
                    flood_at,
                    end_at,
                    per_connection,
                    is_challenge,
                    random.Random(rng.random()),
                    out,
                )
                for j in range(connections)
            )
        )

    asyncio.run(run())
    results.put(out)


@dataclass(frozen=True)
class Load:
    """What to send: readers and the flood, and when."""

    readers: int = 200
    reader_rps: float = 50.0
    flood_addresses: int = 2000
    flood_processes: int = 2
    flood_connections: int = 1000  # per process: with 2 processes, about one connection per flood address
    per_connection: int = 20
    warmup_s: float = 45.0
    flood_s: float = 30.0
    reader_timeout_s: float = 5.0


class LoadRun:
    """Readers from `warmup_s` before the flood to its end, the flood for `flood_s`, against host:port."""

    def __init__(self, load: Load, host: str, port: int, is_challenge: Callable[[Response], bool], solve: bool) -> None:
        self.load = load
        context = mp.get_context("fork")
        self._readers_q: Any = context.Queue()
        self._flood_q: Any = context.Queue()
        now = time.time()
        self.start_at = now + 1.0
        self.flood_at = self.start_at + load.warmup_s
        self.end_at = self.flood_at + load.flood_s
        self._processes = [
            context.Process(
                target=_readers_main,
                args=(
                    host,
                    port,
                    load.readers,
                    load.reader_rps,
                    self.start_at,
                    self.end_at,
                    self.flood_at,
                    load.reader_timeout_s,
                    is_challenge,
                    solve,
                    self._readers_q,
                ),
                daemon=True,
            )
        ]
        for index in range(load.flood_processes):
            self._processes.append(
                context.Process(
                    target=_flood_main,
                    args=(
                        index,
                        load.flood_processes,
                        load.flood_connections,
                        load.flood_addresses,
                        host,
                        port,
                        self.flood_at,
                        self.end_at,
                        load.per_connection,
                        is_challenge,
                        self._flood_q,
                    ),
                    daemon=True,
                )
            )

    def start(self) -> None:
        for process in self._processes:
            process.start()

    def collect(self) -> tuple[ReaderResults, FloodResults]:
        """Waits for the run's end (bounded: the run's length plus the readers' timeout and a margin)."""
        grace = max(0.0, self.end_at - time.time()) + self.load.reader_timeout_s + 30
        readers: ReaderResults = self._readers_q.get(timeout=grace)
        flood = FloodResults()
        for _ in range(self.load.flood_processes):
            flood.merge(self._flood_q.get(timeout=30))
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        return readers, flood


async def sequential_samples(
    targets: Sequence[tuple[str, int, str]], samples: int, sources: int, timeout_s: float = 5.0
) -> dict[str, list[float]]:
    """`samples` requests per target, one at a time, alternating targets; each target is (host, port, path).

    Requests come from `sources` addresses (`127.3.x.y`, ten per /24), each with its own keep-alive connection to
    every target, opened before timing starts: a quiet site's readers, each well under any per-address limit.
    Returns the latencies in seconds per target (keyed host:port path); a failed request is a ValueError.
    """
    addresses = [f"127.3.{k % 20}.{k // 20 + 1}" for k in range(sources)]
    conns = {(a, t): await Connection.open(t[0], t[1], a, timeout_s) for a in addresses for t in targets}
    headers = b"Host: %s\r\nUser-Agent: %s\r\nAccept: text/html\r\n" % (HOST, READER_AGENT.encode())
    out: dict[str, list[float]] = {f"{h}:{p} {path}": [] for h, p, path in targets}
    for i in range(samples):
        address = addresses[i % sources]
        order = targets if i % 2 == 0 else list(reversed(targets))
        for target in order:
            conn = conns[address, target]
            if not conn.usable:
                conn = conns[address, target] = await Connection.open(target[0], target[1], address, timeout_s)
            started = time.perf_counter()
            response = await conn.get(target[2], headers, timeout_s)
            elapsed = time.perf_counter() - started
            if response.status != 200 or page_marker(target[2]) not in response.body:
                raise ValueError(f"{target}: answered {response.status} {response.body[:120]!r}")
            out[f"{target[0]}:{target[1]} {target[2]}"].append(elapsed)
    for conn in conns.values():
        conn.close()
    return out
