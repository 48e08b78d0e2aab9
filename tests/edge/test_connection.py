"""A closed connection is freed at once, not left to the cyclic garbage collector.

Under a flood of short connections (a banned botnet reconnecting, 20-request bots moving on), each connection left
as cyclic garbage piles up until the collector runs, and its passes (a full one scans every object of the worker)
stall the event loop for every reader at once.
"""

from __future__ import annotations

import gc
from datetime import UTC, datetime

import uvloop
from edge_run import MemoryTransport, edge_settings

from floodwall.edge.connection import EdgeConnection
from floodwall.edge.job import build_server
from floodwall.store.cache import DecisionCache
from floodwall.testing import make_decision


def test_closed_connections_leave_no_cyclic_garbage_whether_refused_answered_or_broken() -> None:
    decisions = DecisionCache()
    decisions.apply([make_decision("203.0.113.7", datetime.now(UTC), ttl_s=3600)])
    worker = build_server(edge_settings("http://127.0.0.1:9"), decisions=decisions)
    garbage: dict[str, int] = {}

    async def main() -> None:
        cases = {
            "refused at accept": ("203.0.113.7", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            "answered (challenge route: no origin needed)": (
                "192.0.2.1",
                b"GET /.well-known/floodwall/challenge/verify HTTP/1.1\r\nHost: a\r\n\r\n",
            ),
            "malformed": ("192.0.2.2", b"\x00 no request\r\n\r\n"),
            "half a request": ("192.0.2.3", b"GET /slow HTTP/1.1\r\nHost: a\r\n"),
        }
        gc.collect()
        gc.disable()
        try:
            for name, (peer, data) in cases.items():
                for _ in range(50):
                    transport = MemoryTransport(peer)
                    conn = EdgeConnection(worker.server)
                    conn.connection_made(transport)  # type: ignore[arg-type]
                    conn.data_received(data)
                    conn.connection_lost(None)
                    assert transport.written or name == "half a request"
                    del conn, transport
                garbage[name] = gc.collect()
        finally:
            gc.enable()

    uvloop.run(main())
    assert garbage == dict.fromkeys(garbage, 0)
