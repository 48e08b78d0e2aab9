"""The admin listener: health, Prometheus metrics, listing and revoking decisions, the "under attack" switch.

    GET    /.well-known/floodwall/health              JSON: status, workers, store reachable, decisions, under attack
    GET    /.well-known/floodwall/metrics             Prometheus text exposition format 0.0.4
    GET    /.well-known/floodwall/decisions           JSON list of the current decisions
    DELETE /.well-known/floodwall/decisions/{target}  revoke a target's decision (reason "operator"); a CIDR's
                                                      slash may be written as is or as %2F
    POST   /.well-known/floodwall/under-attack        body `on` / `off` (or `{"under_attack": true}`, or ?state=on)

It runs in the supervisor, on loopback by default. Off loopback it refuses to start without a token file, and
with a token file every request must carry `Authorization: Bearer <token>`, compared in constant time
(`hmac.compare_digest`). One request per connection, small bodies, short timeouts: it is for an operator and a
Prometheus scraper, not for the public, and a flood that reaches it is closed quickly.

Health is `degraded` when the store is unreachable or live detection has not stepped for 10 s (its `live` block
says how far it got). When the store is unreachable (STYLE.md item 7): health says `store_reachable: false`, the
decision list is served from the supervisor's cache (what the edge enforces, header `X-Floodwall-Source: cache`),
and a revoke fails closed with 503: a revoke the store did not record would come back on the next resync.
Nothing here logs a caller's address.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from floodwall.edge.metrics import MetricsBoard
from floodwall.edge.settings import AdminSettings
from floodwall.errors import ConfigError, InputError, ServiceError
from floodwall.model import Action, Decision
from floodwall.store.cache import DecisionCache
from floodwall.store.codec import decision_to_dict
from floodwall.types import Store

__all__ = ["PREFIX", "AdminServer", "AdminThread", "parse_listen"]

log = logging.getLogger(__name__)

PREFIX = "/.well-known/floodwall/"
_MAX_HEAD_BYTES = 16 * 1024
_MAX_BODY_BYTES = 4 * 1024
_READ_TIMEOUT_S = 10.0
_STORE_TIMEOUT_S = 2.0
_STALLED_S = 10.0  # live detection that has not stepped for this long is reported as degraded
_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def parse_listen(listen: str, key: str = "edge.admin.listen") -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` to (host, port); `ConfigError` naming the key otherwise."""
    host, sep, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key} = {listen!r}: expected HOST:PORT (e.g. 127.0.0.1:9180 or [::1]:9180)")
    return host, int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name we would have to resolve: treated as off loopback


def _read_token(path: str) -> bytes:
    try:
        token = Path(path).read_bytes().strip()
    except OSError as error:
        raise ConfigError(f"edge.admin.token_file = {path!r}: cannot read it ({error.strerror})") from None
    if len(token) < 16:
        raise ConfigError(f"edge.admin.token_file = {path!r}: the token must be at least 16 characters")
    return token


