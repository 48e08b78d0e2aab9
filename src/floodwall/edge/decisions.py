"""The edge's live detector: every worker's one-second batches to the engine, the policy, and the store.

It runs once, in the supervisor process (a thread: `LiveDetector.start()`), so it sees all workers' traffic. Each
step (once a second):

1. drain the batches the workers queued (`floodwall.edge.live`), and build one Request frame from them;
2. hold back the last `hold_back_s` seconds, so a worker whose batch arrives a little late is still fed in time
   order, and feed the rest to the same `Engine` that `analyze` and `watch` use (live mode). Rows that come later
   still are fed out of order with the next step and counted (`rows_late` in the admin health's `live` block): a
   few when a worker's once-a-second chore runs a little late, many when a worker or the pipes fall behind, as
   when batches waited seconds in the pipes and flood addresses went undecided (issue 7);
3. turn findings into decisions with the same `Policy` as `watch` (`floodwall.decide.apply.new_decisions`):
   challenge before ban, TTLs growing on repeat, allowlists and verified crawlers exempt;
4. write them to the store. Every worker's `DecisionCache` follows the store through a `CacheSync`, so a ban
   reaches every worker, and through Redis every node.

When the store is unreachable (STYLE.md item 7): the edge keeps enforcing what its caches hold (`CacheSync`);
the detector goes on detecting, keeps the decisions it could not write (at most `max_unsent`, the oldest dropped
and counted) and writes them once the store answers again, and counts a repeat offender's earlier decisions as
none (shorter TTLs rather than no decision). Findings are never lost silently: each failure is logged with its
cause and counted in the metrics. A bug in a step is logged and the next step runs: detection must not die.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import polars as pl

from floodwall.config import Settings
from floodwall.decide import Allowlist, Policy, PolicySettings
from floodwall.decide.apply import new_decisions
from floodwall.edge.live import RecordedBatch, batches_frame
from floodwall.edge.metrics import Metrics
from floodwall.errors import ServiceError
from floodwall.model import Action, Decision, empty_requests
from floodwall.store.cache import DecisionCache
from floodwall.types import Clock, Store, SystemClock

if TYPE_CHECKING:
    from floodwall.detect.engine import Engine

__all__ = ["BatchSource", "LiveDetector"]

log = logging.getLogger(__name__)

_PRIOR_DAYS = 30  # as `watch`: earlier bans within this many days lengthen a repeat offender's TTL


class BatchSource(Protocol):
    """Where the detector takes batches from: a `multiprocessing.Queue` or a `queue.Queue`."""

    def get_nowait(self) -> RecordedBatch: ...


class LiveDetector:
    """See the module docstring. `step()` is one second's work; `start()` runs it on a thread once a second."""

    def __init__(
        self,
        site: str,
        store: Store,
        *,
        settings: Settings | None = None,
        policy: PolicySettings | None = None,
        cache: DecisionCache | None = None,
        batches: BatchSource | None = None,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        hold_back_s: float = 1.0,
        max_unsent: int = 100_000,
        on_decisions: Callable[[list[Decision]], None] | None = None,
    ) -> None:
        self.site = site
        self.store = store
        self.settings = settings or Settings()
        self.clock: Clock = clock or SystemClock()
        #: What is in force: the supervisor's cache, which a `CacheSync` keeps following the store.
        self.cache = cache if cache is not None else DecisionCache(self.clock)
        self.batches = batches
        self.metrics = metrics
        self.hold_back = timedelta(seconds=hold_back_s)
        self.max_unsent = max_unsent
        self.on_decisions = on_decisions
        # Imported here: a worker process that unpickles its handle from `control` must not pay for scikit-learn.
        from floodwall.detect.engine import Engine

        self.engine: Engine = Engine(site, self.settings.detect, live=True, history=False)
        self.policy = Policy(
            settings=policy or PolicySettings(),
            allowlist=Allowlist(own_networks=tuple(self.settings.site.own_networks)),
            prior=self._prior,
        )
        self.rows_fed = 0
        self.rows_late = 0  # fed after a step had already fed rows newer than them
        self.steps = 0
        self.decided = 0
        self.unsent_dropped = 0
        self._waiting: list[RecordedBatch] = []
        self._later = empty_requests()  # rows held back for the next step
        self._fed_until: datetime | None = None  # rows older than this were due in an earlier step
        self._unsent: list[Decision] = []
        self._store_down = False
        self._last_step: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one step ---------------------------------------------------------------------------------------------

    def add(self, batch: RecordedBatch) -> None:
        """Take a batch directly (one process, or tests); workers in other processes use the queue."""
        self._waiting.append(batch)

    def status(self) -> dict[str, object]:
        """For the admin listener's health: is detection keeping up (`last_step_s_ago`), what waits to be written."""
        ago = time.monotonic() - self._last_step if self._last_step is not None else None
        return {
            "steps": self.steps,
            "rows_fed": self.rows_fed,
            "rows_late": self.rows_late,
            "decisions_made": self.decided,
            "decisions_unsent": len(self._unsent),
            "last_step_s_ago": round(ago, 3) if ago is not None else None,
        }

    def step(self) -> list[Decision]:
        """Detect on what arrived, decide, store; returns the decisions written to the store in this step."""
        self.steps += 1
        self._last_step = time.monotonic()
        self._drain()
        now = self.clock()
        waiting, self._waiting = self._waiting, []
        frame = batches_frame(waiting, self.site)
        if self._later.height:
            frame = pl.concat([self._later, frame]).sort("ts", maintain_order=True)
        cutoff = now - self.hold_back
        ready = frame.filter(pl.col("ts") < cutoff)
        self._later = frame.filter(pl.col("ts") >= cutoff)
        self._count_late(ready, cutoff)
        fresh: list[Decision] = []
        if self._store_down:
            self._probe()
        if ready.height:
            self.rows_fed += ready.height
            findings = self.engine.feed(ready)
            fresh = new_decisions(self.policy, ready, findings, now, site=self.site, held=self._held)
        if fresh:
            self.cache.apply(fresh)  # held from now on, whether or not the store takes them at once
        stored = self._write([*self._unsent, *fresh])
        if self.metrics is not None:
            self.metrics.set_decisions_active(len(self.cache))
        return stored

    def _count_late(self, ready: pl.DataFrame, cutoff: datetime) -> None:
        """Count the rows older than what an earlier step already fed (they arrived after their step)."""
        fed_until = self._fed_until
        if fed_until is None or cutoff > fed_until:
            self._fed_until = cutoff
        if fed_until is None or ready.height == 0:
            return
        self.rows_late += ready.filter(pl.col("ts") < fed_until).height

    def _drain(self) -> None:
        if self.batches is None:
            return
        while True:
            try:
                self._waiting.append(self.batches.get_nowait())
            except queue.Empty:
                return

    def _held(self, target: str) -> Action | None:
        return self.cache.lookup(target)

    def _write(self, decisions: list[Decision]) -> list[Decision]:
        if not decisions:
            return []
        try:
            stored = self.store.put(decisions)
        except ServiceError as error:
            self._store_failed(error)
            overflow = len(decisions) - self.max_unsent
            if overflow > 0:
                self.unsent_dropped += overflow
                log.error("store unreachable: %d undelivered decisions dropped (oldest first)", overflow)
                decisions = decisions[overflow:]
            self._unsent = decisions
            return []
        self._store_down = False
        self._unsent = []
        self.decided += len(stored)
        if self.metrics is not None:
            self.metrics.decisions_made(len(stored))
        if self.on_decisions is not None:
            self.on_decisions(stored)
        return stored

    def _probe(self) -> None:
        """One cheap call per step while the store is away, so repeat offenders' TTLs count again once it is back."""
        try:
            self.store.epoch()
        except ServiceError:
            return
        self._store_down = False
        log.warning("store %s reachable again", self.store.url)

    def _prior(self, target: str) -> int:
        if self._store_down:  # no call per target to a store known to be away (`_probe` once a step)
            return 0
        try:
            since = self.clock() - timedelta(days=_PRIOR_DAYS)
            return self.store.times_decided(target, since=since, action=Action.BAN)
        except ServiceError as error:
            self._store_failed(error)
            return 0

    def _store_failed(self, error: ServiceError) -> None:
        if self.metrics is not None:
            self.metrics.store_error()
        if not self._store_down:
            self._store_down = True
            log.warning(
                "store %s unreachable: detection goes on, decisions are kept and written when it is back: %s",
                self.store.url,
                error,
            )

    # -- the thread -------------------------------------------------------------------------------------------

    def start(self, interval_s: float = 1.0) -> None:
        """Run `step()` every `interval_s` seconds on a daemon thread until `stop()`."""
        self._thread = threading.Thread(target=self._run, args=(interval_s,), name="floodwall-live", daemon=True)
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.step()
            except Exception:  # a bug, not an outage: logged with its cause; detection goes on
                log.exception("live detection step failed; next step in %.1f s", interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
