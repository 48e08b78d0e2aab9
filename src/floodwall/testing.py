"""Helpers for tests: a clock that moves only when told, a decision factory, waiting with a deadline.

Others add factories here (requests, frames), in the manner of mitmproxy's `mitmproxy/test/tflow.py`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import polars as pl

from floodwall.model import REQUEST_SCHEMA, Action, Decision

if TYPE_CHECKING:
    from floodwall.edge.live import LiveRecorder

__all__ = ["FakeClock", "make_decision", "record_reader_second", "requests_frame", "wait_until"]

#: A news site's readers, as the edge's live tests and benchmarks record them.
READER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"
NEWS_PAGES = tuple(f"/2024/11/04/story-number-{k}/" for k in range(40))
NEWS_ASSETS = ("/static/style.css", "/static/app.js", "/static/logo.png")


def record_reader_second(rng: random.Random, recorder: LiveRecorder, at0: float, views: int = 8) -> None:
    """One second of readers from 300 addresses (epoch `at0`): `views` page views with a Pareto popularity, each
    followed by the page's assets."""
    for _ in range(views):
        at = at0 + rng.random() * 0.7
        who = rng.randrange(300)
        client = f"10.0.{who // 250}.{who % 250 + 1}"
        page = NEWS_PAGES[min(int(rng.paretovariate(1.2)) - 1, len(NEWS_PAGES) - 1)]
        recorder.record(
            at, client, "GET", page, None, "HTTP/1.1", 200, 5120, "https://example-news.test/", READER_AGENT
        )
        for asset in NEWS_ASSETS:
            recorder.record(at + 0.1, client, "GET", asset, None, "HTTP/1.1", 200, 900, page, READER_AGENT)


class FakeClock:
    """A `floodwall.types.Clock` that stands still until `advance` or `set` moves it. Safe to share across threads."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start if start is not None else datetime(2024, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward by `seconds` and return the new time."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to `when` (an aware datetime; backwards is allowed, for tests of clock steps)."""
        if when.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        with self._lock:
            self._now = when.astimezone(UTC)

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"


def make_decision(
    target: str,
    now: datetime,
    ttl_s: float = 600,
    action: Action = Action.BAN,
    origin: str = "engine",
    reasons: tuple[str, ...] = ("rate 40/s over 60 s",),
) -> Decision:
    """A decision on `target` made at `now`, lasting `ttl_s` seconds."""
    return Decision(
        target=target,
        action=action,
        created=now,
        expires=now + timedelta(seconds=ttl_s),
        reasons=reasons,
        site="example-news",
        origin=origin,
        evidence=(("access.log", 12),),
    )


def wait_until(check: Callable[[], bool], within_s: float = 2.0, every_s: float = 0.005) -> bool:
    """Polls `check` until it holds (True) or `within_s` seconds pass (the result of a last try)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every_s)
    return check()


#: What `requests_frame` fills in for a column a row does not give.
REQUEST_DEFAULTS: Mapping[str, object] = {
    "ts": datetime(2024, 11, 4, 8, 0, tzinfo=UTC),
    "client": "192.0.2.10",
    "method": "GET",
    "path": "/",
    "query": None,
    "protocol": "HTTP/1.1",
    "status": 200,
    "bytes": 5120,
    "referer": None,
    "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
    "site": "example-news",
    "source": "test.log",
}


def requests_frame(rows: Sequence[Mapping[str, object]] = (), **defaults: object) -> pl.DataFrame:
    """A Request frame from `rows` (dicts of columns), each missing column from `defaults` then `REQUEST_DEFAULTS`.

    `client_net` is derived from `client` (its /24) and `line` numbers the rows from 1 unless given; the result is
    sorted by `ts`, as every source hands frames on.
    """
    base = {**REQUEST_DEFAULTS, **defaults}
    filled = []
    for number, row in enumerate(rows, start=1):
        record = {column: row.get(column, base.get(column)) for column in REQUEST_SCHEMA}
        if record["client_net"] is None and isinstance(record["client"], str) and "." in record["client"]:
            record["client_net"] = record["client"].rsplit(".", 1)[0] + ".0/24"
        record["line"] = row.get("line", number)
        filled.append(record)
    return pl.DataFrame(filled, schema=dict(REQUEST_SCHEMA), orient="row").sort("ts", maintain_order=True)
