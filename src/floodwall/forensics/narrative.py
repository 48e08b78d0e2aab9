"""The account's words: the summary a person would tell first, and the methods and limits of the evidence."""

from __future__ import annotations

from typing import Any

from floodwall.detect import DetectionResult
from floodwall.model import IncidentKind

__all__ = ["methods_and_limits", "summary"]


def summary(
    detection: DetectionResult,
    timeline: dict[str, Any],
    scope: dict[str, Any],
    mode: dict[str, Any],
    infrastructure: dict[str, Any],
    breaches: list[dict[str, Any]],
) -> dict[str, Any]:
    """Headline figures and the sentences that open the report."""
    floods = [i for i in detection.incidents if i.kind is IncidentKind.FLOOD]
    lines: list[str] = []
    if not detection.incidents:
        crowds = [s for s in detection.surges if s.verdict == "flash-crowd"]
        lines.append(
            f"No attack was found in {scope['requests']:,} requests from {detection.clients:,} addresses: "
            "the traffic in this log looks like ordinary readers and robots."
        )
        if crowds:
            lines.append(f"{len(crowds)} surge(s) of readers were seen and judged flash crowds, not attacks.")
        if detection.surges and not crowds:
            lines.append(f"{len(detection.surges)} rise(s) of the request rate were checked and not judged an attack.")
    if detection.incidents and not floods:
        peak = scope["peaks"]["60s"]["all"]
        lines.append(
            f"No flood was found: {scope['requests']:,} requests from {detection.clients:,} addresses, the request "
            f"rate peaking at {peak['rps']:,.1f} req/s over a minute, within the site's usual range."
        )
    for incident in floods:
        phases = [p for p in timeline["phases"] if p["incident_id"] == incident.id]
        lines.append(
            f"A flood ({', '.join(v.value for v in incident.vectors)}) from {len(incident.attackers):,} addresses "
            f"ran from {incident.start:%Y-%m-%d %H:%M} to {incident.end:%Y-%m-%d %H:%M} UTC in {len(phases)} "
            f"phase(s), peaking at {incident.peak_rps:,.1f} requests per second."
        )
    if floods:
        share = scope["attack_share"]
        lines.append(
            f"Attack traffic: {scope['attack_requests']:,} of {scope['requests']:,} requests ({share:.0%}); "
            f"peak {scope['peaks']['1s']['all']['requests']:,} requests in one second."
        )
    networks = infrastructure.get("networks") or []
    if networks and any(n["asn"] for n in networks):
        named = [f"AS{n['asn']} {n['name'] or ''} ({n['country'] or '?'})".strip() for n in networks[:3] if n["asn"]]
        lines.append(
            f"The attacking addresses sit in {infrastructure['networks_total']} network(s); most in "
            + "; ".join(named)
            + "."
        )
    markers = mode.get("markers") or []
    if markers:
        lines.append(
            "Markers left in the attack traffic: " + ", ".join(f"\u201c{m['marker']}\u201d" for m in markers[:4]) + "."
        )
    for breach in breaches:
        text = (
            f"Breach attempt ({breach['kind']}: {', '.join(breach['vectors'])}) from {breach['addresses']} "
            f"address(es), {breach['requests']:,} requests."
        )
        if breach["possible_success"]:
            text += " Some of its probes or payloads were answered 2xx (or a login redirected): check them."
        elif breach["answered_2xx"]:
            text += f" {breach['answered_2xx']:,} of its requests got 2xx answers, none to a probe or payload."
        lines.append(text)
    return {
        "lines": lines,
        "incidents": len(detection.incidents),
        "floods": len(floods),
        "breach_attempts": len(breaches),
        "possible_breach_success": any(b["possible_success"] for b in breaches),
        "first_anomaly": timeline["first_anomaly"],
        "end": timeline["end"],
    }


def methods_and_limits(
    detection: DetectionResult, database: str | None, second_pass: bool, hash_note: str, pruned: int
) -> list[str]:
    """What was done, and what an access log cannot show."""
    out = [
        "Every input was hashed (SHA-256) as it was read; evidence.json lists each file's hash, size and line "
        "count, the tool version, the command line and the time. Sample requests cite the input, its hash and "
        "the line number, so anyone holding the log can check them.",
        hash_note,
        f"Incidents come from the request rate against the site's own baseline ({detection.baseline_method}), "
        "client behaviour per minute (rate, regularity, pages without assets, query strings, user agents), fleets "
        "of clients acting together, and breach-attempt signatures (CRS-style families). A flash-crowd guard "
        "keeps readers of breaking news out of the attacker lists.",
        "The per-second attack rate counts the requests of the addresses judged attackers while their incident "
        "ran; a reader who shared an address with an attacker (carrier-grade NAT, a proxy) is counted with it.",
        "Markers are strings (user agents, query keys, path words, referers) carried by at least "
        "0.2% of the attack requests from at least two attacking addresses and almost never by other traffic. "
        "Words of paths answered 404 are not considered (a random-path flood makes each one unique); address "
        "counts of markers are lower bounds on logs read in several batches. "
        + (
            f"Values seen fewer than {pruned} times in normal traffic were not kept (bounded memory). "
            if pruned
            else ""
        ),
        "An access log shows what reached the web server, not what a CDN, firewall or ban stopped before it: "
        "once bans were in force, the attack looks smaller here than it was. It cannot show the body of POST "
        "requests (brute-force passwords, exploit payloads), nor who is behind an address: residential proxies "
        "and compromised machines lend addresses of uninvolved people.",
        "Times are the server's clock as logged, converted to UTC; a server clock that drifted shifts the whole "
        "timeline. Local times use the site's time zone.",
        "A 2xx answer to a breach attempt is a possible success, not proof: many sites answer 200 to anything. "
        "Check those requests against the application's own logs.",
        f"Network data: {database}."
        if database
        else "Network data: no offline database was available, so networks and countries are not named.",
        "Hosting versus access networks is judged from the network's registered name where the database has no "
        "flag; treat it as a hint.",
    ]
    if not second_pass:
        out.insert(
            1,
            "The input could not be read a second time (it came from stdin), so this account lacks sample "
            "requests, markers and per-phase details; save the log to a file and run again for them.",
        )
    return [line for line in out if line]
