"""The control side wired as `floodwall edge` runs it: a supervisor's store, detector and admin listener, and
workers that attach to it (one in this process, one in a forked process), over a real SQLite store."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from floodwall.config import Settings
from floodwall.edge.control import EdgeControl, WorkerHandle, default_store_url
from floodwall.edge.metrics import HIT, MISS
from floodwall.model import Action
from floodwall.testing import make_decision, wait_until

BASE = "/.well-known/floodwall/"


def settings_for(tmp_path: Path, **edge: object) -> Settings:
    data = {"store": f"sqlite:///{tmp_path / 'state.db'}?poll_interval=0.05", "admin": {"listen": "127.0.0.1:0"}}
    return Settings.model_validate({"site": {"name": "example-news"}, "edge": {**data, **edge}})


@pytest.fixture
def control(tmp_path: Path) -> Iterator[EdgeControl]:
    running = EdgeControl(
        settings_for(tmp_path), workers=2, state_dir=tmp_path, mp_context=multiprocessing.get_context("fork")
    )
    running.start()
    yield running
    running.close()


def admin_get(control: EdgeControl, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", control.admin.server.port, timeout=10)
    connection.request("GET", BASE + path)
    body = connection.getresponse().read()
    connection.close()
    return body


def record_rows(handle: WorkerHandle, rows: int) -> None:
    """What a worker does: attach, answer (and record) requests, run its once-a-second chores, close."""
    live = handle.attach()
    assert live.recorder is not None
    for k in range(rows):
        live.metrics.request(HIT, 0.001)
        live.recorder.record(time.time() - 5, f"192.0.2.{k}", "GET", "/", None, "HTTP/1.1", 200, 10, None, "ua")
    for chore in live.chores:
        chore()
    for close in live.closers:
        close()


def test_workers_feed_the_one_detector_and_their_counts_reach_the_admin_listener(control: EdgeControl) -> None:
    record_rows(control.worker_handle(0), 3)
    child = multiprocessing.get_context("fork").Process(target=record_rows, args=(control.worker_handle(1), 4))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert control.detector is not None
    assert wait_until(lambda: control.detector is not None and control.detector.rows_fed == 7, within_s=15.0)
    text = admin_get(control, "metrics").decode()
    assert 'floodwall_requests_total{outcome="hit"} 7\n' in text
    assert "floodwall_live_rows_total 7\n" in text


def test_a_stored_ban_reaches_a_worker_and_the_switch_reaches_it_too(control: EdgeControl) -> None:
    live = control.worker_handle(0).attach()
    try:
        control.store.put([make_decision("203.0.113.7", datetime.now(UTC))])
        assert wait_until(lambda: live.decisions.lookup("203.0.113.7") is Action.BAN, within_s=10.0)
        assert wait_until(lambda: control.cache.lookup("203.0.113.7") is Action.BAN, within_s=10.0)  # supervisor's
        health = json.loads(admin_get(control, "health"))
        assert health["workers"] == 2 and health["store_reachable"] and health["decisions_active"] == 1
        assert wait_until(lambda: json.loads(admin_get(control, "health"))["live"]["steps"] >= 1, within_s=10.0)
        assert not live.under_attack()
        connection = http.client.HTTPConnection("127.0.0.1", control.admin.server.port, timeout=10)
        connection.request("POST", BASE + "under-attack", body="on")
        assert connection.getresponse().status == 200
        connection.close()
        assert live.under_attack()
        live.metrics.request(MISS, 0.01)
        for chore in live.chores:
            chore()
        assert "floodwall_decisions_active 1\n" in admin_get(control, "metrics").decode()
    finally:
        for close in live.closers:
            close()


def test_with_live_detection_off_workers_record_nothing(tmp_path: Path) -> None:
    control = EdgeControl(settings_for(tmp_path, live={"enabled": False}), workers=1, state_dir=tmp_path)
    try:
        assert control.detector is None and control.batches is None
        live = control.worker_handle(0).attach()
        assert live.recorder is None
        for close in live.closers:
            close()
    finally:
        control.close()


def test_the_default_store_lives_beside_the_access_log(tmp_path: Path) -> None:
    beside = Settings.model_validate({"edge": {"access_log": str(tmp_path / "logs" / "edge.log")}})
    assert default_store_url(beside, tmp_path / "state") == f"sqlite:///{tmp_path / 'logs' / 'floodwall-state.db'}"
    assert default_store_url(Settings(), tmp_path) == f"sqlite:///{tmp_path / 'floodwall-state.db'}"


def test_successive_generations_of_a_worker_count_in_alternate_rows(control: EdgeControl) -> None:
    first, second, third = (control.worker_handle(0) for _ in range(3))
    assert first.slot != second.slot and third.slot == first.slot  # a draining worker and its successor never share
    old, new = first.attach(), second.attach()
    try:
        old.metrics.request(HIT, 0.001)
        old.metrics.origin_started()  # killed with a request in flight
        new.metrics.request(HIT, 0.001)
        text = admin_get(control, "metrics").decode()
        assert 'floodwall_requests_total{outcome="hit"} 2\n' in text  # both counted: totals never go back
        later = third.attach()  # the row comes round again: its gauges start afresh, its counters do not
        text = admin_get(control, "metrics").decode()
        assert "floodwall_origin_inflight 0\n" in text and 'floodwall_requests_total{outcome="hit"} 2\n' in text
        for close in later.closers:
            close()
    finally:
        for live in (old, new):
            for close in live.closers:
                close()
