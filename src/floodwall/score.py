"""Scores analyze's and correlate's outputs against simulate's ground truth.

Reads `TRUTH/truth.json` (docs/truth.md), `RESULTS/<site>/report.json` per site and `RESULTS/campaigns/campaigns.json`
(CONTRACT.md), and returns one JSON-ready document: attacker precision, recall and F1 per site and overall; false
positives among flash-crowd clients, crawlers, monitors and all readers; incident recall and precision with start
and end errors; vector agreement; markers found; campaign linking (pairwise precision and recall, adjusted Rand
index). A missing report counts as a report with no incidents. Reported CIDRs count as every address of the log
they cover.

Conventions: a ratio with nothing to count on either side is 1.0 (nothing to find, nothing wrongly found); with
truth to find and nothing reported it is 0.0. Vector agreement and markers found count every truth incident or
marker, a missed one as 0, so an empty results folder scores 0 everywhere there was something to find.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from datetime import datetime
from itertools import combinations
from math import comb
from pathlib import Path
from typing import Any

import numpy as np

from floodwall import __version__
from floodwall.errors import BundleError, InputError

__all__ = ["results_from_truth", "score"]

#: A reported incident may start or end this long outside the truth and still be the same incident.
MATCH_SLACK_S = 300.0
#: A reported phase is the truth's phase when it starts within 30 s and ends within 2 minutes of it (issue 4's
#: tolerance for incidents).
PHASE_START_SLACK_S = 30.0
PHASE_END_SLACK_S = 120.0


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise (InputError if what == "the truth" else BundleError)(f"{path}: {what} is not valid JSON: {exc}") from None


def _time(value: object, path: Path, field: str) -> float:
    if not isinstance(value, str):
        raise BundleError(f"{path}: field '{field}' must be an ISO 8601 time, got {value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise BundleError(f"{path}: field '{field}' = {value!r} is not an ISO 8601 time") from None


class _Universe:
    """Every address of one site's log, for expanding reported CIDRs into the addresses they cover."""

    def __init__(self, addresses: set[str]) -> None:
        self.addresses = sorted(addresses)
        self.known = frozenset(addresses)
        parsed = [ipaddress.ip_address(a) for a in self.addresses]
        self.v4 = [a for a, p in zip(self.addresses, parsed, strict=True) if p.version == 4]
        self.v6 = [a for a, p in zip(self.addresses, parsed, strict=True) if p.version == 6]
        self.v4_int = np.array([int(p) for p in parsed if p.version == 4], dtype=np.uint64)
        v6_int = [int(p) for p in parsed if p.version == 6]
        self.v6_hi = np.array([v >> 64 for v in v6_int], dtype=np.uint64)
        self.v6_lo = np.array([v & ((1 << 64) - 1) for v in v6_int], dtype=np.uint64)

    def expand(self, entry: str) -> set[str]:
        """The addresses of the log an entry names; an address absent from the log stands for itself."""
        try:
            net = ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            return {entry.strip()}
        if net.num_addresses == 1:
            return {str(net.network_address)}
        base, mask = int(net.network_address), int(net.netmask)
        if net.version == 4:
            hit = (self.v4_int & np.uint64(mask)) == np.uint64(base)
            return {self.v4[i] for i in np.flatnonzero(hit).tolist()} or {str(net)}
        full = (1 << 64) - 1
        hit = ((self.v6_hi & np.uint64(mask >> 64)) == np.uint64(base >> 64)) & (
            (self.v6_lo & np.uint64(mask & full)) == np.uint64(base & full)
        )
        return {self.v6[i] for i in np.flatnonzero(hit).tolist()} or {str(net)}


def _ratio(hits: int, total: int, nothing_expected: bool) -> float:
    if total:
        return hits / total
    return 1.0 if nothing_expected else 0.0


def _prf(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    precision = _ratio(tp, tp + fp, tp + fn == 0)
    recall = _ratio(tp, tp + fn, True)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
    }


