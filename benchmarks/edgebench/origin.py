"""A news site's origin with a fixed capacity: the thing a flood drowns and a front must protect.

`slots` requests are served at once, each taking `service_s` (an application server's worker pool: PHP-FPM children,
gunicorn workers); others wait in line, as they would in a listen backlog. Capacity is `slots / service_s`
requests a second (10 / 0.02 s = 500/s by default). The origin counts what a front lets through: requests open at
once (waiting plus in service: a real origin's memory and its readers' wait grow with it), the most in service
(never above `slots`, by construction), and answers per second.

Pages: `/news/story-<k>.html` (HTML, no Cache-Control: a front's micro-cache decides), `/static/<name>` (assets,
`Cache-Control: max-age=3600`), `/nocache/<anything>` (`Cache-Control: no-store`). Every body names its path
(`<!-- page /news/story-3.html -->`), so a reader can tell the right page from an error, a challenge or another
page; the query string does not change the body (cache-busting values are noise to the site).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import socket
import time
from dataclasses import dataclass, field
from typing import Any

PAGE_FILLER = ("<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 8 + "</p>\n") * 16  # ~8 KB


def page_marker(path: str) -> bytes:
    """What a correct answer for `path` (query string left out) contains."""
    return f"<!-- page {path} -->".encode()


def page_body(path: str) -> bytes:
    return b"<!doctype html><html><head><title>story</title></head><body>" + page_marker(path) + PAGE_FILLER.encode()


@dataclass
class OriginStats:
    """What the origin saw during one run (sent back to the benchmark when the origin stops)."""

    slots: int
    service_s: float
    answered: int = 0
    max_open: int = 0  # requests read and not yet answered (waiting + in service), the most at once
    max_in_service: int = 0
    answered_by_s: dict[int, int] = field(default_factory=dict)  # wall-clock second -> answers in it
    max_open_by_s: dict[int, int] = field(default_factory=dict)  # wall-clock second -> most open requests in it

    @property
    def capacity_rps(self) -> float:
        return self.slots / self.service_s

    @property
    def peak_rps(self) -> int:
        return max(self.answered_by_s.values(), default=0)

    def between(self, start: float, end: float) -> tuple[int, int]:
        """(most open requests, most answers in one second) over the whole seconds from `start` to `end`."""
        seconds = range(int(start), int(end) + 1)
        return (
            max((self.max_open_by_s.get(s, 0) for s in seconds), default=0),
            max((self.answered_by_s.get(s, 0) for s in seconds), default=0),
        )


class _Origin:
    def __init__(self, slots: int, service_s: float) -> None:
        self.stats = OriginStats(slots, service_s)
        self.slots = asyncio.Semaphore(slots)
        self.service_s = service_s
        self.open = 0
        self.in_service = 0

    def _count_answer(self) -> None:
        self.stats.answered += 1
        second = int(time.time())
        self.stats.answered_by_s[second] = self.stats.answered_by_s.get(second, 0) + 1

    async def _answer(self, target: bytes) -> bytes:
        path = target.split(b"?", 1)[0].decode("latin-1")
        self.open += 1
        self.stats.max_open = max(self.stats.max_open, self.open)
        second = int(time.time())
        self.stats.max_open_by_s[second] = max(self.stats.max_open_by_s.get(second, 0), self.open)
        try:
            async with self.slots:
                self.in_service += 1
                self.stats.max_in_service = max(self.stats.max_in_service, self.in_service)
                try:
                    await asyncio.sleep(self.service_s)
                finally:
                    self.in_service -= 1
        finally:
            self.open -= 1
        self._count_answer()
        if path.startswith("/static/"):
            body, headers = b"/* asset */\n" * 200, b"Content-Type: text/css\r\nCache-Control: max-age=3600\r\n"
        elif path.startswith("/nocache/"):
            body, headers = page_body(path), b"Content-Type: text/html\r\nCache-Control: no-store\r\n"
        else:
            body, headers = page_body(path), b"Content-Type: text/html; charset=utf-8\r\n"
        return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (headers, len(body), body)

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Keep-alive, one request at a time (GET and HEAD only; bodies are not read: no one sends them here)."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].split(b" ")
                if len(line) != 3:
                    return
                answer = await self._answer(line[1])
                if line[0] == b"HEAD":
                    answer = answer.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return
        except asyncio.CancelledError:  # the origin stops with requests still waiting in line: drop them quietly
            return
        finally:
            writer.close()


async def _serve(sock: socket.socket, slots: int, service_s: float, stop: Any, results: Any) -> None:
    origin = _Origin(slots, service_s)
    server = await asyncio.start_server(origin.connection, sock=sock, backlog=4096)
    async with server:
        while not stop.is_set():
            await asyncio.sleep(0.05)
    results.put(origin.stats)


def _run(sock: socket.socket, slots: int, service_s: float, stop: Any, results: Any) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_serve(sock, slots, service_s, stop, results))


class LimitedOrigin:
    """The origin in a child process, listening on `127.0.0.1:port` (a free port) from creation on.

    with LimitedOrigin(slots=10, service_s=0.02) as origin:
        ... origin.url ...
    origin.stats  # OriginStats, after the block
    """

    def __init__(self, slots: int = 10, service_s: float = 0.02) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        context = mp.get_context("fork")
        self._stop = context.Event()
        self._results: Any = context.Queue()
        self._process = context.Process(
            target=_run, args=(self.sock, slots, service_s, self._stop, self._results), daemon=True
        )
        self.stats: OriginStats | None = None

    def __enter__(self) -> LimitedOrigin:
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self.stats = self._results.get(timeout=10)
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self.sock.close()
