"""The watch job end to end: a real nginx on a loopback port, its access log followed, a simulated flood written to
that log; nginx answers 403 to the flood's addresses within 5 s while a reader keeps getting 200. Restarts keep
decisions; decisions expire on time; revokes by an operator reach the enforcers."""

from __future__ import annotations

import http.client
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from floodwall.authz import DecisionEndpoint
from floodwall.edge.challenge import Challenger
from floodwall.edge.settings import ChallengeSettings
from floodwall.enforce import NginxMapEnforcer
from floodwall.model import Action
from floodwall.store import DecisionCache, store_from_url
from floodwall.testing import make_decision, wait_until
from floodwall.types import Store
from floodwall.watch import Watcher, WatchEvent
from nginx_run import NginxUnderTest, free_port
from watch_traffic import READER_AGENT, flood_addresses, flood_lines, reader_lines

# The reader's requests reach the log too: a browser's agent, the one the quiet minute's readers send. With
# urllib's, they would share a shape with the test's own probes from the flood's addresses, and be judged with them.
READER = "198.51.100.23"
HTTP = """
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    geo $floodwall_banned { default 0; include INCLUDE; }
    server {
        listen 127.0.0.1:{port};
        access_log LOG combined;
        if ($floodwall_banned) { return 403; }
        location / { return 200 "story\\n"; }
    }
"""


class Running:
    """A Watcher on a thread, with its events."""

    def __init__(self, log: Path, store: Store, enforcer: NginxMapEnforcer) -> None:
        self.events: list[WatchEvent] = []
        self.watcher = Watcher(log, site="example-news", store=store, enforcers=[enforcer], on_event=self.events.append)
        self.thread = threading.Thread(target=self.watcher.run, daemon=True)
        self.thread.start()
        assert wait_until(lambda: any(e.kind == "restored" for e in self.events), within_s=10)

    def stop(self) -> None:
        self.watcher.stop()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()

    def decided(self) -> set[str]:
        return {d.target for e in self.events if e.kind == "decision" for d in e.decisions}


def append(log: Path, lines: list[str]) -> None:
    with log.open("a", encoding="ascii") as handle:
        handle.write("".join(lines))


def test_a_flood_in_the_log_is_refused_by_nginx_within_5_s_and_survives_a_restart(tmp_path: Path) -> None:
    log, include = tmp_path / "access.log", tmp_path / "banned.conf"
    include.write_text("")
    log.touch()
    nginx = NginxUnderTest(tmp_path, HTTP.replace("INCLUDE", str(include)).replace("LOG", str(log)))
    nginx.start()
    store = store_from_url(f"sqlite:///{tmp_path}/state.db")
    try:
        enforcer = NginxMapEnforcer(include, nginx.reload_command, 1.0, nginx.test_command)
        running = Running(log, store, enforcer)
        rng, now = random.Random(5), time.time()
        append(log, reader_lines(rng, now - 75, 60, 8))  # an ordinary minute before the attack
        attackers = flood_addresses(20)
        assert nginx.get("/", attackers[0])[0] == 200
        written = time.monotonic()
        flood = flood_lines(rng, now - 15, 15, 150, attackers) + reader_lines(rng, now - 15, 15, 8)
        append(log, sorted(flood, key=lambda line: line.split("[", 1)[1][:20]))
        # Every flood address refused within 5 s (decisions and nginx's graceful reloads arrive in steps).
        assert wait_until(lambda: all(nginx.get("/", a)[0] == 403 for a in attackers), within_s=5, every_s=0.1)
        took = time.monotonic() - written
        assert nginx.get("/", READER, agent=READER_AGENT) == (200, b"story\n")
        assert running.decided() == set(attackers), "readers in the log must not be banned"
        assert nginx.get("/", READER, agent=READER_AGENT)[0] == 200
        running.stop()
        print(f"flood written to 403 in {took:.2f} s")

        # A restart: nginx forgets (an empty include), the new watcher restores the bans from the store.
        # nginx reloads gracefully: for a moment old and new workers both answer, so each check waits for the
        # state it expects on every address, not on one answer.
        include.write_text("")
        subprocess.run(nginx.reload_command, check=True)
        assert wait_until(lambda: all(nginx.get("/", a)[0] == 200 for a in attackers), within_s=5)
        enforcer = NginxMapEnforcer(include, nginx.reload_command, 1.0, nginx.test_command)
        running = Running(log, store, enforcer)
        assert wait_until(lambda: all(nginx.get("/", a)[0] == 403 for a in attackers), within_s=5)
        restored = next(e for e in running.events if e.kind == "restored")
        assert {d.target for d in restored.decisions} == set(attackers)
        assert nginx.get("/", READER, agent=READER_AGENT)[0] == 200

        # An operator's revoke reaches nginx through the store's change feed.
        store.revoke(attackers[0], "false positive", by="operator")
        assert wait_until(
            lambda: nginx.get("/", attackers[0])[0] == 200 and all(nginx.get("/", a)[0] == 403 for a in attackers[1:]),
            within_s=5,
        )
        running.stop()
    finally:
        nginx.stop()
        store.close()


