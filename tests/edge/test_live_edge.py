"""Live detection through the real edge: `floodwall edge` with two spawned workers in front of a loopback origin,
readers from 127.0.0.0/24, then a cache-busting flood from 200 addresses of 127.0.1.0/24 and 127.0.2.0/24.

Every request passes a worker's recorder, one-second batches cross the queue to the supervisor's detector, the
bans go to the SQLite store and come back to both workers through their cache sync. Most flood addresses must be
answered 403 before the flood ends and all of them banned soon after (generous deadlines; the measured delays are
printed), readers never. Loopback only,
bounded: about 45 s of readers at ~20 requests/s, then 15 s of flood at ~200 requests/s beside them. Breach
signatures are off (no compile at start: this test is about floods).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from floodwall.edge.admin import PREFIX
from floodwall.testing import wait_until

QUIET_S, FLOOD_S = 45, 15  # the live threshold needs 30 quiet seconds of history
READERS, READER_RATE = 80, 0.25  # connections, requests per second each
FLOODERS, FLOOD_RATE = 200, 1.0
READER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Running:
    def __init__(self, tmp: Path) -> None:
        (tmp / "www" / "story").mkdir(parents=True)
        for k in range(20):
            (tmp / "www" / "story" / f"{k}.html").write_text("<p>a story</p>" * 50)
        self.origin_port, self.port, self.admin_port = _free_port(), _free_port(), _free_port()
        self.origin = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(self.origin_port), "--bind", "127.0.0.1"],
            cwd=tmp / "www",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.out = tmp / "edge.out"
        command = [sys.executable, "-m", "floodwall", "edge", "--origin", f"http://127.0.0.1:{self.origin_port}"]
        command += ["--listen", f"127.0.0.1:{self.port}", "--admin", f"127.0.0.1:{self.admin_port}"]
        command += ["--workers", "2", "--state-dir", str(tmp / "state"), "--config", str(tmp / "edge.toml")]
        (tmp / "edge.toml").write_text("[site]\nname = 'example-news'\n\n[detect]\nsignatures = false\n")
        with self.out.open("w") as out:
            self.edge = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    def wait_started(self, within_s: float = 180.0) -> None:
        started = time.monotonic()
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline and self.edge.poll() is None:
            if "workers on" in self.out.read_text():
                print(f"\nthe edge started in {time.monotonic() - started:.1f} s")
                return
            time.sleep(0.2)
        raise AssertionError(f"the edge did not start: {self.out.read_text()[-2000:]}")

    def admin(self, route: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{PREFIX}{route}", timeout=10) as answer:
            body: bytes = answer.read()
            return body

    def stop(self) -> None:
        stopping = time.monotonic()
        self.edge.send_signal(signal.SIGTERM)
        try:
            self.edge.wait(60)
        except subprocess.TimeoutExpired:
            self.edge.kill()
            self.edge.wait()
        print(f"the edge stopped in {time.monotonic() - stopping:.1f} s")
        self.origin.terminate()
        self.origin.wait()


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Running]:
    running = Running(tmp_path)
    try:
        running.wait_started()
        yield running
    finally:
        running.stop()


Answers = dict[str, list[tuple[float, int]]]


async def _client(source: str, port: int, path: object, agent: str, rate: float, until: float, seen: Answers) -> None:
    """One keep-alive connection from `source`, requests at `rate` per second (Poisson) until `until`."""
    rng = random.Random(source)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    answers = seen.setdefault(source, [])
    while time.monotonic() < until:
        await asyncio.sleep(min(rng.expovariate(rate), max(until - time.monotonic(), 0.0)))
        if time.monotonic() >= until:
            break
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            target = path(rng) if callable(path) else path
            writer.write(f"GET {target} HTTP/1.1\r\nHost: news.test\r\nUser-Agent: {agent}\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.split(b"\r\n")[1:]
            fields = {
                name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines)
            }
            await reader.readexactly(int(fields.get(b"content-length", b"0")))
            answers.append((time.monotonic(), int(head.split(b" ", 2)[1])))
            if fields.get(b"connection", b"").lower() == b"close":
                writer.close()
                writer = None
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            answers.append((time.monotonic(), 0))  # refused, reset or cut short: counted as not answered
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def _traffic(port: int) -> tuple[float, Answers, Answers]:
    start = time.monotonic()
    onset, end = start + QUIET_S, start + QUIET_S + FLOOD_S
    readers: Answers = {}
    flood: Answers = {}

    def story(rng: random.Random) -> str:
        return f"/story/{min(int(rng.paretovariate(1.2)) - 1, 19)}.html"

    def busting(rng: random.Random) -> str:
        return f"/story/1.html?k{rng.randrange(10**5)}={rng.randrange(10**9)}"

    async def flood_later() -> None:
        await asyncio.sleep(QUIET_S)
        await asyncio.gather(
            *[
                _client(
                    f"127.0.{1 + k // 100}.{k % 100 + 2}",
                    port,
                    busting,
                    f"Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 Chrome/{100 + k % 8}.0 Safari/537.36",
                    FLOOD_RATE,
                    end,
                    flood,
                )
                for k in range(FLOODERS)
            ]
        )

    readers_done = [
        _client(f"127.0.0.{k + 2}", port, story, READER_AGENT, READER_RATE, end, readers) for k in range(READERS)
    ]
    await asyncio.gather(*readers_done, flood_later())
    return onset, readers, flood


def test_a_flood_through_the_edge_is_banned_and_readers_are_served(edge: Running) -> None:
    onset, readers, flood = asyncio.run(_traffic(edge.port))

    reader_statuses = [status for answers in readers.values() for _, status in answers]
    assert reader_statuses and 403 not in reader_statuses
    assert sum(status == 200 for status in reader_statuses) >= 0.99 * len(reader_statuses)

    banned_at = {
        source: min((t for t, status in answers if status == 403), default=None) for source, answers in flood.items()
    }
    reached = [t for t in banned_at.values() if t is not None]
    print(
        f"\n{len(reached)}/{len(flood)} flood addresses answered 403; first {min(reached) - onset:.1f} s, "
        f"median {sorted(reached)[len(reached) // 2] - onset:.1f} s, last {max(reached) - onset:.1f} s after onset"
        if reached
        else "\nno flood address was banned"
    )
    assert len(flood) == FLOODERS and len(reached) >= 0.9 * FLOODERS  # most already turned away during the flood

    def decided() -> set[str]:
        return {d["target"] for d in json.loads(edge.admin("decisions"))}

    assert wait_until(lambda: decided() == set(flood), within_s=30.0, every_s=0.5)  # all of them, and only them
    health = json.loads(edge.admin("health"))
    assert health["workers"] == 2 and health["store_reachable"] and health["bans_active"] == FLOODERS
    decisions = json.loads(edge.admin("decisions"))
    assert all(d["reasons"] and d["origin"] == "floodwall-policy" for d in decisions)
    metrics = edge.admin("metrics").decode()
    banned = next(
        line for line in metrics.splitlines() if line.startswith('floodwall_requests_total{outcome="banned"}')
    )
    assert int(banned.split()[-1]) > 0
