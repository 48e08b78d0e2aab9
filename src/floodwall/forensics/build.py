"""`Forensics`: the forensic pass over a site's Request batches, after detection, and the account it builds.

forensics = Forensics(site, detection, timezone="Europe/Budapest")
for frame in LogReader(logs, site=site):      # a second pass over the same inputs
    forensics.feed(frame)
account = forensics.finish(inputs=reader.inputs, geo=geo, first_pass=first_inputs)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from floodwall import __version__
from floodwall.detect import DetectionResult
from floodwall.forensics.breaches import build_breaches
from floodwall.forensics.charts import build_charts
from floodwall.forensics.collect import Aggregated, Collector, Marked
from floodwall.forensics.fingerprints import FingerprintAccumulator
from floodwall.forensics.infra import GeoSource, build_infrastructure
from floodwall.forensics.mode import build_mode
from floodwall.forensics.narrative import methods_and_limits, summary
from floodwall.forensics.scope import build_scope
from floodwall.forensics.timeline import build_timeline, incident_header, iso, local, minute_table
from floodwall.report.account import Account

__all__ = ["Forensics", "InputFacts", "account_from_frames"]

_AGGREGATING: Final = 2  # batches of the forensic pass aggregated at once (`Forensics.feed_all`)


class InputFacts(Protocol):
    """What the account cites of each input (`floodwall.logs.InputStats` has it)."""

    path: str
    sha256: str | None
    size_bytes: int
    lines: int
    bad_lines: int


class _Geo(GeoSource, Protocol):
    @property
    def database(self) -> Any: ...


class Forensics:
    """See the module docstring. `feed` takes batches in time order; `finish` may be called without any batch
    (stdin could not be re-read): the account then rests on the detection result alone. A `fingerprints`
    accumulator given here is fed the attack rows of every batch (its clients filter is not applied). `spooled`
    says the batches are read back from a `FrameSpool` (see `Collector`)."""

    def __init__(
        self,
        site: str,
        detection: DetectionResult,
        *,
        timezone: str = "UTC",
        fingerprints: FingerprintAccumulator | None = None,
        spooled: bool = False,
    ) -> None:
        self.site = site
        self.detection = detection
        try:
            self.zone = ZoneInfo(timezone)
            self.timezone = timezone
        except (ZoneInfoNotFoundError, ValueError):
            self.zone, self.timezone = ZoneInfo("UTC"), "UTC"
        # The attackers' fingerprints (bundle.json) are counted from the same attack rows, in the same pass.
        self._collector = Collector(detection, fingerprints, spooled=spooled)

    def feed(self, frame: pl.DataFrame) -> None:
        """Take one Request batch of the second pass."""
        self._collector.feed(frame)

    def feed_all(self, frames: Iterable[pl.DataFrame]) -> None:
        """`feed` every batch of `frames`, in a pipeline: the next batch is read and marked on one thread while the
        two before it are aggregated on two others, and the aggregates are kept here in time order. Reading a spooled
        batch back and marking it were a third of the forensic pass, and one batch's queries kept the two cores
        busy only half the time; Polars releases the GIL. At most four batches are held at once."""
        collector, batches = self._collector, iter(frames)

        def next_marked() -> tuple[bool, Marked | None]:
            frame = next(batches, None)
            return (False, None) if frame is None else (True, collector.prepare(frame))

        with ThreadPoolExecutor(1 + _AGGREGATING, thread_name_prefix="floodwall-forensics") as pool:
            pending = pool.submit(next_marked)
            running: deque[Future[Aggregated]] = deque()
            while True:
                more, marked = pending.result()
                if not more:
                    break
                pending = pool.submit(next_marked)
                if marked is not None:
                    running.append(pool.submit(collector.aggregate, marked, collector.watch(marked)))
                if len(running) >= _AGGREGATING:
                    collector.keep(running.popleft().result())
            while running:
                collector.keep(running.popleft().result())

    def finish(
        self,
        *,
        inputs: Sequence[InputFacts] = (),
        first_pass: Sequence[InputFacts] = (),
        geo: _Geo | None = None,
        generated: datetime | None = None,
        hash_note: str | None = None,
    ) -> Account:
        """Build the account. `inputs` are the second pass's input stats, `first_pass` the detection pass's: their
        hashes are compared and the result stated in the methods section (`hash_note`, when given, says instead how
        the two passes relate)."""
        detection = self.detection
        collected = self._collector.collected()
        zone = self.zone
        hashes = {s.path: s.sha256 for s in (first_pass or inputs)}
        minutes = minute_table(detection, collected)
        timeline = build_timeline(detection, collected, minutes, zone)
        scope = build_scope(detection, collected)
        mode = build_mode(detection, collected, hashes, scope["attack_requests"])
        database = dict(geo.database.to_dict()) if geo is not None else None
        described = geo.database.describe() if geo is not None else None
        infrastructure, networks, countries = build_infrastructure(detection, collected, geo, database)
        breaches = build_breaches(detection, collected, hashes, zone)
        incidents = _incidents(detection, mode, zone)
        charts = build_charts(detection, collected, minutes, networks, countries)
        return Account(
            site=self.site,
            timezone=self.timezone,
            public=False,
            generated=iso(generated or datetime.now(UTC)) or "",
            version=__version__,
            summary=summary(detection, timeline, scope, mode, infrastructure, breaches),
            timeline=timeline,
            scope=scope,
            mode=mode,
            infrastructure=infrastructure,
            breaches=breaches,
            incidents=incidents,
            evidence=_evidence(detection, inputs, first_pass, zone),
            methods=methods_and_limits(
                detection,
                described,
                collected.rows > 0,
                _hash_note(inputs, first_pass) if hash_note is None else hash_note,
                collected.pruned_below,
            ),
            charts=charts,
        )


def account_from_frames(
    site: str,
    detection: DetectionResult,
    frames: Iterable[pl.DataFrame],
    *,
    timezone: str = "UTC",
    inputs: Sequence[InputFacts] = (),
    first_pass: Sequence[InputFacts] = (),
    geo: _Geo | None = None,
) -> Account:
    """`Forensics` fed with every frame of `frames`, then finished."""
    forensics = Forensics(site, detection, timezone=timezone)
    forensics.feed_all(frames)
    return forensics.finish(inputs=inputs, first_pass=first_pass, geo=geo)


def _hash_note(inputs: Sequence[InputFacts], first_pass: Sequence[InputFacts]) -> str:
    if not inputs or not first_pass:
        return ""
    first = {s.path: s.sha256 for s in first_pass}
    differ = [s.path for s in inputs if s.path in first and first[s.path] != s.sha256]
    if differ:
        return (
            "WARNING: these inputs changed between the detection pass and the forensic pass (different SHA-256): "
            + ", ".join(differ)
            + ". The account may not match the incidents."
        )
    return "Each input was read twice (detection, then this account) and hashed the same both times."


def _evidence(
    detection: DetectionResult, inputs: Sequence[InputFacts], first_pass: Sequence[InputFacts], zone: ZoneInfo
) -> dict[str, Any]:
    chosen = first_pass or inputs
    return {
        "inputs": [
            {"path": s.path, "sha256": s.sha256, "size_bytes": s.size_bytes, "lines": s.lines, "bad_lines": s.bad_lines}
            for s in chosen
        ],
        "window": {
            "start": iso(detection.window_start),
            "end": iso(detection.window_end),
            "start_local": local(detection.window_start, zone),
            "end_local": local(detection.window_end, zone),
        },
        "requests": detection.requests,
        "addresses": detection.clients,
        "baseline": detection.baseline_method,
    }


def _incidents(detection: DetectionResult, mode: dict[str, Any], zone: ZoneInfo) -> list[dict[str, Any]]:
    out = []
    for incident in detection.incidents:
        markers = [m["marker"] for m in mode["markers"] if incident.id in m.get("incidents", [])]
        out.append(
            incident_header(incident, zone)
            | {
                "peak_rps": round(incident.peak_rps, 1),
                "requests": incident.requests,
                "attack_requests": incident.attack_requests,
                "markers": sorted(set(markers) | set(incident.markers)),
                "phases": [p.label for p in incident.phases],
            }
        )
    return out
