"""The decision endpoint for nginx `auth_request`: sidecar mode's challenges, answered from memory.

nginx asks it once per request (a subrequest carrying the client's address in `X-Real-IP`, or else the rightmost
`X-Forwarded-For` hop, and the original URI in `X-Original-URI`, both set by the nginx configuration
`floodwall nginx-config --auth-request` prints) and it answers from the watcher's `DecisionCache`, never from the
store:

    204  allow: no decision, or a challenged client whose cookie (`floodwall.edge.challenge`) is valid
    403  ban
    401  challenge, with `X-Floodwall-Action: challenge`; nginx turns it into the challenge page with
         `error_page 401 = @floodwall_challenge` (auth_request accepts only 2xx, 401 and 403 from a subrequest:
         anything else, 429 included, would be a 500 for the reader)

The same listener serves the challenge itself: the page (status 429) for any other request nginx hands over from
its `@floodwall_challenge` location, and the verify route under `/.well-known/floodwall/challenge/` that checks the
proof of work and sets the cookie. A newsroom gets the edge's challenge without moving to `floodwall edge`.

The listener must be on loopback (nginx on the same machine): it believes the address nginx sends, and so would
believe anyone else who can reach it. HTTP/1.1 with keep-alive (nginx's `upstream { keepalive }`); a request body
(a challenged reader's POST handed to the page) is read and ignored. Nothing here logs an address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from urllib.parse import urlsplit

from floodwall.edge.challenge import Challenger, is_challenge_path
from floodwall.edge.clientaddr import canonical_address
from floodwall.edge.http import render_head
from floodwall.errors import ConfigError, ServiceError
from floodwall.model import Action
from floodwall.store.cache import DecisionCache

__all__ = ["AUTH_PATH", "DEFAULT_LISTEN", "DecisionEndpoint", "parse_listen"]

log = logging.getLogger(__name__)

AUTH_PATH = "/.well-known/floodwall/auth"
DEFAULT_LISTEN = "127.0.0.1:9181"
_MAX_HEAD_BYTES = 16 * 1024
_IDLE_TIMEOUT_S = 75.0  # above nginx's default upstream keepalive_timeout (60 s), so nginx closes first
_Reply = tuple[int, list[tuple[bytes, bytes]], bytes]


def parse_listen(listen: str, key: str = "watch.decision_endpoint_listen") -> tuple[str, int]:
    """`HOST:PORT` on loopback to (host, port); `ConfigError` naming the key otherwise."""
    host, sep, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key} = {listen!r}: expected HOST:PORT (e.g. {DEFAULT_LISTEN} or [::1]:9181)")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"{key} = {listen!r}: the decision endpoint believes the client address nginx sends it, so it listens "
            "on loopback only (127.0.0.1, ::1), beside nginx"
        )
    return host, int(port)


class DecisionEndpoint:
    """The listener; see the module docstring. `start()` runs it on a daemon thread with its own event loop."""

    def __init__(self, listen: str, cache: DecisionCache, challenger: Challenger) -> None:
        self.host, self.port = parse_listen(listen)
        self.cache = cache
        self.challenger = challenger
        self.answers: dict[int, int] = {}  # status -> count
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # one per open connection, cancelled at stop
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="floodwall-decision-endpoint", daemon=True)

    def __repr__(self) -> str:
        return f"DecisionEndpoint({self.host}:{self.port})"

    # -- life -----------------------------------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> None:
        """Listen; `ServiceError` when binding fails (a port in use)."""
        self._thread.start()
        self._started.wait(timeout_s)
        if self._error is not None:
            raise ServiceError(f"decision endpoint on {self.host}:{self.port} could not start: {self._error}")

    def stop(self) -> None:
        """Stop listening, close nginx's kept-alive connections, end the thread."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
            self._thread.join(timeout=10.0)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except OSError as error:
            self._error = error
            self._started.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._connection, self.host, self.port, limit=_MAX_HEAD_BYTES)
        if self.port == 0:
            self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        await self._stopping.wait()
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    # -- requests -------------------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _IDLE_TIMEOUT_S)
                method, target, headers, keep_alive = _parse(head)
                length = headers.get("content-length", "0")
                if length.isdigit() and int(length):
                    await reader.readexactly(int(length))  # not expected from nginx; read so the next one parses
                status, extra, body = self.answer(method, target, headers)
                self.answers[status] = self.answers.get(status, 0) + 1
                extra = [*extra, (b"Content-Length", str(len(body)).encode("ascii"))]
                if not keep_alive:
                    extra.append((b"Connection", b"close"))
                writer.write(render_head(status, extra) + (b"" if method == "HEAD" else body))
                await writer.drain()
                if not keep_alive:
                    break
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a connection nginx closed, or one that is not speaking HTTP to us: nothing to answer
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    def answer(self, method: str, target: str, headers: dict[str, str]) -> _Reply:
        """The reply to one request (its target as sent, its headers with lower-case names)."""
        address = _client(headers)
        if address is None:
            return 400, _TEXT, b"No client address: set X-Real-IP (proxy_set_header X-Real-IP $remote_addr).\n"
        user_agent = headers.get("user-agent", "")
        parts = urlsplit(target)
        if parts.path == AUTH_PATH:
            return self._decide(address, user_agent, headers)
        if is_challenge_path(parts.path):
            return self.challenger.answer(parts.path, parts.query or None, address, user_agent)
        return self.challenger.page(target, address, user_agent)  # nginx's @floodwall_challenge hand-off

    def _decide(self, address: str, user_agent: str, headers: dict[str, str]) -> _Reply:
        action = self.cache.lookup(address)
        if action is Action.BAN:
            return 403, _ACTION_BAN, b""
        if action is Action.CHALLENGE and not self.challenger.verify(headers.get("cookie"), address, user_agent):
            if is_challenge_path(urlsplit(headers.get("x-original-uri", "/")).path):
                return 204, [], b""  # the challenge's own routes stay open to the challenged
            return 401, _ACTION_CHALLENGE, b""
        return 204, [], b""


_TEXT = [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Cache-Control", b"no-store")]
_ACTION_BAN = [(b"X-Floodwall-Action", b"ban"), (b"Cache-Control", b"no-store")]
_ACTION_CHALLENGE = [(b"X-Floodwall-Action", b"challenge"), (b"Cache-Control", b"no-store")]


def _parse(head: bytes) -> tuple[str, str, dict[str, str], bool]:
    """(method, target, headers by lower-case name, keep-alive) of a request head; `ValueError` when malformed."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, colon, value = line.partition(":")
            if not colon:
                raise ValueError("a header without a colon")
            headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return method, target, headers, keep_alive


def _client(headers: dict[str, str]) -> str | None:
    """The client's canonical address: `X-Real-IP`, else the rightmost `X-Forwarded-For` hop (nginx's own)."""
    real = headers.get("x-real-ip")
    if real:
        return canonical_address(real)
    forwarded = headers.get("x-forwarded-for")
    if forwarded:
        return canonical_address(forwarded.rsplit(",", 1)[-1])
    return None
