"""Debian's nginx as the benchmark needs it: a fast static origin, a caching front, and the newsroom front.

Each nginx runs with its own prefix (config, pid file, logs, temp and cache folders) in a temporary folder, on a free
loopback port, with as many worker processes as the edge it is compared with; it is stopped by its pid file.
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

from edgebench.origin import page_body

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
HOT_PAGE = "/news/story-1.html"  # cacheable for an hour at the static origin
PASS_PAGE = "/nocache/story-1.html"  # Cache-Control: no-store at the static origin: every request goes through


def free_port() -> int:
    """A free loopback port below Linux's ephemeral range (32768-60999): the load generators open thousands of
    client connections, and a listening port picked from that range can be taken by one of them (or by a front's
    own connection to its origin) between the pick and the server's bind."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port between 20000 and 32000")


def wait_listening(port: int, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s")


class Nginx:
    """One nginx: `http_body` goes inside `http {}`."""

    def __init__(self, prefix: Path, http_body: str, port: int, workers: int = 1) -> None:
        if NGINX is None:
            raise RuntimeError("nginx is not installed (scripts/ensure-debian-packages nginx)")
        self.prefix = prefix
        self.port = port
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf = prefix / "nginx.conf"
        # As root, workers would otherwise run as nobody and could not write the cache under a private prefix.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"""{user}daemon on;
worker_processes {workers};
worker_rlimit_nofile 16384;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log crit;
events {{ worker_connections 8192; }}
http {{
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    access_log off;
    keepalive_requests 100000;
{http_body}
}}
"""
        )

    def command(self, *args: str) -> list[str]:
        assert NGINX is not None
        return [NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.prefix / "error.log"), *args]

    def start(self) -> None:
        done = subprocess.run(self.command(), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"nginx did not start: {done.stderr.strip()}")
        wait_listening(self.port, 10, "nginx")

    @property
    def pid(self) -> int:
        """The master's process id (its workers are its children)."""
        return int((self.prefix / "nginx.pid").read_text())

    def stop(self) -> None:
        pid_file = self.prefix / "nginx.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def static_origin(prefix: Path, workers: int = 1) -> Nginx:
    """nginx serving files: `HOT_PAGE` with `Cache-Control: max-age=3600`, `PASS_PAGE` with `no-store`.

    A fair origin for both fronts: fast enough that the front, not the origin, is what the load generator measures.
    """
    root = prefix / "www"
    for path in (HOT_PAGE, PASS_PAGE):
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(page_body(path))
    port = free_port()
    body = f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
        location /news/ {{ add_header Cache-Control "max-age=3600"; }}
        location /nocache/ {{ add_header Cache-Control "no-store"; }}
    }}
"""
    return Nginx(prefix, body, port, workers)


def caching_front(prefix: Path, origin_port: int, workers: int) -> Nginx:
    """nginx as a plain caching reverse proxy (throughput): keep-alive to the origin, the origin's Cache-Control
    honoured (so `PASS_PAGE` is never stored), an access log written like the edge writes its own. No
    `proxy_cache_lock`: with it, concurrent requests for a page the origin marks no-store wait for each other in
    500 ms steps (nginx's lock timer), which would measure that pitfall rather than proxying."""
    port = free_port()
    body = f"""
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=front:10m max_size=256m inactive=1h use_temp_path=off;
    upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        access_log {prefix}/access.log combined buffer=64k;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_cache front;
            proxy_cache_use_stale error timeout updating;
            add_header X-Cache-Status $upstream_cache_status;
        }}
    }}
"""
    return Nginx(prefix, body, port, workers)


def newsroom_front(prefix: Path, origin_url: str, workers: int) -> Nginx:
    """The front `floodwall nginx-config` prints (proxy_cache, use_stale, lock, a cache key without cache-busting
    query strings, limit_req and limit_conn per address answering 429), on a free loopback port."""
    from floodwall.enforce.nginx_config import NginxSite, render_site

    port = free_port()
    banned = prefix / "banned.conf"
    banned.write_text("")
    (prefix / "cache").mkdir(parents=True, exist_ok=True)
    site = NginxSite(
        origin=origin_url,
        server_name="bench.test",
        deny_include=str(banned),
        cache_path=str(prefix / "cache"),
        log_path=str(prefix / "access.log"),
        listen=f"127.0.0.1:{port}",
    )
    return Nginx(prefix, render_site(site), port, workers)
