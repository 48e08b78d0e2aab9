"""Real Debian servers on loopback, for the tests and the benchmarks: nginx with a prefix of its own, and a
throwaway redis-server.

Both the test suite and `benchmarks/` start these the same way, so the way lives here, once (a benchmark must not
import the tests). Every server binds 127.0.0.1 on a free port, keeps its pid file, logs and temporary files under
the folder it is given, and is stopped by its own pid: a configuration a test broke cannot leave it running.

    with Nginx(tmp_path, "server { listen 127.0.0.1:{port}; return 204; }") as nginx:
        ...   # nginx.port
    with RedisServer(tmp_path) as redis:
        ...   # redis.url
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["NGINX", "REDIS_SERVER", "Nginx", "RedisServer", "free_port", "wait_listening"]


def _binary(name: str, fallback: str) -> str | None:
    return shutil.which(name) or (fallback if Path(fallback).exists() else None)


NGINX = _binary("nginx", "/usr/sbin/nginx")
REDIS_SERVER = _binary("redis-server", "/usr/bin/redis-server")


def free_port(below_ephemeral: bool = False) -> int:
    """A free loopback port, picked by the kernel; with `below_ephemeral`, one between 20000 and 32000.

    Load generators open thousands of client connections, and a listening port picked from Linux's ephemeral range
    (32768-60999) can be taken by one of them between the pick and the server's bind.
    """
    if not below_ephemeral:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
            return port
    rng = random.Random()
    for _ in range(200):
        candidate = rng.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return candidate
    raise RuntimeError("no free loopback port between 20000 and 32000")


def wait_listening(port: int, timeout_s: float, what: str) -> None:
    """Returns once 127.0.0.1:`port` accepts a connection; raises RuntimeError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:g} s")


class _Server:
    """Started on entering a `with` block, stopped on leaving it."""

    def start(self, timeout_s: float = 10) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


class Nginx(_Server):
    """One nginx: `http_body` goes inside `http {}`, with `{port}` replaced by the port it listens on.

    `workers` and `connections` size it (the benchmarks compare it with an edge of as many workers); `error_level`
    is the error log's level; `http_extra` lines go before the body (e.g. `keepalive_requests`).
    """

    def __init__(
        self,
        prefix: Path,
        http_body: str,
        port: int | None = None,
        *,
        workers: int = 1,
        connections: int = 256,
        error_level: str = "warn",
        http_extra: str = "",
    ) -> None:
        if NGINX is None:
            raise RuntimeError("nginx is not installed (scripts/ensure-debian-packages nginx)")
        self.binary = NGINX
        self.prefix = prefix
        self.port = port or free_port()
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(
            self.main_config(
                prefix,
                http_body.replace("{port}", str(self.port)),
                workers=workers,
                connections=connections,
                error_level=error_level,
                http_extra=http_extra,
            )
        )

    @staticmethod
    def main_config(
        prefix: Path,
        http_body: str,
        *,
        workers: int = 1,
        connections: int = 256,
        error_level: str = "warn",
        http_extra: str = "",
    ) -> str:
        """The whole nginx.conf: everything nginx writes stays under `prefix`."""
        # As root, workers would otherwise run as nobody and could not write a cache under a private prefix.
        user = "user root;\n" if os.geteuid() == 0 else ""
        files = f"worker_rlimit_nofile {max(1024, 2 * connections)};\n" if connections > 256 else ""
        return f"""\
{user}daemon on;
worker_processes {workers};
{files}pid {prefix}/nginx.pid;
error_log {prefix}/error.log {error_level};
events {{ worker_connections {connections}; }}
http {{
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    access_log off;
{http_extra}{http_body}
}}
"""

    def command(self, *args: str) -> list[str]:
        return [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.prefix / "error.log"), *args]

    @property
    def test_command(self) -> list[str]:
        return self.command("-t", "-q")

    @property
    def reload_command(self) -> list[str]:
        return self.command("-s", "reload")

    @property
    def pid(self) -> int:
        """The master process's pid (its workers are its children)."""
        return int((self.prefix / "nginx.pid").read_text())

    def start(self, timeout_s: float = 10) -> None:
        done = subprocess.run(self.command(), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"nginx did not start: {done.stderr.strip()}")
        try:
            wait_listening(self.port, timeout_s, "nginx")
        except RuntimeError as error:
            log = self.prefix / "error.log"
            raise RuntimeError(f"{error}: {log.read_text() if log.exists() else ''}") from None

    def stop(self, timeout_s: float = 10) -> None:
        """Quit by the pid file's signal and wait for the pid file to go."""
        pid_file = self.prefix / "nginx.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGQUIT)
        deadline = time.monotonic() + timeout_s
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)


class RedisServer(_Server):
    """A throwaway redis-server on loopback, without persistence; can be killed and started again."""

    def __init__(self, directory: Path) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed (scripts/ensure-debian-packages redis-server)")
        self.binary = REDIS_SERVER
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.directory), "--protected-mode", "yes"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
