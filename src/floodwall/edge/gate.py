"""The accept-time gate: a banned address is refused when it connects, before a byte of its request is read.

Under a flood, the edge's one Python worker per core is the scarce thing; a banned bot on a kept-alive connection
would otherwise cost a parse, the pipeline, a rendered 403, an access-log line and a live-detector row per request
(about 30 µs), at whatever rate it can send, and readers queue behind it. So:

- when a banned peer connects, the worker writes one pre-rendered 403 (the same text the decision part gives, with
  `Connection: close`), half-closes, discards whatever the client sends, and closes when the client does (a
  lingering close, as nginx does, so the answer is not lost to a reset when the client's request arrives after the
  close);
- a banned client found by the decision part on a connection opened before its ban gets its 403 with
  `Connection: close`, so its next request meets this gate.

Only bans are refused here: a challenged client needs its page, and verified crawlers (a user agent *and* an address
in the crawler's published ranges) can only be told apart with the request, so an address inside any crawler's
ranges goes on to the pipeline. Neither is the gate used for a peer that is a trusted proxy (a CDN's address speaks
for many readers) or inside the outlet's own or monitors' networks. It fails open: a failing lookup lets the
connection in, and the pipeline decides as before.

Refused connections are counted in the metrics (as banned) and write one access-log line each (status 403, the
request line, `Host` and `User-Agent` as found in the client's first bytes, read without the parser), so the
outlet's evidence still shows what a banned source kept sending. They write no live-detector row: the address is
already convicted, and a ban's expiry is what lets detection see it again.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Final

from floodwall.edge.http import Answer, render_head
from floodwall.model import Action

if TYPE_CHECKING:
    from floodwall.decide.allowlist import Allowlist
    from floodwall.edge.clientaddr import ClientAddress
    from floodwall.store.cache import DecisionCache

__all__ = ["BANNED_TEXT", "AcceptGate", "Spared", "refused_fields"]

BANNED_TEXT: Final = "Your address has been blocked by this site's protection against attacks."
#: Addresses whose exemption verdict is remembered before the memory is cleared.
_REMEMBERED: Final = 65_536
#: The most of a refused request's target and fields kept for its access-log line.
_LOGGED_BYTES: Final = 2048
_LOGGED_FIELDS: Final = (b"host:", b"user-agent:")


class Spared:
    """Peers the connection-level defences leave to the per-request parts: trusted proxies, the outlet's own and
    monitors' networks, verified crawlers' ranges. `spared(peer)` is remembered per address."""

    def __init__(self, resolver: ClientAddress, allowlist: Allowlist | None) -> None:
        self.resolver = resolver
        networks = []
        if allowlist is not None:
            for cidr in (*allowlist.own_networks, *allowlist.monitor_networks):
                networks.append(ipaddress.ip_network(cidr, strict=False))
            for _, ranges in allowlist.crawler_ranges.values():
                networks.extend(ipaddress.ip_network(cidr, strict=False) for cidr in ranges)
        self._networks = tuple(networks)
        self._verdicts: dict[str, bool] = {}

    def __call__(self, peer: str) -> bool:
        verdict = self._verdicts.get(peer)
        if verdict is None:
            if len(self._verdicts) >= _REMEMBERED:
                self._verdicts.clear()
            verdict = self.resolver.trusts_peer(peer)
            if not verdict and self._networks:
                try:
                    address = ipaddress.ip_address(peer)
                except ValueError:
                    verdict = True  # not an address (a Unix socket): leave it to the pipeline
                else:
                    verdict = any(address in network for network in self._networks)
            self._verdicts[peer] = verdict
        return verdict


class AcceptGate:
    """`refuses(peer)`: True when `peer` is banned and may be refused before its request is read (module docstring).

    `answer` is the bytes to write to it: a 403 with the human text and contact line, closing the connection.
    """

    def __init__(self, decisions: DecisionCache, spared: Spared, contact: str) -> None:
        self.decisions = decisions
        self.spared = spared
        text = Answer.text(403, BANNED_TEXT, contact, outcome=0)
        fields = [
            *text.headers,
            (b"content-length", b"%d" % len(text.body)),
            (b"connection", b"close"),
        ]
        self.answer: bytes = render_head(403, fields) + text.body
        self.body_bytes = len(text.body)
        self.refused = 0

    def refuses(self, peer: str) -> bool:
        """Whether to refuse a connection from `peer` (canonical address) at once."""
        try:
            if self.decisions.lookup(peer) is not Action.BAN:
                return False  # the common case: one dict lookup
            return not self.spared(peer)
        except Exception:  # fails open: the pipeline decides for this connection's requests
            return False

    def closes_after_ban(self, client: str, peer: str) -> bool:
        """Whether a banned request's connection should close after its 403 (its next connection meets the gate)."""
        return client == peer and not self.spared(peer)


def refused_fields(data: bytes) -> tuple[str, str, str]:
    """What a refused connection's first bytes show of its request, for its access-log line: the request line when it
    looks like one ("" otherwise, logged as "-" like an unreadable request's), and `Host` and `User-Agent` when they
    came in the same bytes ("" when not), as latin-1 text to be escaped by the log. Read with a few byte searches,
    not the parser: this runs once per refused connection, under a flood. Each is cut at `_LOGGED_BYTES`."""
    line, _, rest = data.partition(b"\r\n")
    parts = line[: 2 * _LOGGED_BYTES].split(b" ")
    request_line = ""
    if len(parts) == 3 and parts[0].isalpha() and parts[0].isupper() and parts[2].startswith(b"HTTP/"):
        request_line = b" ".join((parts[0][:16], parts[1][:_LOGGED_BYTES], parts[2][:8])).decode("latin-1")
    found = ["", ""]
    lowered = rest[: 4 * _LOGGED_BYTES].lower()
    for k, name in enumerate(_LOGGED_FIELDS):
        if lowered.startswith(name):
            start = len(name)
        else:
            at = lowered.find(b"\n" + name)
            if at < 0:
                continue
            start = at + len(name) + 1
        end = lowered.find(b"\r", start)
        found[k] = rest[start : end if end >= 0 else len(lowered)].strip()[:_LOGGED_BYTES].decode("latin-1")
    return request_line, found[0], found[1]
