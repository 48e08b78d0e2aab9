"""The `watch` job: follow a live access log, detect as it goes, decide, store, and enforce.

Thin wiring, like `analyze.py`: `floodwall.logs.follow_requests` (one-second frames, `tail -F`) to the streaming
`Engine` to `Policy`, then `Store.put` and every enforcer's `apply`. What happens is reported through a callback
(`WatchEvent`); nothing here prints.

- Restarts lose nothing: the store's active decisions are applied to every enforcer before the first line is read.
- Decisions expire on time: the store ignores them after `expires`, nftables drops the element by its timeout,
  and the watcher withdraws expired targets from every enforcer (the nginx map is re-rendered).
- Changes made by others (an operator's revoke, another node) arrive through the store's change feed, polled once
  per batch, and are applied too.
- A failing enforcer is reported (an `error` event with its cause) and the others go on: a refused `nginx -t`
  must not stop the kernel's bans.
- `Watcher.stop()` (any thread, or a signal handler) ends the run at the follower's next look; the engine's
  profile builder thread is joined before `run` returns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import polars as pl

from floodwall.config import Settings
from floodwall.decide import Allowlist, Policy, PolicySettings
from floodwall.decide.apply import new_decisions
from floodwall.detect import Engine
from floodwall.enforce import close_enforcer
from floodwall.errors import FloodwallError
from floodwall.logs.follow import follow_timed_requests
from floodwall.model import Action, Decision, Finding
from floodwall.types import Change, Clock, Enforcer, Store, SystemClock

__all__ = ["WatchEvent", "WatchSummary", "Watcher"]

log = logging.getLogger(__name__)

EventKind = Literal["restored", "decision", "expired", "revoked", "error"]
_PRIOR_DAYS = 30  # earlier decisions within this many days lengthen a repeat offender's TTL


@dataclass(frozen=True)
class WatchEvent:
    """One thing the watcher did: decisions restored, made, expired or revoked, or an enforcer's failure."""

    kind: EventKind
    decisions: tuple[Decision, ...] = ()
    targets: tuple[str, ...] = ()
    message: str = ""


@dataclass
class WatchSummary:
    """Counts over a run."""

    started: datetime
    ended: datetime | None = None
    lines: int = 0
    batches: int = 0
    restored: int = 0
    decisions: dict[str, int] = field(default_factory=dict)  # by action
    expired: int = 0
    revoked: int = 0
    errors: int = 0