class _Reply(Exception):
    """Ends a request with this status and JSON message."""

    def __init__(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class AdminServer:
    """The listener; see the module docstring. `await start()` / `await close()` on a running loop."""

    def __init__(
        self,
        settings: AdminSettings,
        *,
        store: Store,
        cache: DecisionCache,
        board: MetricsBoard,
        workers: Callable[[], int] = lambda: 1,
        live: Callable[[], dict[str, object]] | None = None,
    ) -> None:
        self.host, self.port = parse_listen(settings.listen)
        self.token = _read_token(settings.token_file) if settings.token_file else None
        if self.token is None and not _is_loopback(self.host):
            raise ConfigError(
                f"edge.admin.listen = {settings.listen!r} is off loopback: set edge.admin.token_file "
                "(a file holding a bearer token) or listen on 127.0.0.1"
            )
        self.store, self.cache, self.board, self.workers = store, cache, board, workers
        self.live = live
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port, limit=_MAX_HEAD_BYTES)
        sockets = self._server.sockets
        if sockets and self.port == 0:
            self.port = sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, end the requests under way, and let their sockets close before returning."""
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()
            await asyncio.sleep(0)  # a transport's socket is closed on the loop's next turn

    # -- one connection, one request --------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        try:
            try:
                method, target, headers, body = await asyncio.wait_for(self._read(reader), _READ_TIMEOUT_S)
                status, content_type, payload, extra = await self._answer(method, target, headers, body)
            except _Reply as reply:
                status, content_type, extra = reply.status, "application/json", reply.headers
                payload = json.dumps({"error": reply.message}).encode()
            head = [f"HTTP/1.1 {status.value} {status.phrase}", f"Content-Type: {content_type}"]
            head += [f"Content-Length: {len(payload)}", "Connection: close", "Cache-Control: no-store"]
            head += [f"{name}: {value}" for name, value in extra.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that vanished or dawdled: nothing to answer
        except Exception:  # a bug: logged with its cause, the listener goes on
            log.exception("admin request failed")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _read(self, reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise _Reply(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large") from None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Reply(HTTPStatus.BAD_REQUEST, "malformed request line")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, sep, value = line.partition(":")
                if not sep:
                    raise _Reply(HTTPStatus.BAD_REQUEST, "malformed header line")
                headers[name.strip().lower()] = value.strip()
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit() or int(length_text) > _MAX_BODY_BYTES:
            raise _Reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body limited to {_MAX_BODY_BYTES} bytes")
        if "transfer-encoding" in headers:
            raise _Reply(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length body")
        body = await reader.readexactly(int(length_text))
        return parts[0], parts[1], headers, body

    def _authorised(self, headers: dict[str, str]) -> bool:
        if self.token is None:
            return True
        scheme, _, given = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token)

    async def _answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[HTTPStatus, str, bytes, dict[str, str]]:
        if not self._authorised(headers):
            raise _Reply(HTTPStatus.UNAUTHORIZED, "bearer token required", {"WWW-Authenticate": "Bearer"})
        url = urlsplit(target)
        if not url.path.startswith(PREFIX):
            raise _Reply(HTTPStatus.NOT_FOUND, "unknown path")
        route = url.path[len(PREFIX) :]
        if route == "health" and method == "GET":
            return self._json(await self._health())
        if route == "metrics" and method == "GET":
            return HTTPStatus.OK, _METRICS_TYPE, self.board.render(), {}
        if route == "decisions" and method == "GET":
            return await self._decisions()
        if route.startswith("decisions/") and method == "DELETE":
            return await self._revoke(unquote(route[len("decisions/") :]))
        if route == "under-attack" and method == "POST":
            return self._json(self._under_attack(body, parse_qs(url.query)))
        known = {"health": "GET", "metrics": "GET", "decisions": "GET", "under-attack": "POST"}
        if route in known or route.startswith("decisions/"):
            allow = known.get(route, "DELETE")
            raise _Reply(HTTPStatus.METHOD_NOT_ALLOWED, f"use {allow}", {"Allow": allow})
        raise _Reply(HTTPStatus.NOT_FOUND, "unknown path")

    @staticmethod
    def _json(data: Any, headers: dict[str, str] | None = None) -> tuple[HTTPStatus, str, bytes, dict[str, str]]:
        return HTTPStatus.OK, "application/json", json.dumps(data).encode(), headers or {}

    async def _store_call(self, call: Callable[[], Any]) -> Any:
        """A blocking store call off the loop, bounded in time; `ServiceError` when the store does not answer."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(call), _STORE_TIMEOUT_S)
        except TimeoutError:
            raise ServiceError(f"store did not answer within {_STORE_TIMEOUT_S} s") from None

    async def _health(self) -> dict[str, Any]:
        try:
            await self._store_call(self.store.epoch)
            reachable = True
        except ServiceError:
            reachable = False
        active = self._held()
        live = self.live() if self.live is not None else None
        ago = live.get("last_step_s_ago") if live is not None else None
        stalled = isinstance(ago, float) and ago > _STALLED_S
        return {
            "status": "ok" if reachable and not stalled else "degraded",
            "workers": self.workers(),
            "store_reachable": reachable,
            "decisions_active": len(active),
            "bans_active": sum(d.action is Action.BAN for d in active),
            "under_attack": self.board.under_attack,
            "live": live,
        }

    def _held(self) -> list[Decision]:
        now = self.cache.clock()
        return [d for d in self.cache.decisions() if d.expires > now]

    async def _decisions(self) -> tuple[HTTPStatus, str, bytes, dict[str, str]]:
        try:
            decisions = await self._store_call(self.store.active)
            source = "store"
        except ServiceError as error:
            log.warning("admin: store unreachable, listing the cached decisions: %s", error)
            decisions = self._held()
            source = "cache"
        listed = [decision_to_dict(d) for d in sorted(decisions, key=lambda d: (d.created, d.target))]
        return self._json(listed, {"X-Floodwall-Source": source})

    async def _revoke(self, target: str) -> tuple[HTTPStatus, str, bytes, dict[str, str]]:
        try:
            revoked = await self._store_call(lambda: self.store.revoke(target, "operator", by="admin-api"))
        except InputError as error:
            raise _Reply(HTTPStatus.BAD_REQUEST, str(error)) from None
        except ServiceError as error:
            raise _Reply(HTTPStatus.SERVICE_UNAVAILABLE, f"store unreachable, nothing revoked: {error}") from None
        if revoked is None:
            raise _Reply(HTTPStatus.NOT_FOUND, f"no active decision on {target}")
        self.cache.revoke([revoked.target])  # at once here; every worker follows through the store's feed
        return self._json({"revoked": decision_to_dict(revoked)})

    def _under_attack(self, body: bytes, query: dict[str, list[str]]) -> dict[str, bool]:
        text = body.decode("utf-8", "replace").strip()
        value: object = query["state"][-1] if "state" in query else text
        if text.startswith("{"):
            try:
                value = json.loads(text).get("under_attack")
            except (ValueError, AttributeError):
                raise _Reply(HTTPStatus.BAD_REQUEST, 'expected {"under_attack": true|false}') from None
        switch = {
            "on": True,
            "off": False,
            "true": True,
            "false": False,
            "1": True,
            "0": False,
            True: True,
            False: False,
        }
        key = value.lower() if isinstance(value, str) else value
        if not isinstance(key, str | bool) or key not in switch:
            raise _Reply(HTTPStatus.BAD_REQUEST, "say on or off")
        before, self.board.under_attack = self.board.under_attack, switch[key]
        if before != self.board.under_attack:
            log.warning("under-attack mode switched %s by the admin API", "on" if self.board.under_attack else "off")
        return {"under_attack": self.board.under_attack}


class AdminThread:
    """Runs an `AdminServer` on its own event loop in a daemon thread (for a supervisor without a loop)."""

    def __init__(self, server: AdminServer) -> None:
        self.server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="floodwall-admin", daemon=True)

    def start(self, timeout_s: float = 10.0) -> None:
        """Start listening; raises what binding raised (a port in use is a `ServiceError`)."""
        self._thread.start()
        self._started.wait(timeout_s)
        if self._error is not None:
            raise ServiceError(
                f"admin listener on {self.server.host}:{self.server.port} could not start: {self._error}"
            ) from self._error

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self.server.start())
        except OSError as error:
            self._error = error
            self._started.set()
            loop.close()
            return
        self._started.set()
        loop.run_forever()
        loop.run_until_complete(self.server.close())
        loop.close()

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10.0)