def test_decisions_expire_on_time(tmp_path: Path) -> None:
    store = store_from_url("memory://")
    now = datetime.now(UTC)
    store.put([make_decision("203.0.113.7", now, ttl_s=1.0), make_decision("203.0.113.8", now, ttl_s=600)])
    store.put([make_decision("203.0.113.9", now, ttl_s=600, action=Action.OBSERVE)])
    include = tmp_path / "banned.conf"
    (tmp_path / "access.log").touch()
    running = Running(tmp_path / "access.log", store, NginxMapEnforcer(include, None, 0.0, None))
    assert "203.0.113.7 1;" in include.read_text() and "203.0.113.9" not in include.read_text()
    assert wait_until(lambda: any(e.kind == "expired" for e in running.events), within_s=4)
    assert "203.0.113.7" not in include.read_text() and "203.0.113.8 1;" in include.read_text()
    running.stop()
    assert running.watcher.summary.restored == 2 and running.watcher.summary.expired == 1


def test_lines_written_once_the_watcher_is_made_are_all_read(tmp_path: Path) -> None:
    # `floodwall watch` says "watching" once the watcher is made; lines written from then on must not be skipped as
    # "already there at the start" (the quiet minute written then was, now and then, and the flood after it went
    # unjudged for want of a baseline).
    log = tmp_path / "access.log"
    log.touch()
    watcher = Watcher(log, site="example-news", store=store_from_url("memory://"))
    lines = reader_lines(random.Random(3), time.time() - 30, 20, 8)
    append(log, lines)
    time.sleep(0.5)  # a slow start of `run()` (a busy machine)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: watcher.summary.lines == len(lines), within_s=10), watcher.summary.lines
    finally:
        watcher.stop()
        thread.join(timeout=10)


