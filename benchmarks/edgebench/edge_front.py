"""`floodwall edge` as a child process: its config written from a mapping (validated by Floodwall's own loader
first, so a key the edge does not know fails here, naming it), started on free loopback ports, ready when its admin
health answers, stopped with SIGTERM (then SIGKILL) to its own process group.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edgebench.nginx_front import free_port, wait_listening

HEALTH = "/.well-known/floodwall/health"


def edge_command() -> list[str]:
    return [sys.executable, "-m", "floodwall", "edge"]


def edge_missing() -> str | None:
    """Why the edge cannot be benchmarked here (None when `floodwall edge --help` works)."""
    done = subprocess.run([*edge_command(), "--help"], capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"`floodwall edge` is not available yet ({last})"
    return None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A nested mapping of scalars and lists as TOML tables (enough for Floodwall's config)."""
    scalars = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    out = ([f"[{prefix}]"] if prefix and scalars else []) + scalars
    text = "\n".join(out) + ("\n\n" if out else "")
    for key, value in data.items():
        if isinstance(value, dict):
            text += to_toml(value, f"{prefix}.{key}" if prefix else key)
    return text


def edge_config(
    folder: Path, workers: int, *, open_limits: bool, query_keep: list[str], under_attack: bool = False
) -> dict[str, Any]:
    """The benchmark's edge config. `open_limits`: no per-client brakes (throughput from one wrk address, which a
    newsroom would list as its own network); otherwise the shipped defaults, as a newsroom would run them.
    `under_attack`: start with the switch on (every client without a solved challenge is challenged)."""
    edge: dict[str, Any] = {
        "workers": workers,
        "store": f"sqlite:///{folder}/state.db",
        "access_log": str(folder / "edge-access.log"),
        "cache": {"query_keep": query_keep},
        "under_attack": under_attack,
    }
    config: dict[str, Any] = {"site": {"name": "bench"}, "edge": edge}
    if open_limits:
        config["site"]["own_networks"] = ["127.0.0.1/32"]
        edge["limits"] = {"client_rps": 1e9, "client_burst": 1e9, "prefix_rps": 1e9, "prefix_burst": 1e9}
    return config


class Edge:
    """One `floodwall edge` in front of `origin_url`."""

    def __init__(self, folder: Path, origin_url: str, config: dict[str, Any], *, src: Path | None = None) -> None:
        """`src`: a folder holding another `floodwall` package (an older checkout's `src/`) to run instead of the
        installed one, so old and new code are measured side by side in one command."""
        from floodwall.config import settings_from_mapping

        settings_from_mapping(config, origin="bench_edge's edge config")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.config_path = folder / "edge.toml"
        self.config_path.write_text(to_toml(config))
        self.port = free_port()
        self.admin_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.origin_url = origin_url
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "edge.stderr"
        self.src = src

    def start(self, timeout_s: float = 90) -> None:
        command = [
            *edge_command(),
            "--origin",
            self.origin_url,
            "--listen",
            f"127.0.0.1:{self.port}",
            "--admin",
            f"127.0.0.1:{self.admin_port}",
            "--config",
            str(self.config_path),
        ]
        env = dict(os.environ)
        if self.src is not None:
            env["PYTHONPATH"] = str(self.src)
        with self.log.open("wb") as err:
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, env=env
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"floodwall edge exited with {self.process.returncode}: {self.stderr_tail()}")
            health = self.admin_get(HEALTH)
            if health is not None:
                try:
                    wait_listening(self.port, max(1.0, deadline - time.monotonic()), "floodwall edge")
                except RuntimeError as error:
                    self.stop()
                    tail = self.stderr_tail()
                    raise RuntimeError(f"{error}; health {health.decode(errors='replace')}: {tail}") from None
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"floodwall edge was not healthy within {timeout_s:.0f} s: {self.stderr_tail()}")

    @property
    def pid(self) -> int:
        """The supervisor's process id (its workers are its children)."""
        assert self.process is not None
        return self.process.pid

    def stderr_tail(self) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-5:])
        return ""

    def admin_get(self, path: str) -> bytes | None:
        """The admin listener's answer to GET `path`, or None when it does not answer 200."""
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=2) as response:
                return bytes(response.read()) if response.status == 200 else None
        except (OSError, urllib.error.URLError):
            return None

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> Edge:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DecisionWatch:
    """Polls the edge's admin decision list (`GET /.well-known/floodwall/decisions`) in a thread, and notes when
    each watched address was first covered by a ban or challenge (its own address, or a network holding it).

    with DecisionWatch(edge, {"flood": flood_addresses, "readers": reader_addresses}, zero=flood_at) as watch:
        ...
    watch.first["flood"]  # address -> seconds after `zero` when first seen covered
    """

    def __init__(self, edge: Edge, groups: dict[str, list[str]], zero: float, interval_s: float = 0.5) -> None:
        self.edge = edge
        self.groups = {name: [ipaddress.ip_address(a) for a in addresses] for name, addresses in groups.items()}
        self.zero = zero
        self.interval_s = interval_s
        self.first: dict[str, dict[str, float]] = {name: {} for name in groups}
        self.polls = 0
        self.failed_polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _covered(self, targets: list[str]) -> tuple[set[Any], list[Any]]:
        exact, networks = set(), []
        for target in targets:
            with contextlib.suppress(ValueError):
                if "/" in target:
                    networks.append(ipaddress.ip_network(target, strict=False))
                else:
                    exact.add(ipaddress.ip_address(target))
        return exact, networks

    def poll(self) -> None:
        raw = self.edge.admin_get("/.well-known/floodwall/decisions")
        now = time.time() - self.zero
        self.polls += 1
        if raw is None:
            self.failed_polls += 1
            return
        listed = json.loads(raw)
        exact, networks = self._covered([d["target"] for d in listed if d.get("action") in ("ban", "challenge")])
        # Networks by prefix length, so that membership is one set lookup per length and address.
        by_length: dict[int, set[Any]] = {}
        for network in networks:
            by_length.setdefault(network.prefixlen, set()).add(network)
        for name, addresses in self.groups.items():
            seen = self.first[name]
            for address in addresses:
                key = str(address)
                if key in seen:
                    continue
                if address in exact or any(
                    ipaddress.ip_network(f"{address}/{length}", strict=False) in nets
                    for length, nets in by_length.items()
                ):
                    seen[key] = now

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def __enter__(self) -> DecisionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.poll()
