"""The edge's per-request parts, in order, listed in one place (`default_parts`, like mitmproxy's default_addons).

    client address  the reader's address (peer, or X-Forwarded-For from trusted proxies)     fails open: the peer
    challenge route /.well-known/floodwall/challenge: the proof-of-work page's answers       fails closed: 500
    allowlist       the outlet's own networks, its monitors: skip the defences below        fails open: not exempt
    decision        the ban list (403) and the challenge list (challenge page unless the      fails open: served
                    cookie verifies); under attack, every unverified client is challenged;
                    verified crawlers (user agent and published ranges agree) pass
    limits          token buckets per client and per prefix (429 with Retry-After)          fails open: served
    cache (fresh)   a fresh entry is served at once                                          fails open: origin
    signatures      inline breach signatures on method, path, query, headers, body (403)     fails open: served
    cache (miss)    misses coalesced; stale within stale-while-revalidate / -if-error        fails open: origin
    origin          the byte copy, at most `origin_concurrency` in flight (502/503/504)

The signatures run after the fresh-cache check, not before: they protect the origin's application, which a fresh
hit never reaches, and they are the one part that costs tens of microseconds (hyperscan over every field), so a GET
flood served from the cache does not pay for them. An attack string in a cached URL gets the cached page, and the
live detector still sees the request.

Every part before the cache is synchronous and cheap (a dict lookup, a token bucket): the pipeline runs them
directly from the connection's parser callback and only a request that needs the origin becomes a task.

"Fails open" means: when the part raises (a bug, a store gone away), the request goes on as if the part had said
nothing: a newsroom would rather serve a flood than block its readers (STYLE.md item 7). A failure is logged with
its cause at most once every 10 seconds per part, never once per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Literal, Protocol

from floodwall.edge import metrics as outcomes
from floodwall.edge.challenge import CHALLENGE_PATH
from floodwall.edge.gate import BANNED_TEXT
from floodwall.edge.http import Answer, Request
from floodwall.edge.limits import Limiter, retry_after_header
from floodwall.model import Action

if TYPE_CHECKING:
    from floodwall.decide.allowlist import Allowlist
    from floodwall.edge.clientaddr import ClientAddress
    from floodwall.edge.connection import EdgeConnection
    from floodwall.edge.forward import Forwarder
    from floodwall.edge.gate import AcceptGate
    from floodwall.store.cache import DecisionCache

__all__ = [
    "AllowlistPart",
    "ChallengeRoutePart",
    "ClientAddressPart",
    "DecisionPart",
    "LimitPart",
    "Part",
    "Pipeline",
    "SignaturePart",
    "default_parts",
]

log = logging.getLogger("floodwall.edge.pipeline")

FailMode = Literal["open", "closed"]

_CHALLENGED_TEXT: Final = (
    "This site is under attack, and your address needs to show it is a browser before going on. "
    "Please try again in a moment."
)
_LIMITED_TEXT: Final = "Too many requests from your address or network. Please wait a moment and try again."
_GUARDED_TEXT: Final = "This request looks like an attack on the site and was refused."


class Part(Protocol):
    """One step. Returns an answer to stop the request there, or None to go on."""

    name: str
    fails: FailMode

    def __call__(self, request: Request) -> Answer | None: ...


Reply = tuple[int, list[tuple[bytes, bytes]], bytes]


class Challenger(Protocol):
    """What the pipeline needs from `floodwall.edge.challenge.Challenger`."""

    def verify(self, cookie_header: bytes | str | None, address: str, user_agent: str) -> bool: ...

    def page(self, target: str, address: str, user_agent: str) -> Reply: ...

    def answer(self, path: str, query: str | None, address: str, user_agent: str) -> Reply: ...


def _agent(request: Request) -> str:
    value = request.user_agent
    return value.decode("latin-1") if value else ""


class _Verdict(Protocol):
    @property
    def blocked(self) -> bool: ...


class Guard(Protocol):
    """What the pipeline needs from `floodwall.edge.guard.InlineGuard`."""

    @property
    def enabled(self) -> bool: ...

    def check(
        self,
        method: str,
        path: str,
        query: str | None,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
        protocol: str | None,
    ) -> _Verdict: ...


class ClientAddressPart:
    """Sets `request.client` from the peer and, behind trusted proxies, X-Forwarded-For."""

    name = "client address"
    fails: FailMode = "open"

    def __init__(self, resolver: ClientAddress) -> None:
        self.resolver = resolver
        self.active = resolver.trusts_proxies

    def __call__(self, request: Request) -> Answer | None:
        if self.active:
            request.client = self.resolver.resolve(request.peer, request.forwarded_for)
        return None


class ChallengeRoutePart:
    """Answers the challenge's own route (the page posts its solution there), before anything could block it."""

    name = "challenge route"
    fails: FailMode = "closed"

    def __init__(self, challenger: Challenger) -> None:
        self.challenger = challenger

    def __call__(self, request: Request) -> Answer | None:
        if not request.target.startswith(CHALLENGE_PATH):
            return None
        path, question, query = request.target.partition("?")
        status, headers, body = self.challenger.answer(
            path, query if question else None, request.client, _agent(request)
        )
        return Answer(status, headers, body, outcome=outcomes.CHALLENGED)


