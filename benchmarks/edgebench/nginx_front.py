"""Debian's nginx as the benchmark needs it: a fast static origin, a caching front, and the newsroom front.

Each nginx runs with its own prefix (config, pid file, logs, temp and cache folders) in a temporary folder, on a free
loopback port, with as many worker processes as the edge it is compared with; it is stopped by its pid file.
"""

from __future__ import annotations

from pathlib import Path

from edgebench.origin import page_body
from floodwall import localservers
from floodwall.localservers import wait_listening

__all__ = ["HOT_PAGE", "PASS_PAGE", "Nginx", "caching_front", "free_port", "newsroom_front", "static_origin"]
__all__ += ["wait_listening"]

HOT_PAGE = "/news/story-1.html"  # cacheable for an hour at the static origin
PASS_PAGE = "/nocache/story-1.html"  # Cache-Control: no-store at the static origin: every request goes through


def free_port() -> int:
    """A free loopback port below Linux's ephemeral range: the load generators open thousands of client connections,
    and a listening port picked from that range can be taken by one of them between the pick and the server's bind."""
    return localservers.free_port(below_ephemeral=True)


class Nginx(localservers.Nginx):
    """One nginx sized for load (`http_body` goes inside `http {}`): as many workers as the edge it is compared with."""

    def __init__(self, prefix: Path, http_body: str, port: int, workers: int = 1) -> None:
        super().__init__(
            prefix,
            http_body,
            port,
            workers=workers,
            connections=8192,
            error_level="crit",
            http_extra="    keepalive_requests 100000;\n",
        )


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
