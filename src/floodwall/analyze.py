"""The `analyze` job: read access logs, detect incidents and attackers, decide, and write the account.

Thin wiring, as DESIGN.md wants: sources (`floodwall.logs`) to the engine (`floodwall.detect`) to policy
(`floodwall.decide`) and geo, then the writers (`floodwall.report`). Progress goes through a callback; only the CLI
prints.
"""

from __future__ import annotations

import logging
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import polars as pl

from floodwall import __version__
from floodwall.config import Settings
from floodwall.decide import Allowlist, Policy
from floodwall.detect import DetectionResult, Engine
from floodwall.errors import FloodwallError
from floodwall.forensics.bundle import shareable_bundle
from floodwall.forensics.fingerprints import FingerprintAccumulator
from floodwall.forensics.job import account_from_logs
from floodwall.forensics.spool import FORENSIC_COLUMNS, FrameSpool
from floodwall.geo import GeoLookup, open_geo
from floodwall.logs import InputStats, LogReader, read_ahead
from floodwall.logs.frame import client_networks
from floodwall.model import Action, Decision, Incident
from floodwall.report import write_atomic, write_json
from floodwall.report.account import Account
from floodwall.report.html import preload_templates
from floodwall.report.jsonreport import blocklist_text, report_document
from floodwall.report.outputs import account_files, apply_account, write_account

__all__ = [
    "FORENSIC_STAGES",
    "STAGES",
    "AnalysisResult",
    "ProgressEvent",
    "StageTimes",
    "analyze",
    "forensic_account",
]

log = logging.getLogger(__name__)

#: (phase, done, total): phase is "reading", "detecting" or "writing"; total may be None when unknown.
ProgressEvent = Callable[[str, int, int | None], None]


#: analyze's stages, in order; the last four are the forensic account and its writing (issue 5's "at most 30%").
STAGES: Final = ("reading", "detecting", "judging", "deciding", "spooling", "forensics", "writing")
FORENSIC_STAGES: Final = ("spooling", "forensics", "writing")


@dataclass
class StageTimes:
    """Wall and CPU seconds spent per stage (`STAGES`), for benchmarks and `--verbose`. `clock` and `cpu_clock` are
    injectable for tests; CPU time is the whole process's (the reader's and Polars' threads included)."""

    clock: Callable[[], float] = time.perf_counter
    cpu_clock: Callable[[], float] = time.process_time
    wall: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        wall, cpu = self.clock(), self.cpu_clock()
        try:
            yield
        finally:
            self.wall[name] += self.clock() - wall
            self.cpu[name] += self.cpu_clock() - cpu

    def timed(self, name: str, frames: Iterable[pl.DataFrame]) -> Iterator[pl.DataFrame]:
        """`frames`, with the time spent producing each counted to `name`."""
        iterator = iter(frames)
        while True:
            with self.stage(name):
                frame = next(iterator, None)
            if frame is None:
                return
            yield frame

    def describe(self) -> str:
        total = sum(self.wall.values()) or 1.0
        forensic = sum(self.wall[name] for name in FORENSIC_STAGES)
        parts = [f"{name} {self.wall[name]:.2f} s (cpu {self.cpu[name]:.2f} s)" for name in STAGES]
        return f"stage times: {', '.join(parts)}; forensics and writing {forensic / total:.1%} of {total:.2f} s"


@dataclass
class AnalysisResult:
    """What `analyze` found and where it wrote it."""

    out_dir: Path
    inputs: list[InputStats]
    detection: DetectionResult
    decisions: list[Decision]
    files: dict[str, Path] = field(default_factory=dict)
    times: StageTimes = field(default_factory=StageTimes)

    @property
    def incidents(self) -> list[Incident]:
        return list(self.detection.incidents)


