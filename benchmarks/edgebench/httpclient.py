"""A small HTTP/1.1 client on raw sockets for the load generators: one keep-alive connection bound to a chosen
source address (any of 127.0.0.0/8, which Linux routes to `lo`), responses parsed by httptools (Content-Length and
chunked bodies alike). One request at a time per connection, as a browser's connection or a simple bot does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httptools


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes] = field(default_factory=dict)  # lower-cased names; repeated ones joined by b", "
    set_cookies: list[bytes] = field(default_factory=list)
    body: bytes = b""
    keep_alive: bool = True


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self._headers: dict[bytes, bytes] = {}
        self._cookies: list[bytes] = []
        self._body: list[bytes] = []
        self._name = b""
        self.closed = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionError(f"bad response: {error}"))
            if self.transport is not None:
                self.transport.close()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("connection closed"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._headers, self._cookies, self._body = {}, [], []

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"set-cookie":
            self._cookies.append(value)
        self._headers[name] = self._headers[name] + b", " + value if name in self._headers else value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        response = Response(
            self.parser.get_status_code(),
            self._headers,
            self._cookies,
            b"".join(self._body),
            self.parser.should_keep_alive(),
        )
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(response)

    def _fail(self, error: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)


class Connection:
    """`await Connection.open(host, port, source)`, then `await conn.get(target, headers)` as often as wanted."""

    def __init__(self, protocol: _Protocol) -> None:
        self._protocol = protocol

    @classmethod
    async def open(cls, host: str, port: int, source: str | None, timeout_s: float) -> Connection:
        loop = asyncio.get_running_loop()
        local = (source, 0) if source else None
        _, protocol = await asyncio.wait_for(loop.create_connection(_Protocol, host, port, local_addr=local), timeout_s)
        return cls(protocol)

    @property
    def usable(self) -> bool:
        return not self._protocol.closed

    async def get(self, target: str, headers: bytes, timeout_s: float) -> Response:
        """GET `target` with `headers` (complete `Name: value\\r\\n` lines, Host included). Raises ConnectionError
        or TimeoutError; after either, the connection is closed."""
        protocol = self._protocol
        if protocol.closed or protocol.transport is None:
            raise ConnectionError("connection closed")
        protocol.waiter = asyncio.get_running_loop().create_future()
        protocol.transport.write(b"GET %s HTTP/1.1\r\n%s\r\n" % (target.encode(), headers))
        try:
            response = await asyncio.wait_for(protocol.waiter, timeout_s)
        except BaseException:
            self.close()
            raise
        if not response.keep_alive:
            self.close()
        return response

    def close(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol.closed = True
