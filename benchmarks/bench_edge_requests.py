"""Whole requests through one edge worker's Python code, without sockets: what the edge's own code costs per request.

    .venv/bin/python benchmarks/bench_edge_requests.py --baseline-src /tmp/old/src            # CPU µs, medians
    .venv/bin/python benchmarks/bench_edge_requests.py --baseline-src /tmp/old/src --callgrind # + instructions

A worker is built as `floodwall edge` builds it (`build_server`: the pipeline, the cache, an in-memory decision
list, the access log on /dev/shm, the live recorder, the metrics), and its `EdgeConnection`s are fed requests through
an in-memory transport that only counts bytes. What the kernel costs (the loopback send, accept, the handshake) is
left out on purpose: it is the same for any server and makes wall-clock figures noisy on a shared machine, while
this is the part the edge's code decides. `bench_edge.py` measures the whole.

Cases (the request is a browser's: eight header fields):
- `hit`: a cache hit on a kept-alive connection;
- `pass`: a logged-in reader's request (its cookie keeps it out of the cache) relayed to an origin in memory over
  kept-alive connections, 64 requests in flight at once (the event loop turns between them, as under wrk -c64);
- `banned`: a banned address opens a connection and sends one request (the old code parses it and answers from the
  pipeline; the new one refuses at accept);
- `banned-kept-alive`: a banned address's request on a connection it opened before its ban (the pipeline's 403).

Only the requests are timed (connections opened for the last case are set up outside the clock).

Each code version (`--baseline-src` for the old one, beside the installed one) runs in its own child process,
alternating, `--rounds` times; the table gives the median CPU (process time) per request. With `--callgrind`, each
case also runs under `valgrind --tool=callgrind` at two request counts, and the difference in instructions divided by
the difference in requests is the instructions per request (start-up cancels out): a count, not a time, so the
machine's load does not move it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CASES = ("hit", "pass", "banned", "banned-kept-alive")
#: The origin's answer in the `pass` case: what the benchmarks' static nginx origin sends for a no-store page.
ORIGIN_ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 12:00:00 GMT\r\n"
    b"Content-Type: text/html\r\nContent-Length: 7519\r\nLast-Modified: Thu, 26 Nov 2026 11:00:00 GMT\r\n"
    b'Connection: keep-alive\r\nETag: "6b0826db-1d5f"\r\nCache-Control: no-store\r\nAccept-Ranges: bytes\r\n\r\n'
    + b"x"
    * 7519
)
#: Client connections (and origin connections) in flight at once in the `pass` case, as wrk -c64 keeps them.
PASS_CONNECTIONS = 64
REQUEST = (
    b"GET /news/story-1.html HTTP/1.1\r\nHost: news.example\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
    b"Referer: https://news.example/\r\nConnection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"
)


class _Transport:
    """An in-memory transport: counts what is written, remembers closing."""

    def __init__(self, peer: str) -> None:
        self.peer = (peer, 40000)
        self.written = 0
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def write_eof(self) -> None:
        self.closing = True

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _OriginTransport(_Transport):
    """The origin's side in memory: each request written is answered with `ORIGIN_ANSWER` on the next turn of the
    event loop (as a reply from a socket would come)."""

    def __init__(self, conn: Any) -> None:
        import asyncio

        super().__init__("")
        self.conn = conn
        self.loop = asyncio.get_running_loop()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes) -> None:
        self.loop.call_soon(self.conn.data_received, ORIGIN_ANSWER)


def _child(case: str, requests: int, rounds: int, folder: str) -> None:
    """Runs in the child: build a worker, run `rounds` x `requests` of `case`, print CPU seconds per request."""
    import time
    from datetime import UTC, datetime

    import uvloop

    from floodwall.config import Settings
    from floodwall.edge.accesslog import AccessLog
    from floodwall.edge.connection import EdgeConnection
    from floodwall.edge.job import build_server
    from floodwall.edge.live import LiveRecorder
    from floodwall.edge.metrics import Metrics
    from floodwall.store.cache import DecisionCache
    from floodwall.testing import make_decision

    settings = Settings.model_validate(
        {
            "site": {"name": "bench", "contact": "Write to help@news.example."},
            "edge": {
                "origin": "http://127.0.0.1:9",
                "listen": "127.0.0.1:0",
                "limits": {"client_rps": 1e9, "client_burst": 1e9, "prefix_rps": 1e9, "prefix_burst": 1e9},
            },
        }
    )
    decisions = DecisionCache()
    decisions.apply([make_decision("203.0.113.7", datetime.now(UTC), ttl_s=3600)])

    async def main() -> list[float]:
        recorder = LiveRecorder(capacity=10 * requests)
        worker = build_server(
            settings,
            decisions=decisions,
            access_log=AccessLog(Path(folder) / "access.log"),
            metrics=Metrics(),
            recorder=recorder,
        )
        server = worker.server
        cache = server.pipeline.forwarder.cache
        assert cache is not None
        fields = [tuple(line.split(b": ", 1)) for line in REQUEST.split(b"\r\n")[1:] if b": " in line]
        headers = [(name.lower(), value) for name, value in fields]
        key = cache.key("GET", "news.example", "/news/story-1.html", headers)
        assert key is not None
        body = b"<!doctype html><title>story</title>" + b"x" * 8000
        cache.put(key, 200, [(b"content-type", b"text/html"), (b"cache-control", b"max-age=3600")], body)

        def run_hit() -> float:
            transport = _Transport("192.0.2.10")
            conn = EdgeConnection(server)
            conn.connection_made(transport)  # type: ignore[arg-type]
            started = time.process_time()
            for _ in range(requests):
                conn.data_received(REQUEST)
            spent = time.process_time() - started
            assert transport.written > requests * 8000, "not served from the cache"
            conn.connection_lost(None)
            return spent

        def run_banned() -> float:
            started = time.process_time()
            for _ in range(requests):
                transport = _Transport("203.0.113.7")
                conn = EdgeConnection(server)
                conn.connection_made(transport)  # type: ignore[arg-type]
                conn.data_received(REQUEST)
                conn.eof_received()
                conn.connection_lost(None)
                assert transport.written, "nothing answered"
            return time.process_time() - started

        def run_banned_kept_alive() -> float:
            # Connections opened before the ban: their requests meet the pipeline's decision part.
            decisions.revoke(["203.0.113.8"])
            opened = []
            for _ in range(requests):
                transport = _Transport("203.0.113.8")
                conn = EdgeConnection(server)
                conn.connection_made(transport)  # type: ignore[arg-type]
                opened.append((conn, transport))
            decisions.apply([make_decision("203.0.113.8", datetime.now(UTC), ttl_s=3600)])
            started = time.process_time()
            for conn, _ in opened:
                conn.data_received(REQUEST)
                conn.connection_lost(None)
            spent = time.process_time() - started
            assert all(transport.written for _, transport in opened), "nothing answered"
            return spent

        async def run_pass() -> float:
            # A logged-in reader's requests (never cached) relayed to an in-memory origin over kept-alive
            # connections, PASS_CONNECTIONS at a time: the edge's whole pass-through path but the sockets.
            import asyncio

            from floodwall.edge.upstream import _Connection

            pool = server.pipeline.forwarder.pool
            for origin in pool._idle:
                origin.close()
            pool._idle.clear()
            for _ in range(PASS_CONNECTIONS):
                origin = _Connection()
                origin.connection_made(_OriginTransport(origin))  # type: ignore[arg-type]
                pool._idle.append(origin)
            clients = []
            for k in range(PASS_CONNECTIONS):
                transport = _Transport(f"192.0.2.{10 + k}")
                conn = EdgeConnection(server)
                conn.connection_made(transport)  # type: ignore[arg-type]
                clients.append(conn)
            private = REQUEST.replace(b"\r\n\r\n", b"\r\nCookie: session=1\r\n\r\n")
            recorder.take()
            answered = 0
            started = time.process_time()
            for _ in range(requests // PASS_CONNECTIONS):
                for conn in clients:
                    conn.data_received(private)
                answered += PASS_CONNECTIONS
                while len(recorder) < answered:
                    await asyncio.sleep(0)
            spent = time.process_time() - started
            for conn in clients:
                conn.connection_lost(None)
            return spent * requests / (requests // PASS_CONNECTIONS * PASS_CONNECTIONS)

        if case == "pass":
            await run_pass()  # warm-up
            return [await run_pass() / requests for _ in range(rounds)]

        run = {"hit": run_hit, "banned": run_banned, "banned-kept-alive": run_banned_kept_alive}[case]
        run()  # warm-up
        # The collector as a serving worker sets it (older code left Python's defaults).
        try:
            from floodwall.edge.workers import settle_garbage_collector
        except ImportError:
            pass
        else:
            settle_garbage_collector()
        per_request = []
        for _ in range(rounds):
            recorder.take()
            per_request.append(run() / requests)
        return per_request

    print("RESULT " + json.dumps(uvloop.run(main())))


def _run_child(src: Path | None, case: str, requests: int, rounds: int, folder: str, wrap: list[str]) -> list[float]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    command = [*wrap, sys.executable, __file__, "--child", case, "--requests", str(requests), "--rounds", str(rounds)]
    command += ["--folder", folder]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=3600)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"{case} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result: list[float] = json.loads(line.removeprefix("RESULT "))
    return result


def _instructions(src: Path | None, case: str, requests: int, folder: str) -> int:
    out = Path(folder) / f"callgrind.{case}.{requests}.{'base' if src else 'new'}"
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    _run_child(src, case, requests, 1, folder, wrap)
    summary = next(ln for ln in out.read_text().splitlines() if ln.startswith(("summary:", "totals:")))
    return int(re.findall(r"\d+", summary)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-src", type=Path, help="a folder holding the old `floodwall` package")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--requests", type=int, default=20_000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="child processes per version (alternating)")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions per request (slow)")
    parser.add_argument("--callgrind-requests", type=int, nargs=2, default=(500, 2500))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.requests, args.rounds, args.folder)
        return
    versions: list[tuple[str, Path | None]] = [("new", None)]
    if args.baseline_src is not None:
        versions.insert(0, ("base", args.baseline_src))
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="floodwall-bench-requests-", dir="/dev/shm") as folder:
        for case in args.cases:
            samples: dict[str, list[float]] = {name: [] for name, _ in versions}
            for repeat in range(args.repeat):
                for name, src in versions if repeat % 2 == 0 else versions[::-1]:
                    samples[name] += _run_child(src, case, args.requests, args.rounds, folder, [])
            for name, src in versions:
                entry = results.setdefault(case, {}).setdefault(name, {})
                entry["cpu_us"] = 1e6 * statistics.median(samples[name])
                if args.callgrind:
                    low, high = args.callgrind_requests
                    counts = [_instructions(src, case, n, folder) for n in (low, high)]
                    entry["instructions"] = (counts[1] - counts[0]) / (high - low)
    print(f"{'case':20} {'version':8} {'CPU µs/request':>15} {'instructions/request':>21} {'/ base':>7}")
    for case, by_version in results.items():
        base = by_version.get("base")
        for name, entry in by_version.items():
            instructions = entry.get("instructions")
            shown = f"{instructions:,.0f}" if instructions is not None else "-"
            against = f"{entry['cpu_us'] / base['cpu_us']:.2f}" if base is not None and name != "base" else "1.00"
            print(f"{case:20} {name:8} {entry['cpu_us']:15.2f} {shown:>21} {against:>7}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