class Watcher:
    """Follows one site's log and enforces what the engine and policy decide; see the module docstring."""

    def __init__(
        self,
        log_path: str | Path,
        *,
        site: str,
        store: Store,
        enforcers: Sequence[Enforcer] = (),
        settings: Settings | None = None,
        policy: PolicySettings | None = None,
        fmt: str | None = None,
        tz: str | None = None,
        clock: Clock | None = None,
        on_event: Callable[[WatchEvent], None] | None = None,
        poll_interval: float = 0.2,
        start_at_end: bool = True,
    ) -> None:
        self.log_path = Path(log_path)
        self.site = site
        self.store = store
        self.enforcers = list(enforcers)
        self.settings = settings or Settings()
        self.fmt = fmt or self.settings.logs.format
        self.tz = tz or self.settings.logs.tz
        self.clock: Clock = clock or SystemClock()
        self.on_event = on_event
        self.poll_interval = poll_interval
        self.start_at_end = start_at_end
        self._read_at: datetime | None = None  # when the lines of the batch being fed had been read
        # The profile is rebuilt on a thread of its own: on the batch loop it held a flood's first lines for seconds.
        # The engine's clock is the batch's read time: the live judge projects the second being written from it
        # (the time after parsing would understate the rate the batch saw).
        self.engine = Engine(
            site, self.settings.detect, self._batch_read_at, live=True, history=False, background_profile=True
        )
        self.policy = Policy(
            settings=policy or PolicySettings(),
            allowlist=Allowlist(own_networks=tuple(self.settings.site.own_networks)),
            prior=self._prior,
        )
        self.active: dict[str, Decision] = {}  # what the enforcers hold, by target
        self.summary = WatchSummary(started=self.clock())
        self._stop = threading.Event()
        # The log is opened (with `start_at_end`, its end found) here, not in `run()`: whoever made the watcher can
        # count on every line written from now on being read (the CLI says "watching" then). Opened in `run()`, the
        # lines written in between were skipped: once a test's quiet minute, and with it the baseline, so the flood
        # written after it was never judged.
        self._frames = follow_timed_requests(
            self.log_path,
            site=self.site,
            fmt=self.fmt,
            tz=self.tz,
            json_fields=self.settings.logs.json_fields,
            poll_interval=poll_interval,
            start_at_end=start_at_end,
            stop_event=self._stop,
        )

    def stop(self) -> None:
        """End the run at the follower's next look (safe from any thread or a signal handler)."""
        self._stop.set()

    def run(self) -> WatchSummary:
        """Restore, then follow the log until `stop()`; returns the run's counts. Enforcers are closed at the end."""
        feed = self.store.watch()  # opened before the snapshot, so no change falls between
        try:
            self._restore()
            for frame, read_at in self._frames:
                self.summary.batches += 1
                self.summary.lines += frame.height
                if frame.height:
                    self._read_at = read_at
                    self._decide(frame, self.engine.feed(frame))
                self._follow_store(feed.poll(0.0))
                self._expire()
        finally:
            try:
                feed.close()
                for enforcer in self.enforcers:
                    self._guarded(enforcer, close_enforcer, enforcer)
            finally:
                self.engine.close()  # joins the profile builder
                self.summary.ended = self.clock()
        return self.summary

    # -- steps ----------------------------------------------------------------------------------------------------

    def _restore(self) -> None:
        restored = [d for d in self.store.active(self.clock()) if d.action is not Action.OBSERVE]
        self.active = {d.target: d for d in restored}
        self.summary.restored = len(restored)
        self._enforce(restored)
        self._emit(WatchEvent("restored", decisions=tuple(restored)))

    def _decide(self, frame: pl.DataFrame, findings: list[Finding]) -> None:
        if not findings:
            return
        new = new_decisions(self.policy, frame, findings, self.clock(), site=self.site, held=self._held)
        if not new:
            return
        stored = self.store.put(new)
        for decision in stored:
            self.active[decision.target] = decision
            self.summary.decisions[decision.action.value] = self.summary.decisions.get(decision.action.value, 0) + 1
        self._enforce(stored)
        self._emit(WatchEvent("decision", decisions=tuple(stored)))

    def _batch_read_at(self) -> datetime:
        return self._read_at if self._read_at is not None else self.clock()

    def _held(self, target: str) -> Action | None:
        """The action the enforcers hold on `target` (a finding repeated at the same severity is no news)."""
        current = self.active.get(target)
        return current.action if current is not None else None

    def _follow_store(self, changes: Iterable[Change]) -> None:
        for change in changes:
            if change.kind == "resync":
                self._restore()
            elif change.kind == "put" and change.decision is not None:
                if self.active.get(change.target) != change.decision:
                    self.active[change.target] = change.decision
                    self._enforce([change.decision])
            elif change.kind == "revoke" and self.active.pop(change.target, None) is not None:
                self.summary.revoked += 1
                self._withdraw([change.target])
                self._emit(WatchEvent("revoked", targets=(change.target,), message=change.reason or ""))

    def _expire(self) -> None:
        now = self.clock()
        gone = [t for t, d in self.active.items() if d.expires <= now]
        if not gone:
            return
        for target in gone:
            del self.active[target]
        self.summary.expired += len(gone)
        self._withdraw(gone)
        self._emit(WatchEvent("expired", targets=tuple(gone)))

    # -- enforcement, failures isolated ---------------------------------------------------------------------------

    def _enforce(self, decisions: list[Decision]) -> None:
        if decisions:
            for enforcer in self.enforcers:
                self._guarded(enforcer, enforcer.apply, decisions)

    def _withdraw(self, targets: list[str]) -> None:
        for enforcer in self.enforcers:
            self._guarded(enforcer, enforcer.revoke, targets)

    def _guarded(self, enforcer: Enforcer, call: Callable[..., None], *args: object) -> None:
        try:
            call(*args)
        except (FloodwallError, OSError) as exc:
            self.summary.errors += 1
            log.error("%r failed: %s", enforcer, exc)
            self._emit(WatchEvent("error", message=f"{enforcer!r}: {exc}"))

    def _prior(self, target: str) -> int:
        since = self.clock() - timedelta(days=_PRIOR_DAYS)
        return self.store.times_decided(target, since=since, action=Action.BAN)

    def _emit(self, event: WatchEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)
