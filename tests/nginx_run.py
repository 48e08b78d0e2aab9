"""A real Debian nginx for tests: its own prefix, pid file and error log in a temporary folder, a free loopback port.

with NginxUnderTest(tmp_path, http_body) as nginx:   # http_body: what goes inside http {}; {port} is filled in
    nginx.get("/", forwarded_for="203.0.113.9")      # (status, body) of a request to 127.0.0.1:port
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import pytest

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def need_nginx() -> str:
    if NGINX is None:
        pytest.skip("nginx is not installed (scripts/ensure-debian-packages nginx)")
    return NGINX


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main_config(prefix: Path, http_body: str) -> str:
    # Run as root (the test's own user), workers would be nobody and could not write the cache in tmp_path.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""\
{user}daemon on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    access_log off;
{http_body}
}}
"""


class NginxUnderTest:
    """Starts nginx on `port` (free, loopback) with `http_body` inside `http {}`; stops it on exit."""

    def __init__(self, prefix: Path, http_body: str, port: int | None = None) -> None:
        self.binary = need_nginx()
        self.prefix = prefix
        self.port = port or free_port()
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(main_config(prefix, http_body.replace("{port}", str(self.port))))

    def command(self, *args: str) -> list[str]:
        return [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.prefix / "error.log"), *args]

    @property
    def test_command(self) -> list[str]:
        return self.command("-t", "-q")

    @property
    def reload_command(self) -> list[str]:
        return self.command("-s", "reload")

    def start(self) -> None:
        done = subprocess.run(self.command(), capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.02)
        raise AssertionError(f"nginx did not listen on {self.port}: {(self.prefix / 'error.log').read_text()}")

    def stop(self) -> None:
        """Quit by the pid file's signal, so that a configuration a test broke cannot keep nginx running."""
        pid_file = self.prefix / "nginx.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGQUIT)
        deadline = time.monotonic() + 5
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def get(self, path: str = "/", forwarded_for: str | None = None, host: str | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if host is not None:
            request.add_header("Host", host)
        if forwarded_for is not None:
            request.add_header("X-Forwarded-For", forwarded_for)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), bytes(error.read())

    def __enter__(self) -> NginxUnderTest:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
