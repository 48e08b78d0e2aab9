"""The kind of a breach incident (scan, brute force or exploit attempt), decided from its clients' hits, with a reason
a person can check.

- **Brute force**: every client of the group is a login or xmlrpc.php poster (`floodwall.detect.breach` decides
  per client: repeated POSTs to login forms or xmlrpc.php, alone or as one of a pool).
- **Scan**: a sweep. The group asks for sensitive files (configuration, backups, admin pages) beside whatever
  payloads it sends, or sends payloads of many kinds (three or
  more of SQL injection, XSS, traversal and code execution), or only probes (file probes, many distinct paths answered
  4xx, or a scanner's user agent; no payload at all). Nikto, sqlmap's crawl mode and WPScan all look like this.
- **Exploit attempt**: a targeted payload sequence, payloads of one or two kinds against a few endpoints without
  probing for files: an actor who knows what it is after (the ThinkPHP or Log4Shell probe, an injection tuned on one
  parameter).

A scanner's user agent (the `scanner` signature family) names the tool, not what it does: sqlmap sends targeted
injections and Nikto sweeps, so the user agent alone never makes an incident a scan when payloads were sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from floodwall.model import IncidentKind, Vector

__all__ = ["KindDecision", "decide_kind", "kind_of"]

#: Sensitive-file hits (all clients of the group) from which a group is sweeping for files, whatever else it sends.
MIN_FILE_PROBES: Final = 5
#: Kinds of payload (of `_PAYLOAD_VECTORS`) from which a group is sweeping, not targeting.
MIN_PAYLOAD_KINDS: Final = 3
_PAYLOAD_VECTORS: Final = (Vector.SQLI, Vector.XSS, Vector.PATH_TRAVERSAL, Vector.RCE)


@dataclass(frozen=True, slots=True)
class KindDecision:
    """An incident's kind and why, in one sentence."""

    kind: IncidentKind
    reason: str


def _count(rows: Iterable[Mapping[str, object]], column: str) -> int:
    return sum(int(str(r[column])) for r in rows)


def decide_kind(rows: list[dict[str, object]]) -> KindDecision:
    """The kind of a group of clients' hit summaries (`files`, `injection`, `probe`, `vectors` and the per-client
    `kind` columns of `floodwall.detect.breach`), and the reason."""
    if {str(r["kind"]) for r in rows} == {IncidentKind.BRUTEFORCE.value}:
        posts = _count(rows, "brute")
        return KindDecision(
            IncidentKind.BRUTEFORCE, f"{posts} POSTs to login forms or xmlrpc.php from {len(rows)} clients"
        )
    # File probes: clients that hit the sensitive-file signatures. The `probing` behaviour (many distinct paths
    # mostly answered 4xx) alone does not count here: every payload is a distinct path its target refuses.
    probers = [r for r in rows if "sensitive-file" in r["family_names"]]  # type: ignore[operator]
    files, injection, probe = _count(probers, "files"), _count(rows, "injection"), _count(rows, "probe")
    vectors = {str(v) for r in rows for v in r["vectors"]}  # type: ignore[attr-defined]
    payloads = [v.value for v in _PAYLOAD_VECTORS if v.value in vectors]
    if injection == 0:
        return KindDecision(IncidentKind.SCAN, f"{probe} probing requests and no payload")
    if files >= MIN_FILE_PROBES or files * 2 >= injection:
        return KindDecision(
            IncidentKind.SCAN, f"{files} requests for sensitive files beside {injection} payloads: a sweep"
        )
    if len(payloads) >= MIN_PAYLOAD_KINDS:
        return KindDecision(IncidentKind.SCAN, f"payloads of {len(payloads)} kinds ({', '.join(payloads)}): a sweep")
    what = " and ".join(payloads) or "injection"
    return KindDecision(
        IncidentKind.EXPLOIT, f"{injection} {what} payloads and no probing for files: a targeted attempt"
    )


def kind_of(rows: list[dict[str, object]]) -> IncidentKind:
    """The kind of a group of clients' hit summaries (see `decide_kind`)."""
    return decide_kind(rows).kind
