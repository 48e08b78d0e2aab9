"""The edge's per-request parts, in order, listed in one place (`default_parts`, like mitmproxy's default_addons).

    client address  the reader's address (peer, or X-Forwarded-For from trusted proxies)     fails open: the peer
    challenge route /.well-known/floodwall/challenge: the proof-of-work page's answers       fails closed: 500
    allowlist       the outlet's own networks, its monitors: skip the defences below        fails open: not exempt
    decision        the ban list (403) and the challenge list (challenge page unless the      fails open: served
                    cookie verifies); under attack, every unverified client is challenged
    limits          token buckets per client and per prefix (429 with Retry-After)          fails open: served
    signatures      inline breach signatures on method, path, query, headers, body (403)     fails open: served
    cache           fresh entries at once; misses coalesced; stale when the origin fails     fails open: origin
    origin          the byte copy, at most `origin_concurrency` in flight (502/503/504)

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
from floodwall.edge.http import Answer, Request
from floodwall.edge.limits import Limiter, retry_after_header
from floodwall.model import Action

if TYPE_CHECKING:
    from floodwall.decide.allowlist import Allowlist
    from floodwall.edge.clientaddr import ClientAddress
    from floodwall.edge.forward import Forwarder
    from floodwall.edge.server import EdgeConnection
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

_BANNED_TEXT: Final = "Your address has been blocked by this site's protection against attacks."
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


class Challenger(Protocol):
    """What the pipeline needs from `floodwall.edge.challenge`."""

    def verified(self, request: Request) -> bool:
        """The request carries a valid, unexpired challenge cookie for its client."""
        ...

    def page(self, request: Request) -> Answer:
        """The proof-of-work page (with its no-JavaScript fallback and the contact line)."""
        ...

    def route(self, request: Request) -> Answer | None:
        """The answer for requests under /.well-known/floodwall/challenge, None for every other path."""
        ...


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
            request.client = self.resolver.resolve(request.peer, request.header(b"x-forwarded-for"))
        return None


class ChallengeRoutePart:
    """Answers the challenge's own route (the page posts its solution there), before anything could block it."""

    name = "challenge route"
    fails: FailMode = "closed"

    def __init__(self, challenger: Challenger) -> None:
        self.challenger = challenger

    def __call__(self, request: Request) -> Answer | None:
        if not request.target.startswith("/.well-known/floodwall/"):
            return None
        return self.challenger.route(request)


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
            self.exempt.add(client)
        return None


class DecisionPart:
    """Bans (403) and challenges from the decisions the edge holds; under attack, unverified clients are
    challenged too. Without a challenger a challenged client gets 429 (CONTRACT.md: "429 or a challenge page")."""

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
    ) -> None:
        self.decisions = decisions
        self.contact = contact
        self.exempt = exempt
        self.challenger = challenger
        self.under_attack = under_attack

    def __call__(self, request: Request) -> Answer | None:
        client = request.client
        if client in self.exempt:
            return None
        action = self.decisions.lookup(client)
        if action is None or action is Action.OBSERVE:
            if not self.under_attack():
                return None
            action = Action.CHALLENGE
        if action is Action.BAN:
            return Answer.text(403, _BANNED_TEXT, self.contact, outcome=outcomes.BANNED)
        challenger = self.challenger
        if challenger is None:
            return Answer.text(429, _CHALLENGED_TEXT, self.contact, outcome=outcomes.CHALLENGED)
        if challenger.verified(request):
            return None
        answer = challenger.page(request)
        answer.outcome = outcomes.CHALLENGED
        return answer


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
) -> list[Part]:
    """Every part before the cache, in the order they run (the module docstring's table)."""
    exempt: set[str] = set()
    parts: list[Part] = [ClientAddressPart(resolver)]
    if challenger is not None:
        parts.append(ChallengeRoutePart(challenger))
    if allowlist is not None:
        parts.append(AllowlistPart(allowlist, exempt))
    if decisions is not None:
        parts.append(DecisionPart(decisions, contact, exempt, challenger=challenger, under_attack=under_attack))
    if limiter is not None:
        parts.append(LimitPart(limiter, contact, exempt))
    if guard is not None and guard.enabled:
        parts.append(SignaturePart(guard, contact, exempt))
    return parts


class Pipeline:
    """Runs `parts`, then the forwarder (cache and origin). The server calls `answer_now` for every request and
    `answer_later` (as a task) when it returned None."""

    def __init__(self, parts: Sequence[Part], forwarder: Forwarder, contact: str) -> None:
        self.parts = tuple(parts)
        self.forwarder = forwarder
        self.contact = contact
        self.failures: dict[str, int] = {}
        self._reported: dict[str, float] = {}

    def answer_now(self, request: Request) -> Answer | None:
        for part in self.parts:
            try:
                answer = part(request)
            except Exception:
                self._failed(part)
                if part.fails == "closed":
                    return Answer.text(500, "The edge failed on this request.", self.contact, outcome=outcomes.ERROR)
                continue
            if answer is not None:
                return answer
        return self.forwarder.answer_now(request)

    async def answer_later(self, request: Request, conn: EdgeConnection) -> None:
        await self.forwarder.answer_later(request, conn)

    def _failed(self, part: Part) -> None:
        count = self.failures[part.name] = self.failures.get(part.name, 0) + 1
        now = time.monotonic()
        if now - self._reported.get(part.name, -1e9) >= 10.0:
            self._reported[part.name] = now
            log.exception("edge part %r failed (fails %s; %d failures so far)", part.name, part.fails, count)
