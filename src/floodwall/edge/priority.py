"""Readers first when a worker falls behind: requests from addresses the edge has not known for long wait a little.

A flood starts from addresses the edge has never seen (or saw only moments ago), while most of a site's readers
were already reading. Before the detector convicts the flood (seconds), its requests are served like anyone's, and
a worker that cannot keep up makes everyone wait in one line. So each worker watches its own event loop: a timer
that should fire every `tick_s` and fires late means the worker is behind. While it is (and for `hold_s` after),
a request from an address first seen less than `known_after_s` ago, and not in the outlet's networks or a trusted
proxy's (`spared`), is answered `defer_s` later than it could be; requests from known addresses go first.

Nobody is refused by this: an unknown reader of a breaking-news surge gets its page `defer_s` later while the
worker is swamped, and not at all later otherwise. A closed-loop bot (one request at a time per connection, like
most flood tools) is slowed to one request per `defer_s` per connection, which is what frees the worker.

Addresses are remembered in two generations of at most `max_remembered` each (the older one is dropped when the
newer fills), so memory stays bounded whatever the number of sources; an address dropped that way is new again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

__all__ = ["ReaderPriority"]

_DEFAULT_REMEMBERED: Final = 250_000


class ReaderPriority:
    """One worker's view of who is known and whether it is behind; see the module docstring.

    `clock` is the event loop's (`loop.time`): seconds, monotonic.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        spared: Callable[[str], bool] = lambda _peer: False,
        known_after_s: float = 30.0,
        tick_s: float = 0.05,
        late_s: float = 0.02,
        hold_s: float = 1.0,
        defer_s: float = 0.2,
        max_remembered: int = _DEFAULT_REMEMBERED,
    ) -> None:
        self.clock = clock
        self.spared = spared
        self.known_after_s = known_after_s
        self.tick_s = tick_s
        self.late_s = late_s
        self.hold_s = hold_s
        self.defer_s = defer_s
        self.max_remembered = max_remembered
        self._seen: dict[str, float] = {}
        self._older: dict[str, float] = {}
        self._behind_until = -1.0
        self.deferred = 0  # requests answered later because the worker was behind

    @property
    def behind(self) -> bool:
        return self.clock() < self._behind_until

    def note(self, peer: str) -> None:
        """A connection from `peer`: remember when it was first seen."""
        if peer in self._seen:
            return
        first = self._older.get(peer)
        if len(self._seen) >= self.max_remembered:
            self._older, self._seen = self._seen, {}
        self._seen[peer] = first if first is not None else self.clock()

    def waits(self, peer: str) -> bool:
        """Whether a request from `peer` should wait `defer_s`: the worker is behind and `peer` is not known."""
        now = self.clock()
        if now >= self._behind_until:
            return False
        first = self._seen.get(peer)
        if first is None:
            first = self._older.get(peer, now)
        if now - first >= self.known_after_s or self.spared(peer):
            return False
        self.deferred += 1
        return True

    def tick(self, late_by_s: float) -> None:
        """The loop timer fired `late_by_s` after it was due."""
        if late_by_s > self.late_s:
            self._behind_until = self.clock() + self.hold_s

    async def watch(self) -> None:
        """Runs on the worker's loop until cancelled: the timer whose lateness says the worker is behind."""
        while True:
            due = self.clock() + self.tick_s
            await asyncio.sleep(self.tick_s)
            self.tick(self.clock() - due)
