"""Worker processes: one per core, sharing the listening port, restarted gracefully.

- Each worker binds the port itself with SO_REUSEPORT and the kernel spreads new connections among them, so no
  process hands connections around (nginx's `reuseport`). The supervisor binds the port first without listening:
  it fixes the port when `:0` was asked for, and keeps it ours between generations.
- SIGHUP: a graceful restart. The config file is read again, a new generation of workers starts and binds, and
  once every new worker is serving, the old ones get SIGTERM: they stop accepting, finish the answers in progress
  (at most `grace_s`), close idle keep-alive connections, flush their access log and exit. A config file that no
  longer validates is reported and the running generation keeps serving.
- SIGTERM or SIGINT: a graceful stop, the same drain for every worker, then the supervisor's own parts (the live
  detector, the admin listener, the store) close.
- A worker that dies on its own (killed, out of memory) is started again, and said so.

Workers are started with the "spawn" method: the supervisor runs threads (store sync, detector, admin listener),
and forking a threaded process can copy a held lock into the child. The cost: each worker imports the edge afresh
(one to two seconds of CPU, most of it scikit-learn, which `floodwall.detect` imports eagerly).

Linux caveat (documented in SO_REUSEPORT's design): connections still waiting in an old worker's accept queue when
it closes its socket are reset. The window is the few milliseconds between the old worker's last accept and its
close; the new generation is already listening by then.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from floodwall.config import Settings
from floodwall.errors import FloodwallError, ServiceError

if TYPE_CHECKING:
    from floodwall.edge.batches import BatchWriter

__all__ = ["GC_THRESHOLDS", "EdgeEvent", "Supervisor", "settle_garbage_collector", "worker_count"]

log = logging.getLogger("floodwall.edge.workers")

_FLUSH_AT_EXIT_S = 2.0  # a worker's last rows for the detector, at most this long at exit
_RESPAWN_EVERY_S = 2.0  # a worker that keeps dying is started again at most this often
_START_TIMEOUT_S = 120.0  # the first start compiles the signature database (cached on disk afterwards)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def worker_count(settings: Settings) -> int:
    return settings.edge.workers or os.cpu_count() or 1


@dataclass(frozen=True)
class EdgeEvent:
    """What the supervisor tells its caller: `started`, `restarted`, `respawned`, `reload-failed`, `stopping`,
    `stopped`."""

    kind: str
    message: str


def _worker_main(
    settings: Settings, handle: Any, host: str, port: int, secret: bytes, ready: Any, grace_s: float
) -> None:
    """A worker process: serve until SIGTERM, then drain. Ctrl-C reaches the whole process group; the supervisor
    decides what it means, so the worker ignores SIGINT."""
    import uvloop

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="floodwall: %(message)s", force=True)
    try:
        uvloop.run(_serve(settings, handle, host, port, secret, ready, grace_s))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the loop's handler is gone with it: SIGTERM stops us again
        _let_go_of(getattr(handle, "batches", None))


def _let_go_of(batches: BatchWriter | None) -> None:
    """Give the last rows to the detector's pipe for up to `_FLUSH_AT_EXIT_S`, then exit regardless.

    The writer's thread blocks while the pipe is full: with the supervisor gone (killed, or its detector stopped),
    waiting for it would keep a worker from exiting. The thread is a daemon, so it does not hold the exit up.
    """
    if batches is not None:
        batches.close(_FLUSH_AT_EXIT_S)


async def _serve(
    settings: Settings, handle: Any, host: str, port: int, secret: bytes, ready: Any, grace_s: float
) -> None:
    from floodwall.edge.accesslog import AccessLog
    from floodwall.edge.job import bind_listener, build_server, serve_worker

    live = handle.attach()
    access_log = AccessLog(settings.edge.access_log) if settings.edge.access_log else None
    guard = None
    if settings.detect.signatures:
        from floodwall.edge.guard import InlineGuard

        guard = InlineGuard.from_settings(settings.detect)
    worker = build_server(
        settings,
        decisions=live.decisions,
        metrics=live.metrics,
        access_log=access_log,
        recorder=live.recorder,
        challenge_secret=secret,
        guard=guard,
        under_attack=live.under_attack,
    )
    worker.chores += live.chores
    worker.closers += live.closers
    sock = bind_listener(host, port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    supervisor = os.getppid()

    def orphaned() -> None:  # the supervisor died without stopping us (killed): drain and exit, never linger
        if os.getppid() != supervisor:
            stop.set()

    worker.chores.append(orphaned)
    settle_garbage_collector()
    await serve_worker(worker, sock, stop, ready=ready.set, grace_s=grace_s)


#: The cycle collector's thresholds in a serving worker (Python's defaults are 700, 10, 10).
GC_THRESHOLDS = (20_000, 10, 10)


def settle_garbage_collector() -> None:
    """Once a worker is built: everything made so far (the imported modules, the signature database's wrappers,
    the settings) is moved out of the cycle collector's reach with `gc.freeze()`, and
    young collections run every 20,000 allocations instead of 700.

    Why: a request allocates a few dozen container objects (its header tuples, the request, the answer), so with
    the defaults a young collection ran every few dozen requests, and every full collection walked the whole
    worker's heap while the event loop waited (the readers' tail latency under a flood). Frozen objects are never
    examined again; what requests leave behind is still collected (https://docs.python.org/3/library/gc.html#gc.freeze).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Supervisor:
    """Starts, restarts and stops the workers; see the module docstring. `run()` blocks until stopped."""

    def __init__(
        self,
        settings: Settings,
        *,
        state_dir: Path,
        reload: Callable[[], Settings] | None = None,
        on_event: Callable[[EdgeEvent], None] = lambda event: None,
        grace_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.reload = reload
        self.on_event = on_event
        self.grace_s = grace_s
        self.workers = worker_count(settings)
        self.host = ""
        self.port = 0
        self.admin_address = ""
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[BaseProcess] = []
        self._wake = threading.Event()
        self._stop = False
        self._restart = False

    # -- signals (set flags; the main loop acts) ----------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop = True
        self._wake.set()

    def request_restart(self) -> None:
        self._restart = True
        self._wake.set()

    def _install_signals(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        for sig, action in ((signal.SIGTERM, self.request_stop), (signal.SIGINT, self.request_stop)):
            previous[sig] = signal.signal(sig, lambda *_, act=action: act())
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: self.request_restart())
        return previous

    # -- workers ----------------------------------------------------------------------------------------------

    def _spawn(self, control: Any, index: int, settings: Settings, secret: bytes) -> tuple[BaseProcess, Any]:
        ready = self._context.Event()
        process = self._context.Process(
            target=_worker_main,
            args=(settings, control.worker_handle(index), self.host, self.port, secret, ready, self.grace_s),
            name=f"floodwall-edge-{index}",
        )
        process.start()
        return process, ready

    def _generation(self, control: Any, settings: Settings, secret: bytes) -> list[BaseProcess]:
        started = [self._spawn(control, k, settings, secret) for k in range(self.workers)]
        for process, ready in started:
            if not ready.wait(_START_TIMEOUT_S) or not process.is_alive():
                for other, _ in started:
                    other.kill()
                    other.join()
                raise ServiceError(f"an edge worker did not start (exit code {process.exitcode}); see the log above")
        return [process for process, _ in started]

    def _drain(self, processes: list[BaseProcess]) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join(self.grace_s + 5.0)
            if process.is_alive():
                process.kill()
                process.join()

    def run(self) -> None:
        from floodwall.edge.challenge import secret_from_settings
        from floodwall.edge.control import EdgeControl
        from floodwall.edge.job import bind_listener, parse_listen

        settings = self.settings
        self.host, port = parse_listen(settings.edge.listen, "edge.listen")
        try:
            reserved = bind_listener(self.host, port, listen=False)
        except OSError as exc:
            raise ServiceError(f"cannot listen on {settings.edge.listen}: {exc.strerror}") from None
        self.port = reserved.getsockname()[1]
        secret = secret_from_settings(settings.edge.challenge)  # one secret for every worker
        control = EdgeControl(
            settings,
            workers=self.workers,
            state_dir=self.state_dir,
            live_workers=lambda: sum(p.is_alive() for p in self._processes),
            mp_context=self._context,
        )
        previous = self._install_signals()
        try:
            control.start()
            self._processes = self._generation(control, settings, secret)
            admin = control.admin.server
            self.admin_address = f"{admin.host}:{admin.port}"
            self.on_event(
                EdgeEvent(
                    "started", f"{self.workers} workers on {self.host}:{self.port}; admin on {self.admin_address}"
                )
            )
            self._loop(control, secret)
        finally:
            self.on_event(EdgeEvent("stopping", "draining the workers"))
            self._drain(self._processes)
            control.close()
            reserved.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.on_event(EdgeEvent("stopped", "all workers stopped"))

    def _loop(self, control: Any, secret: bytes) -> None:
        settings = self.settings
        respawned: dict[int, float] = {}  # worker index -> when it was last started again
        while not self._stop:
            self._wake.wait(0.5)
            self._wake.clear()
            if self._stop:
                break
            if self._restart:
                self._restart = False
                if self.reload is not None:
                    try:
                        settings = self.reload()
                    except FloodwallError as error:
                        self.on_event(EdgeEvent("reload-failed", f"{error}; the running workers keep serving"))
                        continue
                old = self._processes
                try:
                    self._processes = self._generation(control, settings, secret)
                except ServiceError as error:
                    self.on_event(EdgeEvent("reload-failed", f"{error}; the running workers keep serving"))
                    continue
                self._drain(old)
                self.on_event(EdgeEvent("restarted", f"{self.workers} new workers serving; the old ones drained"))
                continue
            now = time.monotonic()
            for k, process in enumerate(self._processes):
                if not process.is_alive() and not self._stop and now - respawned.get(k, -1e9) >= _RESPAWN_EVERY_S:
                    respawned[k] = now
                    code = process.exitcode
                    self._processes[k] = self._spawn(control, k, settings, secret)[0]
                    self.on_event(EdgeEvent("respawned", f"worker {k} exited with code {code}; started again"))
