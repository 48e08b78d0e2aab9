"""`floodwall nginx-config`: the real nginx accepts and runs what it prints (included in http {} of a wrapper
config, temporary prefix, loopback ports), its log lines are read with their extra fields, cache-busting queries
hit the cache, and the deny include bans."""

from __future__ import annotations

import subprocess
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from floodwall.cli import app
from floodwall.enforce.nginx_config import NginxSite, render_site
from floodwall.errors import InputError
from floodwall.logs import LogReader
from floodwall.testing import wait_until
from nginx_run import NginxUnderTest, free_port


def printed(tmp_path: Path, listen: str, origin: int = 9, *extra: str) -> str:
    result = CliRunner().invoke(
        app,
        [
            "nginx-config",
            "--origin",
            f"http://127.0.0.1:{origin}",
            "--server-name",
            "www.example-news.test",
            "--deny-include",
            str(tmp_path / "floodwall" / "banned.conf"),
            "--cache-path",
            str(tmp_path / "cache"),
            "--log-path",
            str(tmp_path / "access.log"),
            "--listen",
            listen,
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return result.output


def nginx_t(tmp_path: Path, site_config: str) -> None:
    """`nginx -t` on a wrapper config that includes `site_config` inside http {}."""
    (tmp_path / "floodwall.conf").write_text(site_config)
    nginx = NginxUnderTest(tmp_path, f"    include {tmp_path}/floodwall.conf;")
    done = subprocess.run(nginx.test_command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_nginx_t_accepts_the_printed_config(tmp_path: Path) -> None:
    text = printed(tmp_path, f"127.0.0.1:{free_port()}")
    assert (tmp_path / "floodwall" / "banned.conf").exists()  # created, empty, so nginx -t finds it
    nginx_t(tmp_path, text)


def test_the_printed_config_serves_caches_logs_and_bans(tmp_path: Path) -> None:
    origin, port = free_port(), free_port()
    text = printed(tmp_path, f"127.0.0.1:{port}", origin)
    (tmp_path / "floodwall.conf").write_text(text)
    body = f"""
    include {tmp_path}/floodwall.conf;
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    server {{ listen 127.0.0.1:{origin}; access_log off; location / {{ return 200 "page $request_uri\\n"; }} }}
"""
    with NginxUnderTest(tmp_path, body, port) as nginx:
        assert nginx.get("/2024/story/?utm=1", "192.0.2.1", "www.example-news.test") == (
            200,
            b"page /2024/story/?utm=1\n",
        )
        # A cache-busting query on an anonymous page view: served from the cache, the origin never sees it.
        assert nginx.get("/2024/story/?x=83741", "192.0.2.2", "www.example-news.test") == (
            200,
            b"page /2024/story/?utm=1\n",
        )
        # Search results keep their query.
        assert nginx.get("/?s=election", "192.0.2.3") == (200, b"page /?s=election\n")
        (tmp_path / "floodwall" / "banned.conf").write_text("203.0.113.7 1;\n")
        subprocess.run(nginx.reload_command, check=True)
        assert wait_until(lambda: nginx.get("/", "203.0.113.7")[0] == 403, within_s=5)
        assert nginx.get("/", "192.0.2.1")[0] == 200
    frame = pl.concat(list(LogReader([tmp_path / "access.log"], site="example-news")))
    first = frame.row(0, named=True)
    assert first["client"] == "192.0.2.1" and first["cache_status"] == "MISS" and first["request_time"] is not None
    assert first["host"] == "www.example-news.test"
    assert frame.row(1, named=True)["cache_status"] == "HIT"


def test_nginx_t_accepts_the_auth_request_wiring(tmp_path: Path) -> None:
    text = printed(tmp_path, f"127.0.0.1:{free_port()}", 9, "--auth-request", "127.0.0.1:9181")
    assert "auth_request /.well-known/floodwall/auth;" in text and "server 127.0.0.1:9181;" in text
    assert "error_page 401 = @floodwall_challenge;" in text
    nginx_t(tmp_path, text)
    with pytest.raises(InputError, match="--auth-request"):
        render_site(NginxSite(origin="http://x", server_name="a.test", auth_request="nowhere"))


def test_bad_options_are_named() -> None:
    with pytest.raises(InputError, match="--origin"):
        render_site(NginxSite(origin="ftp://x", server_name="a.test"))
    with pytest.raises(InputError, match="--deny-include"):
        render_site(NginxSite(origin="http://x", server_name="a.test", deny_include="/a b;"))
