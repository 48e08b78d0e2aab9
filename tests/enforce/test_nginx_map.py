"""NginxMapEnforcer against the real nginx: a file nginx accepts and enforces, coalesced reloads, a refused
`nginx -t` keeping the old file."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from floodwall.enforce import NginxMapEnforcer, enforcer_from_target
from floodwall.errors import ConfigError, ServiceError
from floodwall.model import Action, Decision
from floodwall.testing import make_decision, wait_until
from nginx_run import NginxUnderTest


def ban(target: str, ttl_s: float = 600, action: Action = Action.BAN) -> Decision:
    return make_decision(target, datetime.now(UTC), ttl_s=ttl_s, action=action)


HTTP = """
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    geo $floodwall_banned {{ default 0; include {include}; }}
    server {{
        listen 127.0.0.1:{{port}};
        if ($floodwall_banned) {{ return 403; }}
        location / {{ return 200 "hello\\n"; }}
    }}
"""


def started(tmp_path: Path) -> tuple[NginxUnderTest, Path]:
    include = tmp_path / "banned.conf"
    include.write_text("# empty\n")
    nginx = NginxUnderTest(tmp_path, HTTP.format(include=include).replace("{{", "{").replace("}}", "}"))
    nginx.start()
    return nginx, include


def test_bans_reach_nginx_and_are_withdrawn(tmp_path: Path) -> None:
    nginx, include = started(tmp_path)
    try:
        enforcer = NginxMapEnforcer(include, nginx.reload_command, 0.0, nginx.test_command)
        enforcer.apply([ban("203.0.113.7"), ban("2001:db8:1::/48"), ban("198.51.100.0/24")])
        assert "203.0.113.7 1;" in include.read_text() and "2001:db8:1::/48 1;" in include.read_text()
        assert wait_until(lambda: nginx.get("/", "203.0.113.7")[0] == 403, within_s=5)
        # Old workers may answer for a moment after a reload (they finish gracefully): wait for the new ones.
        assert wait_until(lambda: nginx.get("/", "198.51.100.77")[0] == 403, within_s=5)
        assert wait_until(lambda: nginx.get("/", "2001:db8:1::9")[0] == 403, within_s=5)
        assert nginx.get("/", "192.0.2.1") == (200, b"hello\n")
        enforcer.revoke(["203.0.113.7"])
        assert wait_until(lambda: nginx.get("/", "203.0.113.7")[0] == 200, within_s=5)
        enforcer.close()
    finally:
        nginx.stop()


def test_challenges_stay_out_of_the_ban_file(tmp_path: Path) -> None:
    enforcer = NginxMapEnforcer(tmp_path / "banned.conf", None, 0.0, None, challenge_path=tmp_path / "challenged.conf")
    enforcer.apply([ban("203.0.113.7", action=Action.CHALLENGE), ban("203.0.113.8")])
    assert "203.0.113.7" not in (tmp_path / "banned.conf").read_text()
    assert "203.0.113.7 1;" in (tmp_path / "challenged.conf").read_text()
    enforcer.close()


def test_reloads_are_coalesced(tmp_path: Path) -> None:
    stamp = tmp_path / "reloads"
    reload = ["sh", "-c", f"echo x >> {stamp}"]
    enforcer = NginxMapEnforcer(tmp_path / "banned.conf", reload, min_interval_s=1.0, test_command=None)
    for k in range(1, 40):
        enforcer.apply([ban(f"203.0.113.{k}")])
    assert stamp.read_text().count("x") == 1  # the first change at once, the rest wait for the interval
    assert wait_until(lambda: stamp.read_text().count("x") == 2, within_s=3)
    time.sleep(1.3)
    assert stamp.read_text().count("x") == 2  # nothing new, no reload
    assert (tmp_path / "banned.conf").read_text().count(" 1;") == 39
    enforcer.close()


def test_expired_bans_leave_the_file_on_time(tmp_path: Path) -> None:
    enforcer = NginxMapEnforcer(tmp_path / "banned.conf", None, 0.0, None)
    enforcer.apply([ban("203.0.113.7", ttl_s=0.5), ban("203.0.113.8")])
    assert "203.0.113.7" in (tmp_path / "banned.conf").read_text()
    assert wait_until(lambda: "203.0.113.7" not in (tmp_path / "banned.conf").read_text(), within_s=3)
    assert "203.0.113.8" in (tmp_path / "banned.conf").read_text()
    enforcer.close()


def test_a_failing_nginx_t_keeps_the_old_file(tmp_path: Path) -> None:
    nginx, include = started(tmp_path)
    try:
        enforcer = NginxMapEnforcer(include, nginx.reload_command, 0.0, nginx.test_command)
        enforcer.apply([ban("203.0.113.7")])
        good = include.read_text()
        # A configuration broken elsewhere: nginx -t now fails, whatever the include says.
        sound = nginx.conf.read_text()
        nginx.conf.write_text(sound.replace("worker_processes 1;", "worker_processes 1; bogus;"))
        with pytest.raises(ServiceError, match="bogus"):
            enforcer.apply([ban("203.0.113.8")])
        assert include.read_text() == good
        assert not list(tmp_path.glob(".banned.conf.*"))
        # Once the configuration is mended, nginx runs with the old file: the refused change never took effect.
        nginx.conf.write_text(sound)
        subprocess.run(nginx.reload_command, check=True)
        assert wait_until(lambda: nginx.get("/", "203.0.113.7")[0] == 403, within_s=5)
        assert nginx.get("/", "203.0.113.8")[0] == 200
    finally:
        nginx.stop()


def test_enforcer_from_target(tmp_path: Path) -> None:
    assert isinstance(enforcer_from_target(f"nginx-map:{tmp_path}/b.conf"), NginxMapEnforcer)
    with pytest.raises(ConfigError, match="nginx-map:PATH"):
        enforcer_from_target("iptables:foo")
    with pytest.raises(ConfigError, match="FAMILY/TABLE/SET"):
        enforcer_from_target("nftables:bridge/x/y")