def _reported(results: Path, site: str) -> tuple[Path, list[dict[str, Any]], bool]:
    path = results / site / "report.json"
    if not path.exists():
        return path, [], False
    data = _read_json(path, "the report")
    if not isinstance(data, dict) or not isinstance(data.get("incidents"), list):
        raise BundleError(f"{path}: field 'incidents' must be a list")
    incidents: list[dict[str, Any]] = []
    for i, inc in enumerate(data["incidents"]):
        where = f"incidents.{i}"
        if not isinstance(inc, dict):
            raise BundleError(f"{path}: field '{where}' must be an object")
        for key in ("id", "kind"):
            if not isinstance(inc.get(key), str):
                raise BundleError(f"{path}: field '{where}.{key}' must be a string")
        for key in ("attackers", "vectors", "markers"):
            if not isinstance(inc.get(key, []), list):
                raise BundleError(f"{path}: field '{where}.{key}' must be a list")
        incidents.append(
            {
                **inc,
                "_start": _time(inc.get("start"), path, f"{where}.start"),
                "_end": _time(inc.get("end"), path, f"{where}.end"),
            }
        )
    return path, incidents, True


def _match(truth: list[dict[str, Any]], reported: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of incidents of the same kind, largest time overlap first."""
    candidates: list[tuple[float, int, int]] = []
    for t_i, t in enumerate(truth):
        t_start, t_end = t["_start"], t["_end"]
        for r_i, r in enumerate(reported):
            if r["kind"] != t["kind"]:
                continue
            overlap = min(t_end, r["_end"] + MATCH_SLACK_S) - max(t_start, r["_start"] - MATCH_SLACK_S)
            if overlap > 0:
                candidates.append((overlap, t_i, r_i))
    pairs: list[tuple[int, int]] = []
    used_t: set[int] = set()
    used_r: set[int] = set()
    for _, t_i, r_i in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):
        if t_i not in used_t and r_i not in used_r:
            pairs.append((t_i, r_i))
            used_t.add(t_i)
            used_r.add(r_i)
    return sorted(pairs)


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _marker_found(marker: str, reported: set[str]) -> bool:
    return any(marker in r or (len(r) >= 4 and r in marker) for r in reported)


def _score_site(site: dict[str, Any], results: Path) -> tuple[dict[str, Any], list[tuple[str, str, str | None]]]:
    name = site["name"]
    path, reported, found = _reported(results, name)
    truth = [
        {**t, "_start": _time(t["start"], path, "start"), "_end": _time(t["end"], path, "end")}
        for t in site["incidents"]
    ]
    attackers = {a for t in truth for a in t["attackers"]}
    crowd = {a for f in site["flash_crowds"] for a in f["clients"]}
    robots = {r["address"]: r["kind"] for r in site["automation"]}
    readers = set(site["readers"])
    universe = _Universe(attackers | crowd | readers | set(robots))
    flagged: set[str] = set()
    for r in reported:
        for entry in r.get("attackers", []):
            flagged |= universe.expand(str(entry))
    fp = flagged - attackers
    pairs = _match(truth, reported)
    errors_start = [abs(reported[r]["_start"] - truth[t]["_start"]) for t, r in pairs]
    errors_end = [abs(reported[r]["_end"] - truth[t]["_end"]) for t, r in pairs]
    by_truth = dict(pairs)
    agreement = [
        _jaccard(set(t["vectors"]), {str(v) for v in reported[by_truth[i]].get("vectors", [])})
        if i in by_truth
        else 0.0
        for i, t in enumerate(truth)
    ]
    phases = _phases([(truth[t], reported[r]) for t, r in pairs if truth[t]["kind"] == "flood"], path)
    planted = sorted({m for t in truth for m in t.get("markers", [])})
    said = {str(m).lower() for r in reported for m in r.get("markers", [])}
    markers = {m: _marker_found(m, said) for m in planted}
    result = {
        "report": str(path) if found else None,
        "attackers": _prf(len(flagged & attackers), len(fp), len(attackers - flagged)),
        "false_positives": {
            "flash_crowd": len(fp & crowd),
            "crawlers": sum(1 for a in fp if robots.get(a) in ("crawler", "feed-reader", "link-expander")),
            "monitors": sum(1 for a in fp if robots.get(a) == "monitor"),
            "readers": len(fp & readers),
            "not_in_log": len(fp - universe.known),
        },
        "incidents": {
            "truth": len(truth),
            "reported": len(reported),
            "matched": len(pairs),
            "recall": _ratio(len(pairs), len(truth), True),
            "precision": _ratio(len(pairs), len(reported), not truth),
            "start_error_s": _errors(errors_start),
            "end_error_s": _errors(errors_end),
            "pairs": [{"truth": truth[t]["id"], "reported": reported[r]["id"]} for t, r in pairs],
        },
        "phases": phases,
        "vector_agreement": sum(agreement) / len(agreement) if agreement else 1.0,
        "markers": {"planted": planted, "found": [m for m, ok in markers.items() if ok]},
        "markers_found": _ratio(sum(markers.values()), len(markers), True),
    }
    links = [(name, t["id"], reported[by_truth[i]]["id"] if i in by_truth else None) for i, t in enumerate(truth)]
    return result, links


def _phases(pairs: list[tuple[dict[str, Any], dict[str, Any]]], path: Path) -> dict[str, int]:
    """Phases of matched flood incidents: how many each side has; truth phases matched by a reported one (start within
    `PHASE_START_SLACK_S`, end within `PHASE_END_SLACK_S`); truth boundaries (a phase's start after the first) that a
    reported phase starts within `PHASE_END_SLACK_S` of."""
    counts = {"truth": 0, "reported": 0, "matched": 0, "boundaries": 0, "boundaries_found": 0}
    for t, r in pairs:
        told = [p for p in t.get("phases", []) if isinstance(p, dict)]
        said = [p for p in r.get("phases", []) if isinstance(p, dict)]
        t_spans = [(_time(p.get("start"), path, "phases.start"), _time(p.get("end"), path, "phases.end")) for p in told]
        r_spans = [(_time(p.get("start"), path, "phases.start"), _time(p.get("end"), path, "phases.end")) for p in said]
        counts["truth"] += len(t_spans)
        counts["reported"] += len(r_spans)
        counts["matched"] += sum(
            any(abs(a - ra) <= PHASE_START_SLACK_S and abs(b - rb) <= PHASE_END_SLACK_S for ra, rb in r_spans)
            for a, b in t_spans
        )
        counts["boundaries"] += max(0, len(t_spans) - 1)
        counts["boundaries_found"] += sum(
            any(abs(a - ra) <= PHASE_END_SLACK_S for ra, _ in r_spans[1:]) for a, _ in t_spans[1:]
        )
    return counts


def _errors(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"mean": float(np.mean(values)), "median": float(np.median(values)), "max": float(np.max(values))}


def _ari(truth: list[str], predicted: list[str]) -> float:
    n = len(truth)
    if n < 2:
        return 1.0
    index = sum(comb(c, 2) for c in Counter(zip(truth, predicted, strict=True)).values())
    a = sum(comb(c, 2) for c in Counter(truth).values())
    b = sum(comb(c, 2) for c in Counter(predicted).values())
    expected = a * b / comb(n, 2)
    top = (a + b) / 2
    if top == expected:
        same = len(set(truth)) == len(set(predicted)) == len(set(zip(truth, predicted, strict=True)))
        return 1.0 if same else 0.0
    return (index - expected) / (top - expected)


def _campaigns(truth: dict[str, Any], results: Path, links: list[tuple[str, str, str | None]]) -> dict[str, Any]:
    path = results / "campaigns" / "campaigns.json"
    membership: dict[tuple[str, str], str] = {}
    if path.exists():
        data = _read_json(path, "the campaigns file")
        if not isinstance(data, dict) or not isinstance(data.get("campaigns"), list):
            raise BundleError(f"{path}: field 'campaigns' must be a list")
        for c_i, campaign in enumerate(data["campaigns"]):
            members = campaign.get("incidents") if isinstance(campaign, dict) else None
            if not isinstance(members, list):
                raise BundleError(f"{path}: field 'campaigns.{c_i}.incidents' must be a list")
            for member in members:
                if isinstance(member, dict):
                    membership[(str(member.get("site")), str(member.get("id")))] = f"c{c_i}"
    truth_label = {(i["site"], i["id"]): c["id"] for c in truth["campaigns"] for i in c["incidents"]}
    items = [(site, tid) for site, tid, _ in links]
    expected = [truth_label.get(item, f"solo:{item}") for item in items]
    guessed = [
        membership.get((site, rid), f"solo:{site}/{rid}") if rid is not None else f"missed:{site}/{tid}"
        for site, tid, rid in links
    ]
    same_truth = {(a, b) for a, b in combinations(range(len(items)), 2) if expected[a] == expected[b]}
    same_guess = {(a, b) for a, b in combinations(range(len(items)), 2) if guessed[a] == guessed[b]}
    both = len(same_truth & same_guess)
    return {
        "file": str(path) if path.exists() else None,
        "pairwise_precision": _ratio(both, len(same_guess), not same_truth),
        "pairwise_recall": _ratio(both, len(same_truth), True),
        "adjusted_rand_index": _ari(expected, guessed) if items else 1.0,
    }


def score(truth_dir: Path, results_dir: Path) -> dict[str, Any]:
    """The score document for the results in `results_dir` against `truth_dir/truth.json`."""
    truth_path = truth_dir / "truth.json"
    if not truth_path.exists():
        raise InputError(f"{truth_path}: no truth.json here; run `floodwall simulate` first")
    truth = _read_json(truth_path, "the truth")
    if not isinstance(truth, dict) or not isinstance(truth.get("sites"), list):
        raise InputError(f"{truth_path}: field 'sites' is missing; is this simulate's truth.json?")
    if not results_dir.is_dir():
        raise InputError(f"{results_dir}: no such results folder")
    sites: dict[str, Any] = {}
    links: list[tuple[str, str, str | None]] = []
    for site in truth["sites"]:
        sites[site["name"]], site_links = _score_site(site, results_dir)
        links += site_links
    total = {
        k: sum(int(s["attackers"][k]) for s in sites.values())
        for k in ("true_positives", "false_positives", "false_negatives")
    }
    fps = {
        k: sum(int(s["false_positives"][k]) for s in sites.values())
        for k in next(iter(sites.values()))["false_positives"]
    }
    n_truth = sum(s["incidents"]["truth"] for s in sites.values())
    n_reported = sum(s["incidents"]["reported"] for s in sites.values())
    n_matched = sum(s["incidents"]["matched"] for s in sites.values())
    agreement = [s["vector_agreement"] * s["incidents"]["truth"] for s in sites.values()]
    phases = {k: sum(int(s["phases"][k]) for s in sites.values()) for k in next(iter(sites.values()))["phases"]}
    planted = sum(len(s["markers"]["planted"]) for s in sites.values())
    found = sum(len(s["markers"]["found"]) for s in sites.values())
    return {
        "floodwall_version": __version__,
        "scenario": truth.get("scenario"),
        "truth": str(truth_path),
        "results": str(results_dir),
        "overall": {
            "attackers": _prf(total["true_positives"], total["false_positives"], total["false_negatives"]),
            "false_positives": fps,
            "incidents": {
                "truth": n_truth,
                "reported": n_reported,
                "matched": n_matched,
                "recall": _ratio(n_matched, n_truth, True),
                "precision": _ratio(n_matched, n_reported, not n_truth),
            },
            "phases": phases,
            "vector_agreement": sum(agreement) / n_truth if n_truth else 1.0,
            "markers_found": _ratio(found, planted, True),
            "campaigns": _campaigns(truth, results_dir, links),
        },
        "sites": sites,
    }


def results_from_truth(truth_dir: Path, out_dir: Path) -> None:
    """Write the results a perfect analyze and correlate would: the truth, in their formats (for tests and demos)."""
    truth = _read_json(truth_dir / "truth.json", "the truth")
    for site in truth["sites"]:
        folder = out_dir / site["name"]
        folder.mkdir(parents=True, exist_ok=True)
        incidents = [
            {key: inc[key] for key in ("id", "kind", "start", "end", "vectors", "attackers", "markers", "phases")}
            | {"peak_rps": inc["peak_rps"], "requests": inc["requests"], "attack_requests": inc["requests"]}
            for inc in site["incidents"]
        ]
        report = {
            "floodwall_version": __version__,
            "site": site["name"],
            "inputs": [],
            "window": site["window"],
            "incidents": incidents,
        }
        (folder / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (out_dir / "campaigns").mkdir(parents=True, exist_ok=True)
    campaigns = {
        "campaigns": [
            {"id": c["id"], "confidence": 1.0, "incidents": c["incidents"], "evidence": {}} for c in truth["campaigns"]
        ]
    }
    (out_dir / "campaigns" / "campaigns.json").write_text(json.dumps(campaigns, indent=1) + "\n", encoding="utf-8")
