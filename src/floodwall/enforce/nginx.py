"""Decisions as an nginx `geo` include, reloaded at a bounded rate.

    enforcer = NginxMapEnforcer("/etc/nginx/floodwall/banned.conf")
    enforcer.apply(decisions)         # banned targets written, `nginx -t`, reload (at most once per min_interval_s)
    enforcer.close()                  # writes what is pending, stops the timer

The include holds one `ADDRESS-OR-CIDR 1;` line per banned target, for the `http {}` context's

    geo $floodwall_banned { default 0; include /etc/nginx/floodwall/banned.conf; }
    ...  if ($floodwall_banned) { return 403; }

(`floodwall nginx-config` prints this). `geo` matches `$remote_addr`, so behind a proxy the realip module must set
it first. Challenged targets go to a second include, `challenge_path`, when one is given (for a `geo
$floodwall_challenged` that hands them to a challenge); without one they are not enforced here.

Never a half file, never a broken config: the new text is written to a temporary file beside the include and
fsynced; the include is swapped for it by rename (the old one kept as a hard link), `test_command` (`nginx -t`)
checks the whole configuration with it, and on failure the old file is renamed back and `ServiceError` says what
nginx said. nginx reads the include only at a reload, so the brief swap is never seen by a running server.

Reloads are coalesced: changes within `min_interval_s` of the last reload wait for a timer thread, which also
re-renders when the earliest decision expires, so expired bans leave the file on time.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from floodwall.errors import ServiceError
from floodwall.model import Action, Decision
from floodwall.store.codec import normalise_target
from floodwall.types import Clock, SystemClock

__all__ = ["NginxMapEnforcer"]

log = logging.getLogger(__name__)

DEFAULT_RELOAD: tuple[str, ...] = ("nginx", "-s", "reload")
DEFAULT_TEST: tuple[str, ...] = ("nginx", "-t", "-q")
_COMMAND_TIMEOUT_S = 60.0


def _run(command: Sequence[str], what: str) -> None:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"{what}: {' '.join(command)} could not run: {exc}") from None
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split())[:800]
        raise ServiceError(f"{what}: {' '.join(command)} failed (exit {done.returncode}): {said}")


def render(decisions: Iterable[Decision], now: datetime, comment: str) -> str:
    """The include's text: `TARGET 1;` per decision still in force, sorted, under a comment."""
    targets = sorted({normalise_target(d.target) for d in decisions if d.expires > now})
    lines = [f"# {comment}; written by floodwall at {now:%Y-%m-%dT%H:%M:%SZ}: do not edit, it is rewritten.\n"]
    lines.extend(f"{target} 1;\n" for target in targets)
    return "".join(lines)


