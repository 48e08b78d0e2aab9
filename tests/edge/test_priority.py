"""Readers first when a worker is behind: new addresses wait, known ones and the outlet's networks do not."""

from __future__ import annotations

import socket

from edge_run import EdgeUnderTest, Origin, edge_settings

from floodwall.edge.priority import ReaderPriority


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_only_new_addresses_wait_and_only_while_the_worker_is_behind() -> None:
    clock = _Clock()
    priority = ReaderPriority(clock, spared=lambda peer: peer.startswith("10."), known_after_s=30, hold_s=1)
    priority.note("192.0.2.1")  # a reader since before the flood
    clock.now += 60
    priority.note("198.51.100.7")  # a flood address, new
    priority.note("10.0.0.5")  # the outlet's own network, new
    assert not priority.waits("198.51.100.7")  # not behind: nobody waits
    priority.tick(late_by_s=0.001)
    assert not priority.behind  # a timer a millisecond late is no backlog
    priority.tick(late_by_s=0.3)
    assert priority.behind
    assert priority.waits("198.51.100.7")
    assert priority.waits("203.0.113.9")  # never seen at all
    assert not priority.waits("192.0.2.1")
    assert not priority.waits("10.0.0.5")
    clock.now += 2  # caught up for longer than hold_s
    assert not priority.waits("198.51.100.7")
    clock.now += 30
    priority.tick(late_by_s=0.3)
    assert not priority.waits("198.51.100.7")  # known by now
    assert priority.deferred == 2


def test_memory_is_bounded_and_a_known_address_survives_one_rotation() -> None:
    clock = _Clock()
    priority = ReaderPriority(clock, known_after_s=10, max_remembered=3)
    priority.note("192.0.2.1")
    clock.now += 20
    for k in range(2, 5):
        priority.note(f"192.0.2.{k}")  # the fourth address rotates the generations
    priority.tick(late_by_s=1.0)
    assert not priority.waits("192.0.2.1")  # kept its first sighting across the rotation
    for k in range(5, 12):
        priority.note(f"192.0.2.{k}")
    assert len(priority._seen) + len(priority._older) <= 6


def _get(port: int, source: str, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_behind_worker_serves_new_addresses_later_but_serves_them(origin: Origin) -> None:
    settings = edge_settings(
        origin.url, site={"own_networks": ["127.9.2.0/24"]}, limits={"new_client_wait_s": 0.1, "known_after_s": 3600}
    )
    with EdgeUnderTest(settings) as edge:
        assert edge.worker is not None and edge.worker.server.priority is not None
        priority = edge.worker.server.priority
        priority.hold_s = 3600.0  # stays behind for the test (the loop's own timer would clear it)
        priority.tick(late_by_s=1.0)
        new = _get(edge.port, "127.9.1.1", "/new")
        own = _get(edge.port, "127.9.2.1", "/own")
        deferred = priority.deferred
    assert new.startswith(b"HTTP/1.1 200 ") and new.endswith(b"origin saw /new")
    assert own.startswith(b"HTTP/1.1 200 ") and own.endswith(b"origin saw /own")
    assert deferred == 1  # the new address waited; the outlet's own network did not