class AllowlistPart:
    """Marks the outlet's own and its monitors' networks exempt: the defences below let them through.

    Verdicts are remembered per address (a dict lookup per request); the memory is cleared when it grows large.
    """

    name = "allowlist"
    fails: FailMode = "open"

    def __init__(self, allowlist: Allowlist, exempt: set[str], max_remembered: int = 100_000) -> None:
        self.allowlist = allowlist
        self.exempt = exempt  # shared with the parts that honour it
        self.max_remembered = max_remembered
        self._known: dict[str, bool] = {}
        self.active = bool(allowlist.own_networks or allowlist.monitor_networks)

    def __call__(self, request: Request) -> Answer | None:
        if not self.active:
            return None
        client = request.client
        verdict = self._known.get(client)
        if verdict is None:
            if len(self._known) >= self.max_remembered:
                self._known.clear()
            verdict = self._known[client] = self.allowlist.exempt_network(client) is not None
        if verdict:
            if len(self.exempt) >= self.max_remembered:
                self.exempt.clear()
            self.exempt.add(client)
        return None


class DecisionPart:
    """Bans (403) and challenges from the decisions the edge holds; under attack, unverified clients are
    challenged too. Without a challenger a challenged client gets 429 (CONTRACT.md: "429 or a challenge page").

    With a `gate` (`floodwall.edge.gate`), a banned client's 403 closes its connection when the gate would refuse
    its next one, so a bot that opened its connection before the ban pays the cheap way from then on."""

    name = "decision"
    fails: FailMode = "open"

    def __init__(
        self,
        decisions: DecisionCache,
        contact: str,
        exempt: set[str],
        *,
        challenger: Challenger | None = None,
        under_attack: Callable[[], bool] = lambda: False,
        crawlers: Allowlist | None = None,
        gate: AcceptGate | None = None,
    ) -> None:
        self.decisions = decisions
        self.contact = contact
        self.exempt = exempt
        self.challenger = challenger
        self.under_attack = under_attack
        self.crawlers = crawlers
        self.gate = gate
        # The same bytes for every banned or challenged request: made once (the connection copies, never mutates).
        self._banned = Answer.text(403, BANNED_TEXT, contact, outcome=outcomes.BANNED)
        self._challenged = Answer.text(429, _CHALLENGED_TEXT, contact, outcome=outcomes.CHALLENGED)

    def __call__(self, request: Request) -> Answer | None:
        client = request.client
        if client in self.exempt:
            return None
        action = self.decisions.lookup(client)
        if action is None or action is Action.OBSERVE:
            if not self.under_attack():
                return None
            action = Action.CHALLENGE
        # A verified crawler (its user agent claims it and its address lies in the crawler's published ranges) is
        # never blocked; checked only here, on the way to blocking, so readers never pay for it.
        if self.crawlers is not None and self.crawlers.verified_crawler(client, _agent(request)):
            return None
        if action is Action.BAN:
            if self.gate is not None and self.gate.closes_after_ban(client, request.peer):
                request.keep_alive = False
            return self._banned
        challenger = self.challenger
        if challenger is None:
            return self._challenged
        agent = _agent(request)
        if challenger.verify(request.header(b"cookie"), client, agent):
            return None
        status, headers, body = challenger.page(request.target, client, agent)
        return Answer(status, headers, body, outcome=outcomes.CHALLENGED)


class LimitPart:
    """Token buckets per client and per prefix: 429 with `Retry-After` beyond them."""

    name = "limits"
    fails: FailMode = "open"

    def __init__(self, limiter: Limiter, contact: str, exempt: set[str]) -> None:
        self.limiter = limiter
        self.contact = contact
        self.exempt = exempt

    def __call__(self, request: Request) -> Answer | None:
        if request.client in self.exempt:
            return None
        verdict = self.limiter.check(request.client)
        if verdict.allowed:
            return None
        return Answer.text(
            429,
            _LIMITED_TEXT,
            self.contact,
            outcome=outcomes.LIMITED,
            headers=[(b"retry-after", retry_after_header(verdict))],
        )