def analyze(
    logs: Sequence[str | Path],
    *,
    site: str,
    out_dir: Path,
    settings: Settings | None = None,
    fmt: str | None = None,
    tz: str | None = None,
    progress: ProgressEvent | None = None,
    command_line: Sequence[str] | None = None,
    coalition_key: bytes | None = None,
    public: bool = False,
    times: StageTimes | None = None,
) -> AnalysisResult:
    """Analyse `logs` of one site and write into `out_dir` the files of CONTRACT.md: report.json, report.html,
    report.md (and their `--public` twins), indicators.stix.json, blocklist.txt, evidence.json and bundle.json.
    bundle.json holds attackers' addresses as hashes keyed with `coalition_key`, and none without it."""
    settings = settings or Settings()
    started = datetime.now(UTC)

    def report(phase: str, done: int, total: int | None) -> None:
        if progress is not None:
            progress(phase, done, total)

    reader = LogReader(
        logs,
        site=site,
        fmt=fmt or settings.logs.format,
        tz=tz or settings.logs.tz,
        json_fields=settings.logs.json_fields,
        batch_rows=settings.logs.batch_rows,
        progress=lambda done, total: report("reading", done, total),
    )
    times = times or StageTimes()
    engine = Engine(site, settings.detect, live=False)
    with FrameSpool(columns=FORENSIC_COLUMNS, background=True) as spool:
        # The parsed columns the forensic pass needs go to disk as they are read: attackers are known only after
        # detection, and reading the spool back costs a fraction of parsing the log again (stdin included). A batch
        # is written on the spool's thread while it is detected here.
        for frame in times.timed("reading", read_ahead(reader)):
            with times.stage("spooling"):
                spool.add(frame)
            with times.stage("detecting"):
                engine.feed(frame)
        with times.stage("spooling"):
            spool.flush()
        # The writes' CPU is counted in the stage that ran beside them (detecting, mostly): Polars writes on its
        # own threads, which no per-thread clock of ours sees. `spool.write_wall` says how long the writes took.
        with times.stage("judging"):
            detection = engine.finish()
            del engine  # its per-window tables are no longer needed: free them before the forensic pass

        with times.stage("deciding"):
            policy = Policy(allowlist=Allowlist(own_networks=tuple(settings.site.own_networks)))
            decisions = policy.decide(detection.findings, now=detection.window_end or started, site=site)

        geo: GeoLookup | None = None
        try:
            with times.stage("forensics"):
                preload_templates()  # compiled beside the forensic pass, for the writing stage
                # One open database for the sources, the account and the bundle (each opening decoded the AS
                # names again, about 0.1 s); closed once the files are written.
                geo = _open_geo()
                out_dir.mkdir(parents=True, exist_ok=True)
                report("writing", 0, 3)

                def spooled() -> Iterator[pl.DataFrame]:
                    done = 0
                    for frame in spool.frames():
                        done += frame.height
                        report("forensics", done, spool.rows)
                        yield frame

                document, account, fingerprints = forensic_account(
                    spooled,
                    site=site,
                    detection=detection,
                    decisions=decisions,
                    inputs=reader.inputs,
                    timezone=settings.site.timezone,
                    geo=geo,
                )
        except BaseException:
            if geo is not None:
                geo.close()
            raise
    try:
        with times.stage("writing"):
            files, detection = _write_outputs(
                out_dir,
                site=site,
                document=document,
                account=account,
                detection=detection,
                decisions=decisions,
                inputs=reader.inputs,
                fingerprints=fingerprints,
                command_line=command_line or sys.argv,
                coalition_key=coalition_key,
                public=public,
                started=started,
                geo=geo,
            )
    finally:
        if geo is not None:
            geo.close()
    report("writing", 3, 3)
    log.debug("%s", times.describe())
    return AnalysisResult(out_dir, reader.inputs, detection, decisions, files, times)


def forensic_account(
    spooled: Callable[[], Iterable[pl.DataFrame]],
    *,
    site: str,
    detection: DetectionResult,
    decisions: Sequence[Decision],
    inputs: list[InputStats],
    timezone: str = "UTC",
    geo: GeoLookup | None = None,
) -> tuple[dict[str, object], Account, FingerprintAccumulator]:
    """analyze's forensic stage on the detection pass's spooled batches (`spooled()`): report.json's document with
    each incident's sources, the account, and the attackers' request shapes for bundle.json (counted on the same
    pass, from the same attack rows). `benchmarks/bench_report.py --stages` times this very function."""
    sources, geo_database = incident_sources(detection.incidents, geo)
    document = report_document(
        site=site,
        inputs=inputs,
        detection=detection,
        decisions=decisions,
        version=__version__,
        sources=sources,
    )
    document["geo_database"] = geo_database
    fingerprints = FingerprintAccumulator()
    account = account_from_logs(
        spooled,
        site=site,
        detection=detection,
        first_pass=inputs,
        timezone=timezone,
        spooled=True,
        fingerprints=fingerprints,
        geo=geo,
    )
    return document, account, fingerprints


