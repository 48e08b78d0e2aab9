"""The edge's control side in one place: what the supervisor holds, and what each worker attaches to.

    control = EdgeControl(settings, workers=4, state_dir=state_dir)      # in the supervisor, before forking
    control.start()                                                      # cache sync, detector thread, admin
    handle = control.worker_handle(k)                                    # picklable; pass it to worker k
    ...                                                                  # in worker k:
    live = handle.attach()                                               # metrics row, recorder, decisions
    worker = build_server(settings, decisions=live.decisions, metrics=live.metrics,
                          recorder=live.recorder, under_attack=live.under_attack)
    worker.chores += live.chores; worker.closers += live.closers
    ...
    control.close()                                                      # in the supervisor, after the workers

Supervisor: the store (`EdgeSettings.store`, SQLite beside the access log by default), a `DecisionCache` that a
`CacheSync` keeps following it (for the detector's "already held" rule and the admin listener), the shared
`MetricsBoard` (two rows per worker plus its own), the `BatchHub` that reads every worker's one-second batches
(one pipe each, never blocking: `floodwall.edge.batches`), the `LiveDetector` thread and the admin listener.

Worker: its own store connection, `DecisionCache` and `CacheSync` (so a ban reaches it from the store, and a
worker keeps enforcing when the store goes away), its metrics row, its `LiveRecorder` and the once-a-second chores
that ship the recorder's rows and publish the count of decisions held.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from floodwall.config import Settings
from floodwall.edge.admin import AdminServer, AdminThread
from floodwall.edge.batches import BatchHub, BatchWriter
from floodwall.edge.decisions import LiveDetector
from floodwall.edge.kernel import KernelDrop, kernel_drop
from floodwall.edge.live import LiveRecorder, LiveShipper
from floodwall.edge.metrics import Metrics, MetricsBoard
from floodwall.model import Decision
from floodwall.store import CacheSync, DecisionCache, store_from_url
from floodwall.types import Clock, Store

__all__ = ["EdgeControl", "WorkerHandle", "WorkerLive", "default_store_url"]

log = logging.getLogger(__name__)


def default_store_url(settings: Settings, state_dir: Path) -> str:
    """The store the settings name, or SQLite beside the access log (or in `state_dir`), as `watch` does."""
    if settings.edge.store:
        return settings.edge.store
    folder = Path(settings.edge.access_log).parent if settings.edge.access_log else state_dir
    return f"sqlite:///{folder / 'floodwall-state.db'}"


@dataclass
class WorkerLive:
    """What a worker holds of the control side; hand the parts to `build_server`, add the chores and closers."""

    metrics: Metrics
    recorder: LiveRecorder | None
    decisions: DecisionCache
    under_attack: Callable[[], bool]
    chores: list[Callable[[], None]] = field(default_factory=list)
    closers: list[Callable[[], Any]] = field(default_factory=list)


@dataclass(frozen=True)
class WorkerHandle:
    """Everything worker `index` needs to attach, picklable (for a spawned worker as much as a forked one)."""

    index: int
    slot: int  # its row on the metrics board
    board_path: str
    slots: int
    store_url: str
    batches: BatchWriter | None  # this worker's pipe to the detector; None when live detection is off
    recorder_capacity: int

    def attach(self, clock: Clock | None = None) -> WorkerLive:
        """Open this worker's side. The store is opened here, in the worker: connections are not shared."""
        board = MetricsBoard.open(self.board_path, self.slots)
        metrics = board.slot(self.slot)
        metrics.reset_gauges()  # what a predecessor in this row left (a killed worker's requests in flight)
        store = store_from_url(self.store_url, clock=clock)
        decisions = DecisionCache(clock)
        sync = CacheSync(store, decisions)
        live = WorkerLive(metrics, None, decisions, lambda: board.under_attack)
        live.chores.append(lambda: metrics.set_decisions_active(len(decisions)))
        if self.batches is not None:
            live.recorder = LiveRecorder(self.recorder_capacity, source=f"edge-{self.index}")
            shipper = LiveShipper(live.recorder, self.batches, metrics)

            def ship() -> None:
                shipper.ship()

            live.chores.append(ship)
            live.closers.append(self.batches.close)  # after the last ship: what is queued is written
        live.closers += [sync.close, store.close, board.close]
        return live


class EdgeControl:
    """The supervisor's side; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        workers: int,
        state_dir: Path,
        live_workers: Callable[[], int] | None = None,
        clock: Clock | None = None,
        mp_context: Any = None,
        on_decisions: Callable[[list[Decision]], None] | None = None,
    ) -> None:
        """`mp_context`: the multiprocessing context the workers are started with (its queue must match).
        `on_decisions`: told of the decisions the detector wrote (on the detector's thread), e.g. to print them."""
        self.settings = settings
        self.workers = workers
        self.store_url = default_store_url(settings, state_dir)
        self.store: Store = store_from_url(self.store_url, clock=clock)
        self.cache = DecisionCache(clock)
        # Two rows per worker index, used in turn by successive generations: during a graceful restart the draining
        # worker and its successor both count, each in its own row (a row has one writer). The last row is ours.
        self.board = MetricsBoard(2 * workers + 1)
        self._turn = [0] * workers
        self.board.under_attack = settings.edge.under_attack
        live = settings.edge.live
        context = mp_context if mp_context is not None else multiprocessing.get_context()
        self.batches = (
            BatchHub(context, max_batches=live.queue_batches, metrics=self.board.slot(2 * workers))
            if live.enabled
            else None
        )
        self.detector = (
            LiveDetector(
                settings.site.name or "edge",
                self.store,
                settings=settings,
                cache=self.cache,
                batches=self.batches,
                metrics=self.board.slot(2 * workers),
                clock=clock,
                hold_back_s=live.hold_back_s,
                on_decisions=on_decisions,
            )
            if live.enabled
            else None
        )
        count = live_workers if live_workers is not None else (lambda: workers)
        self.admin = AdminThread(
            AdminServer(
                settings.edge.admin,
                store=self.store,
                cache=self.cache,
                board=self.board,
                workers=count,
                live=self.detector.status if self.detector is not None else None,
            )
        )
        self._sync: CacheSync | None = None
        self._clock = clock
        self.kernel: KernelDrop | None = None

    def worker_handle(self, index: int) -> WorkerHandle:
        """What worker `index` of a new generation (or a respawn) attaches with; its metrics row alternates."""
        if not 0 <= index < self.workers:
            raise IndexError(f"worker {index} outside 0..{self.workers - 1}")
        turn = self._turn[index]
        slot = index + turn * self.workers
        self._turn[index] ^= 1
        return WorkerHandle(
            index=index,
            slot=slot,
            board_path=str(self.board.path),
            slots=self.board.slots,
            store_url=self.store_url,
            batches=self.batches.writer(index, turn) if self.batches is not None else None,
            recorder_capacity=self.settings.edge.live.max_rows_per_s,
        )

    def start(self) -> None:
        """Follow the store, start the detector and the admin listener (a port in use raises `ServiceError`)."""
        self._sync = CacheSync(self.store, self.cache)
        if self.detector is not None:
            self.detector.start()
        self.admin.start()
        if self.settings.edge.enforce:
            self.kernel = kernel_drop(self.settings, self.cache, self._clock)
            self.kernel.start()

    def close(self) -> None:
        if self.kernel is not None:
            self.kernel.close()
        self.admin.stop()
        if self.detector is not None:
            self.detector.stop()
        if self._sync is not None:
            self._sync.close()
        if self.batches is not None:
            self.batches.close()
        self.store.close()
        self.board.close()