class NginxMapEnforcer:
    """Keeps an nginx `geo` include in step with decisions; see the module docstring.

    `reload_command` and `test_command` are argument lists (the defaults suit a packaged nginx run as root);
    `test_command=None` skips the check. Errors in the synchronous path raise `ServiceError`; errors in the timer
    thread are logged with their cause, and the write is tried again at the next change or interval.
    """

    def __init__(
        self,
        path: str | Path,
        reload_command: Sequence[str] | None = DEFAULT_RELOAD,
        min_interval_s: float = 5.0,
        test_command: Sequence[str] | None = DEFAULT_TEST,
        *,
        challenge_path: str | Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.path = Path(path)
        self.challenge_path = Path(challenge_path) if challenge_path is not None else None
        self.reload_command = tuple(reload_command) if reload_command else None
        self.test_command = tuple(test_command) if test_command else None
        self.min_interval_s = min_interval_s
        self.clock: Clock = clock or SystemClock()
        self.reloads = 0
        self.last_error: str | None = None
        self._decisions: dict[str, Decision] = {}
        self._lock = threading.RLock()
        self._dirty = False
        self._last_reload = float("-inf")  # time.monotonic() of the last reload
        self._timer: threading.Timer | None = None
        self._timer_due = 0.0  # time.monotonic() when the pending timer fires
        self._closed = False

    def __repr__(self) -> str:
        return f"NginxMapEnforcer({str(self.path)!r})"

    # -- the Enforcer protocol ------------------------------------------------------------------------------------

    def apply(self, decisions: Iterable[Decision]) -> None:
        with self._lock:
            for decision in decisions:
                target = normalise_target(decision.target)
                enforced = decision.action is Action.BAN or (
                    decision.action is Action.CHALLENGE and self.challenge_path is not None
                )
                previous = self._decisions.pop(target, None)
                if enforced:
                    self._decisions[target] = decision
                self._dirty |= enforced or previous is not None
            self._settle()

    def revoke(self, targets: Iterable[str]) -> None:
        with self._lock:
            for target in targets:
                if self._decisions.pop(normalise_target(target), None) is not None:
                    self._dirty = True
            self._settle()

    # -- control --------------------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write and reload now if anything changed, whatever the interval (the close path, tests)."""
        with self._lock:
            self._cancel_timer()
            if self._dirty or self._expired():
                self._write_and_reload()
            self._schedule()

    def close(self) -> None:
        """Write what is pending and stop the timer thread."""
        with self._lock:
            try:
                self.flush()
            finally:
                self._closed = True
                self._cancel_timer()

    @property
    def targets(self) -> dict[str, Action]:
        """The targets enforced now, with their actions."""
        with self._lock:
            now = self.clock()
            return {t: d.action for t, d in self._decisions.items() if d.expires > now}

    # -- inside ---------------------------------------------------------------------------------------------------

    def _expired(self) -> bool:
        now = self.clock()
        return any(d.expires <= now for d in self._decisions.values())

    def _settle(self) -> None:
        """Write now if the interval allows it (raising on failure), else leave it to the timer."""
        if self._closed:
            raise ServiceError(f"{self!r} is closed")
        if self._dirty and time.monotonic() - self._last_reload >= self.min_interval_s:
            self._cancel_timer()
            self._write_and_reload()
        self._schedule()

    def _write_and_reload(self) -> None:
        now = self.clock()
        self._decisions = {t: d for t, d in self._decisions.items() if d.expires > now}
        bans = [d for d in self._decisions.values() if d.action is Action.BAN]
        texts = [(self.path, render(bans, now, "banned by floodwall"))]
        if self.challenge_path is not None:
            challenges = [d for d in self._decisions.values() if d.action is Action.CHALLENGE]
            texts.append((self.challenge_path, render(challenges, now, "challenged by floodwall")))
        swapped = [_swap_in(path, text) for path, text in texts]
        try:
            if self.test_command is not None:
                _run(self.test_command, f"nginx rejected the new {self.path}, the old file is kept")
        except ServiceError as exc:
            for path, backup in swapped:
                _restore(path, backup)
            self.last_error = str(exc)
            self._last_reload = time.monotonic()  # do not retry a broken configuration in a tight loop
            raise
        for _, backup in swapped:
            if backup is not None:
                backup.unlink(missing_ok=True)
        self._dirty = False
        self._last_reload = time.monotonic()
        if self.reload_command is not None:
            _run(self.reload_command, "nginx reload")
        self.reloads += 1
        self.last_error = None

    def _schedule(self) -> None:
        """A timer for the next pending write: the end of the interval, or the earliest expiry."""
        if self._closed:
            return
        waits: list[float] = []
        if self._dirty:
            waits.append(self._last_reload + self.min_interval_s - time.monotonic())
        if self._decisions:
            first = min(d.expires for d in self._decisions.values())
            waits.append((first - self.clock()).total_seconds())
        if not waits:
            return
        wait = max(0.05, min(waits))
        due = time.monotonic() + wait
        if self._timer is not None and self._timer.is_alive():
            if self._timer_due <= due:
                return  # the pending timer fires at least this early, and re-plans when it does
            self._timer.cancel()
        self._timer_due = due
        self._timer = threading.Timer(wait, self._on_timer)
        self._timer.daemon = True
        self._timer.name = f"floodwall-nginx-map-{self.path.name}"
        self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            if self._closed:
                return
            due = self._dirty and time.monotonic() - self._last_reload >= self.min_interval_s
            if due or self._expired():
                try:
                    self._write_and_reload()
                except (ServiceError, OSError) as exc:
                    self.last_error = str(exc)
                    self._dirty = True
                    log.error("%r: update failed, retrying in %.0f s: %s", self, self.min_interval_s, exc)
            self._schedule()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _swap_in(path: Path, text: str) -> tuple[Path, Path | None]:
    """Put `text` at `path` by rename, keeping the old file as a hard link; (path, the old file's link or None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    backup = path.with_name(f".{path.name}.{os.getpid()}.old")
    with temporary.open("w", encoding="ascii") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    backup.unlink(missing_ok=True)
    try:
        os.link(path, backup)
    except FileNotFoundError:
        backup_or_none: Path | None = None
    else:
        backup_or_none = backup
    temporary.replace(path)
    return path, backup_or_none


def _restore(path: Path, backup: Path | None) -> None:
    if backup is None:
        path.unlink(missing_ok=True)
    else:
        backup.replace(path)