def _line_within(stream: IO[str], timeout_s: float) -> str:
    """The next line of a child's output, or "" when none comes within `timeout_s` (a failure, not a hang)."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return got[0] if got else ""


def test_the_command_prints_decisions_and_a_summary_on_ctrl_c(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.touch()
    command = [sys.executable, "-m", "floodwall", "watch", str(log), "--site", "example-news"]
    command += ["--state-dir", str(tmp_path / "state"), "--enforce", f"nginx-map:{tmp_path / 'banned.conf'}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    (tmp_path / "nginx").write_text("#!/bin/sh\nexit 0\n")  # a stand-in for the host's nginx -t and reload
    (tmp_path / "nginx").chmod(0o755)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None
        assert "watching" in proc.stdout.readline()
        rng, now = random.Random(9), time.time()
        append(log, reader_lines(rng, now - 75, 60, 8))
        attackers = flood_addresses(10)
        append(log, flood_lines(rng, now - 15, 15, 100, attackers))
        first = _line_within(proc.stdout, 30)
        if not first:
            proc.kill()
        assert first.startswith("ban 203.0.113.") and " until " in first, first
        assert wait_until(lambda: "203.0.113.1 1;" in (tmp_path / "banned.conf").read_text(), within_s=10)
        proc.send_signal(signal.SIGINT)
        rest, errors = proc.communicate(timeout=20)
    assert proc.returncode == 0, errors
    assert "decisions: 10 ban" in rest.splitlines()[-1]
    assert (tmp_path / "state" / "floodwall-state.db").exists()


def test_the_decision_endpoint_answers_from_the_watchers_memory(tmp_path: Path) -> None:
    """`watch --decision-endpoint`: the watcher keeps a DecisionCache current like any enforcer, and nginx's
    auth_request subrequests are answered from it: a flood's addresses 403, a reader 204."""
    log = tmp_path / "access.log"
    log.touch()
    cache = DecisionCache()
    challenger = Challenger(ChallengeSettings(), "contact", b"k" * 32)
    endpoint = DecisionEndpoint(f"127.0.0.1:{free_port()}", cache, challenger)
    endpoint.start()
    events: list[WatchEvent] = []
    watcher = Watcher(
        log, site="example-news", store=store_from_url("memory://"), enforcers=[cache], on_event=events.append
    )
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()

    def asked(address: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=5)
        connection.request("GET", "/.well-known/floodwall/auth", headers={"X-Real-IP": address, "X-Original-URI": "/"})
        status = connection.getresponse().status
        connection.close()
        return status

    try:
        assert wait_until(lambda: any(e.kind == "restored" for e in events), within_s=10)
        rng, now = random.Random(5), time.time()
        append(log, reader_lines(rng, now - 75, 60, 8))
        attackers = flood_addresses(20)
        assert asked(attackers[0]) == 204
        flood = flood_lines(rng, now - 15, 15, 150, attackers) + reader_lines(rng, now - 15, 15, 8)
        append(log, sorted(flood, key=lambda line: line.split("[", 1)[1][:20]))
        assert wait_until(lambda: all(asked(a) == 403 for a in attackers), within_s=20, every_s=0.1)
        assert asked(READER) == 204 and asked("10.0.0.5") == 204
    finally:
        watcher.stop()
        thread.join(timeout=10)
        endpoint.stop()


def test_the_watch_section_of_the_config_is_used_and_options_override_it(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.touch()
    configured, overriding = free_port(), free_port()
    config = tmp_path / "floodwall.toml"
    config.write_text(
        f"""
[watch]
store = "sqlite:///{tmp_path / "configured.db"}"
enforce = ["nginx-map:{tmp_path / "banned.conf"}"]
reload_min_interval_s = 1.0
decision_endpoint = true
decision_endpoint_listen = "127.0.0.1:{configured}"
"""
    )
    command = [sys.executable, "-m", "floodwall", "watch", str(log), "--site", "example-news", "--config", str(config)]
    command += ["--decision-endpoint", f"127.0.0.1:{overriding}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    (tmp_path / "nginx").write_text("#!/bin/sh\nexit 0\n")  # a stand-in for the host's nginx -t and reload
    (tmp_path / "nginx").chmod(0o755)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None
        assert "configured.db" in proc.stdout.readline()
        assert f"auth_request on 127.0.0.1:{overriding}" in proc.stdout.readline()
        connection = http.client.HTTPConnection("127.0.0.1", overriding, timeout=5)
        connection.request("GET", "/.well-known/floodwall/auth", headers={"X-Real-IP": READER})
        assert connection.getresponse().status == 204
        connection.close()
        rng, now = random.Random(9), time.time()
        append(log, reader_lines(rng, now - 75, 60, 8))
        append(log, flood_lines(rng, now - 15, 15, 100, flood_addresses(10)))
        banned = tmp_path / "banned.conf"
        assert wait_until(lambda: banned.exists() and "203.0.113.1 1;" in banned.read_text(), within_s=20)
        proc.send_signal(signal.SIGINT)
        _, errors = proc.communicate(timeout=20)
    assert proc.returncode == 0, errors
    assert (tmp_path / "configured.db").exists()


def test_a_decision_endpoint_off_loopback_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "floodwall.toml"
    config.write_text('[watch]\ndecision_endpoint_listen = "0.0.0.0:9181"\n')
    command = [sys.executable, "-m", "floodwall", "watch", str(tmp_path / "access.log"), "--site", "x"]
    done = subprocess.run([*command, "--config", str(config)], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "watch.decision_endpoint_listen" in done.stderr, done.stderr
    done = subprocess.run(
        [*command, "--decision-endpoint", "192.0.2.1:9181"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "--decision-endpoint" in done.stderr and "loopback" in done.stderr, done.stderr
