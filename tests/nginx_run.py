"""A real Debian nginx for tests (`floodwall.localservers.Nginx`), skipped where nginx is not installed.

with NginxUnderTest(tmp_path, http_body) as nginx:   # http_body: what goes inside http {}; {port} is filled in
    nginx.get("/", forwarded_for="203.0.113.9")      # (status, body) of a request to 127.0.0.1:port
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from floodwall.localservers import NGINX, Nginx, free_port

__all__ = ["NginxUnderTest", "free_port", "need_nginx"]


def need_nginx() -> str:
    if NGINX is None:
        pytest.skip("nginx is not installed (scripts/ensure-debian-packages nginx)")
    return NGINX


class NginxUnderTest(Nginx):
    """Starts nginx on `port` (free, loopback) with `http_body` inside `http {}`; stops it on exit."""

    def __init__(self, prefix: Path, http_body: str, port: int | None = None) -> None:
        need_nginx()
        super().__init__(prefix, http_body, port)

    def start(self, timeout_s: float = 5) -> None:
        super().start(timeout_s)

    def stop(self, timeout_s: float = 5) -> None:
        super().stop(timeout_s)

    def get(
        self, path: str = "/", forwarded_for: str | None = None, host: str | None = None, agent: str | None = None
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if agent is not None:
            request.add_header("User-Agent", agent)
        if host is not None:
            request.add_header("Host", host)
        if forwarded_for is not None:
            request.add_header("X-Forwarded-For", forwarded_for)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), bytes(error.read())
