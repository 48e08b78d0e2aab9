"""`floodwall edge` as an operator runs it: worker processes on one port, graceful restart and stop, its access log.

One real run of the command (a subprocess) in front of a loopback origin: two workers answer, SIGHUP replaces them
while a client keeps asking (no request may fail), SIGTERM stops everything with status 0, and the access log the
workers wrote is read by `floodwall analyze`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from edge_run import Origin

from floodwall.analyze import analyze
from floodwall.config import Settings
from floodwall.testing import wait_until

_STARTUP_S = 300.0  # two spawned workers import the detection stack; the test machine is shared (generous)


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found |= {int(child) for child in text}
    return found


def _get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.status, response.read()


class _Lines:
    """The command's stdout, line by line, read on a thread."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line)

    def wait_for(self, pattern: str, within_s: float) -> re.Match[str]:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            for line in self.lines:
                found = re.search(pattern, line)
                if found:
                    return found
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in {self.lines}")


@pytest.fixture
def running_edge(origin: Origin, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], _Lines, Path]]:
    config = tmp_path / "floodwall.toml"
    config.write_text(
        '[site]\ncontact = "Write to help@example-news.org"\n'
        "[detect]\nsignatures = false\n"
        '[edge]\nworkers = 2\n[edge.admin]\nlisten = "127.0.0.1:0"\n[edge.live]\nenabled = false\n'
    )
    log_path = tmp_path / "logs" / "access.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "floodwall",
            "edge",
            "--origin",
            origin.url,
            "--listen",
            "127.0.0.1:0",
            "--config",
            str(config),
            "--access-log",
            str(log_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
    )
    lines = _Lines(process.stdout)
    try:
        yield process, lines, log_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_workers_share_the_port_restart_gracefully_and_stop(
    running_edge: tuple[subprocess.Popen[str], _Lines, Path], tmp_path: Path
) -> None:
    process, lines, log_path = running_edge
    started = lines.wait_for(r"2 workers on 127\.0\.0\.1:(\d+); admin on 127\.0\.0\.1:(\d+)", _STARTUP_S)
    port, admin_port = int(started.group(1)), int(started.group(2))
    assert [_get(port, f"/page/{k}")[0] for k in range(10)] == [200] * 10
    health = json.loads(_get(admin_port, "/.well-known/floodwall/health")[1])
    assert health

    workers_before = _children(process.pid)
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def keep_asking() -> None:
        nonlocal answered
        while not stop.is_set():
            try:
                status, body = _get(port, "/during-restart")
                if status != 200 or body != b"origin saw /during-restart":
                    failures.append(f"{status} {body[:80]!r}")
                answered += 1
            except OSError as exc:
                failures.append(repr(exc))

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        time.sleep(0.3)
        process.send_signal(signal.SIGHUP)
        lines.wait_for(r"edge restarted", _STARTUP_S)
        time.sleep(0.3)
    finally:
        stop.set()
        asker.join()
    assert failures == []
    assert answered > 0
    workers_after = _children(process.pid)
    # Two new workers, the two old ones gone (what remains is multiprocessing's resource tracker).
    assert len(workers_after - workers_before) == 2
    assert len(workers_before - workers_after) == 2

    # The access log is flushed while running (at least once a second): every answer so far, once.
    assert wait_until(lambda: log_path.exists() and len(log_path.read_text().splitlines()) == 10 + answered, within_s=5)

    # A worker killed outright is started again; the others go on answering meanwhile.
    victim = min(workers_after - workers_before)
    os.kill(victim, signal.SIGKILL)
    lines.wait_for(r"edge respawned: worker \d exited with code -9", _STARTUP_S)
    assert _get(port, "/while-one-is-down")[0] == 200
    assert wait_until(lambda: len(_children(process.pid) - workers_before - {victim}) == 2, within_s=10)
    answered += 1

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    lines.wait_for(r"edge stopped", 5)

    logged = log_path.read_text().splitlines()
    assert len(logged) == 10 + answered  # every answer logged once, old and new generation alike
    analyze([log_path], site="edge-run", out_dir=tmp_path / "out", settings=Settings())
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["inputs"][0]["lines"] == len(logged)
    assert report["inputs"][0]["bad_lines"] == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--origin", "ftp://origin", "--listen", "127.0.0.1:0"], "expected http://HOST[:PORT]"),
        (["--origin", "http://127.0.0.1:1", "--listen", "nonsense"], "edge.listen = 'nonsense'"),
        (["--listen", "127.0.0.1:0"], "the origin is required"),
    ],
)
def test_bad_options_exit_2_naming_what_is_wrong(arguments: list[str], message: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "floodwall", "edge", *arguments],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_workers_do_not_outlive_a_killed_supervisor(origin: Origin, tmp_path: Path) -> None:
    # Live detection on: each worker writes its rows to the detector's queue, which nobody reads once the
    # supervisor is gone; the workers must still exit.
    config = tmp_path / "floodwall.toml"
    config.write_text('[detect]\nsignatures = false\n[edge]\nworkers = 1\n[edge.admin]\nlisten = "127.0.0.1:0"\n')
    command = [sys.executable, "-m", "floodwall", "edge", "--origin", origin.url, "--listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*command, "--config", str(config), "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
    )
    lines = _Lines(process.stdout)
    try:
        port = int(lines.wait_for(r"1 workers on 127\.0\.0\.1:(\d+)", _STARTUP_S).group(1))
        for _ in range(50):
            assert _get(port, "/page")[0] == 200
        workers = _children(process.pid)
        assert workers
        process.kill()
        process.wait()
        assert wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), within_s=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