class SignaturePart:
    """Inline breach signatures (SQL injection, traversal, scanners...): 403 on a match."""

    name = "signatures"
    fails: FailMode = "open"

    def __init__(self, guard: Guard, contact: str, exempt: set[str]) -> None:
        self.guard = guard
        self.contact = contact
        self.exempt = exempt

    def __call__(self, request: Request) -> Answer | None:
        if request.client in self.exempt:
            return None
        path, question, query = request.target.partition("?")
        verdict = self.guard.check(
            request.method,
            path,
            query if question else None,
            request.headers,
            request.body or None,
            f"HTTP/{request.version}",
        )
        if not verdict.blocked:
            return None
        return Answer.text(403, _GUARDED_TEXT, self.contact, outcome=outcomes.GUARDED)


def default_parts(
    *,
    contact: str,
    resolver: ClientAddress,
    allowlist: Allowlist | None,
    decisions: DecisionCache | None,
    limiter: Limiter | None,
    challenger: Challenger | None = None,
    guard: Guard | None = None,
    under_attack: Callable[[], bool] = lambda: False,
    gate: AcceptGate | None = None,
) -> tuple[list[Part], list[Part]]:
    """The parts before the fresh-cache check and those between it and the origin, in the order they run (the
    module docstring's table)."""
    exempt: set[str] = set()
    parts: list[Part] = [ClientAddressPart(resolver)]
    if challenger is not None:
        parts.append(ChallengeRoutePart(challenger))
    if allowlist is not None and (allowlist.own_networks or allowlist.monitor_networks):
        parts.append(AllowlistPart(allowlist, exempt))
    if decisions is not None:
        parts.append(
            DecisionPart(
                decisions,
                contact,
                exempt,
                challenger=challenger,
                under_attack=under_attack,
                crawlers=allowlist,
                gate=gate,
            )
        )
    if limiter is not None:
        parts.append(LimitPart(limiter, contact, exempt))
    before_origin: list[Part] = []
    if guard is not None and guard.enabled:
        before_origin.append(SignaturePart(guard, contact, exempt))
    return parts, before_origin


class Pipeline:
    """Runs `parts`, the fresh-cache check, `before_origin`, then the forwarder (cache misses and origin). The
    server calls `answer_now` for every request and `answer_later` (as a task) when it returned None."""

    def __init__(
        self, parts: Sequence[Part], forwarder: Forwarder, contact: str, before_origin: Sequence[Part] = ()
    ) -> None:
        self.parts = tuple(parts)
        self.before_origin = tuple(before_origin)
        # The parts that can do something here: one with nothing to do for any request (`active` False: no
        # trusted proxies, no allowlisted networks) is listed but not called per request.
        self._running = tuple(part for part in self.parts if getattr(part, "active", True))
        self.forwarder = forwarder
        self.contact = contact
        self.failures: dict[str, int] = {}
        self._reported: dict[str, float] = {}

    def answer_now(self, request: Request) -> Answer | None:
        answer = self._run(self._running, request)
        if answer is not None:
            return answer
        try:
            answer = self.forwarder.answer_now(request)
        except Exception:  # the cache fails open: on to the origin
            self._failed_named("cache", "open")
            request.cache_key = None
        if answer is not None or not self.before_origin:
            return answer
        return self._run(self.before_origin, request)

    def _run(self, parts: tuple[Part, ...], request: Request) -> Answer | None:
        for part in parts:
            try:
                answer = part(request)
            except Exception:
                self._failed_named(part.name, part.fails)
                if part.fails == "closed":
                    return Answer.text(500, "The edge failed on this request.", self.contact, outcome=outcomes.ERROR)
                continue
            if answer is not None:
                return answer
        return None

    def start_now(self, request: Request, conn: EdgeConnection) -> bool:
        """For a request `answer_now` left: start it without a task when the forwarder can (a pass-through with
        a free origin connection); True when started, and `conn.answered(request)` follows."""
        return self.forwarder.start_now(request, conn)

    async def answer_later(self, request: Request, conn: EdgeConnection) -> None:
        await self.forwarder.answer_later(request, conn)

    def _failed_named(self, name: str, fails: FailMode) -> None:
        count = self.failures[name] = self.failures.get(name, 0) + 1
        now = time.monotonic()
        if now - self._reported.get(name, -1e9) >= 10.0:
            self._reported[name] = now
            log.exception("edge part %r failed (fails %s; %d failures so far)", name, fails, count)