def _write_outputs(
    out_dir: Path,
    *,
    site: str,
    document: dict[str, object],
    account: Account,
    detection: DetectionResult,
    decisions: list[Decision],
    inputs: list[InputStats],
    fingerprints: FingerprintAccumulator,
    command_line: Sequence[str],
    coalition_key: bytes | None,
    public: bool,
    started: datetime,
    geo: GeoLookup | None = None,
) -> tuple[dict[str, Path], DetectionResult]:
    """Every file of CONTRACT.md into `out_dir`; returns their paths by name, and `detection` with the markers the
    account found."""
    apply_account(document, account)
    # The markers the account found belong to the incidents everywhere they are shared (bundle.json too).
    markers = {entry["id"]: tuple(entry.get("markers", ())) for entry in document["incidents"]}  # type: ignore[attr-defined]
    detection = replace(
        detection,
        incidents=tuple(replace(i, markers=markers.get(i.id, i.markers)) for i in detection.incidents),
    )
    files = account_files(out_dir, public=public) | {
        "report.json": out_dir / "report.json",
        "blocklist.txt": out_dir / "blocklist.txt",
        "evidence.json": out_dir / "evidence.json",
        "bundle.json": out_dir / "bundle.json",
    }
    write_json(files["report.json"], document)
    write_atomic(files["blocklist.txt"], blocklist_text(site, detection, decisions, generated=started))
    write_json(files["evidence.json"], evidence_document(inputs, command_line, started))
    bundle = shareable_bundle(
        site, detection, fingerprints, coalition_key, version=__version__, generated=started, geo=geo
    )
    write_json(files["bundle.json"], bundle)
    write_account(out_dir, account, detection.incidents, detection.attackers, public=public, created=started)
    return files, detection


def _open_geo() -> GeoLookup | None:
    """The offline network database, or None (with a warning) when none is installed."""
    try:
        return open_geo()
    except FloodwallError as exc:
        log.warning("no network data for the report: %s", exc)
        return None


def incident_sources(
    incidents: Sequence[Incident], geo: GeoLookup | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, object] | None]:
    """Per incident: its addresses, prefixes and networks (ASN, name, country, addresses) from the offline
    database (`geo`, left open, or else opened and closed here); and which database answered (None when none is
    installed: the counts are then given without ASNs)."""
    if geo is None:
        geo = _open_geo()
        if geo is None:
            return {}, None
        with geo:
            return incident_sources(incidents, geo)
    sources: dict[str, dict[str, Any]] = {}
    for incident in incidents:
        addresses = pl.Series("address", [a for a in incident.attackers if "/" not in a], dtype=pl.String)
        facts = geo.lookup(addresses)
        client_nets = client_networks(addresses)
        asns = (
            facts.filter(pl.col("asn").is_not_null())
            .group_by("asn")
            .agg(pl.col("as_name").first().alias("name"), pl.col("country").mode().first(), pl.len().alias("ips"))
            .sort(["ips", "asn"], descending=[True, False])
        )
        sources[incident.id] = {
            "ips": addresses.n_unique(),
            "prefixes": client_nets.drop_nulls().n_unique(),
            "asns": [
                {"asn": int(r["asn"]), "name": r["name"], "country": r["country"], "ips": int(r["ips"])}
                for r in asns.iter_rows(named=True)
            ],
        }
    return sources, dict(geo.database.to_dict())


def evidence_document(
    inputs: Sequence[InputStats], command_line: Sequence[str], started: datetime
) -> dict[str, object]:
    """evidence.json: what was read (hashes of the stored bytes), by which tool, how, and when."""
    return {
        "floodwall_version": __version__,
        "analysed_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command_line": list(command_line),
        "python": platform.python_version(),
        "polars": pl.__version__,
        "platform": platform.platform(),
        "inputs": [
            {
                "path": stats.path,
                "sha256": stats.sha256,
                "size_bytes": stats.size_bytes,
                "lines": stats.lines,
                "bad_lines": stats.bad_lines,
                "format": stats.format,
            }
            for stats in inputs
        ],
    }


def banned_targets(decisions: Sequence[Decision]) -> list[str]:
    """Targets of ban decisions, in a stable order."""
    return sorted({d.target for d in decisions if d.action is Action.BAN})
