"""Helpers for the edge tests: a tiny loopback origin (http.server in a thread) and the edge itself on a free port.

The origin answers by path:
    /cached...    200 text/html, Cache-Control: max-age=60, a body naming how many times it was asked
    /big          1 MB, Cache-Control: max-age=60
    /chunked      200 in three chunks (Transfer-Encoding: chunked, no length)
    /echo         200 application/json: method, body, and the fields the origin received
    /slow?s=N     sleeps N seconds, then 200
    /cookie       200 with Set-Cookie (never shared from the cache)
Setting `broken` makes it close every connection without answering.
    anything else 200 text/plain "origin saw PATH", Cache-Control: no-store
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import uvloop

from floodwall.config import Settings
from floodwall.edge.accesslog import AccessLog
from floodwall.edge.job import WorkerParts, bind_listener, build_server, serve_worker
from floodwall.edge.live import LiveRecorder
from floodwall.edge.metrics import Metrics
from floodwall.edge.pipeline import Guard
from floodwall.store.cache import DecisionCache


class MemoryTransport:
    """What a connection needs of uvloop's transport, in memory: what it writes is kept in `written`."""

    def __init__(self, peer: str = "192.0.2.1") -> None:
        self.peer = (peer, 40000)
        self.written: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class OriginHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Origin

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        path = self.path.partition("?")[0]
        if self.server.broken:  # a crashed application server: the connection closes, no answer
            self.close_connection = True
            return
        with self.server.lock:
            self.server.hits[path] += 1
            count = self.server.hits[path]
            self.server.seen.append((self.command, self.path, dict(self.headers.items())))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path.startswith("/cached"):
            self._send(
                200,
                f"<p>{path} fetched {count} times</p>".encode(),
                {"Content-Type": "text/html", "Cache-Control": "max-age=60"},
            )
        elif path == "/big":
            self._send(
                200, b"b" * 1_000_000, {"Content-Type": "application/octet-stream", "Cache-Control": "max-age=60"}
            )
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"first,", b"second,", b"third"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/echo":
            data = {
                "method": self.command,
                "body": body.decode("latin-1"),
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
            self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})
        elif path == "/slow":
            time.sleep(float(self.path.partition("s=")[2] or 1))
            self._send(200, b"slow answer", {"Content-Type": "text/plain"})
        elif path == "/cookie":
            self._send(200, b"yours alone", {"Content-Type": "text/html", "Set-Cookie": "session=1"})
        else:
            self._send(
                200, f"origin saw {self.path}".encode(), {"Content-Type": "text/plain", "Cache-Control": "no-store"}
            )

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle


class Origin(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), OriginHandler)
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.connections = 0
        self.broken = False

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.connections += 1
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client (the edge) that gave up on a slow answer is expected here

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class EdgeUnderTest:
    """The edge (one worker) on its own uvloop in a thread, on a free loopback port."""

    def __init__(
        self,
        settings: Settings,
        *,
        decisions: DecisionCache | None = None,
        access_log: Path | None = None,
        challenge_secret: bytes | None = None,
        guard: Guard | None = None,
        metrics: Metrics | None = None,
        recorder: LiveRecorder | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.recorder = recorder
        self.decisions = decisions
        self.challenge_secret = challenge_secret
        self.guard = guard
        self.access_log_path = access_log
        self.sock = bind_listener("127.0.0.1", 0)
        self.port: int = self.sock.getsockname()[1]
        self.worker: WorkerParts | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.loop_errors: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            # Whatever escapes a protocol callback or a task lands here: the tests say none may.
            self._loop.set_exception_handler(lambda _loop, context: self.loop_errors.append(context))
            self._stop = asyncio.Event()
            log = AccessLog(self.access_log_path) if self.access_log_path is not None else None
            self.worker = build_server(
                self.settings,
                decisions=self.decisions,
                access_log=log,
                challenge_secret=self.challenge_secret,
                guard=self.guard,
                metrics=self.metrics,
                recorder=self.recorder,
            )
            await serve_worker(self.worker, self.sock, self._stop, ready=self._ready.set, grace_s=2.0)

        try:
            uvloop.run(main())
        except BaseException as exc:  # shown by the test that started it
            self._error = exc
            self._ready.set()

    def __enter__(self) -> EdgeUnderTest:
        self._thread.start()
        assert self._ready.wait(10), "the edge did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the edge did not stop"
        if self._error is not None:
            raise self._error

    def connection(self, timeout_s: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)

    def get(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, dict[str, str], bytes]:
        conn = self.connection()
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def raw(self, data: bytes, *, timeout_s: float = 10.0, until_closed: bool = True) -> bytes:
        """Send `data` on a new connection and read until the edge closes it (or the timeout)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR) if until_closed else None
            chunks = []
            while True:
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)


def edge_settings(origin_url: str, *, site: dict[str, Any] | None = None, **edge: Any) -> Settings:
    """Settings for a test edge in front of `origin_url`; `edge` holds [edge] keys (sections as dicts), `site`
    more [site] keys."""
    data: dict[str, Any] = {"origin": origin_url, "listen": "127.0.0.1:0", **edge}
    site_data = {"contact": "Write to help@example-news.org if this is a mistake.", **(site or {})}
    return Settings.model_validate({"edge": data, "site": site_data})
