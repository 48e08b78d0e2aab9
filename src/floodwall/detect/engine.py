"""The detection engine: time-ordered Request batches in, findings as they firm up, and at the end the incidents.

    engine = Engine("example-news")
    for frame in reader:                  # batches of any size, one second (live follower, edge) or 500k rows
        for finding in engine.feed(frame):
            ...                           # live: findings against a running flood, within seconds of its onset
    result = engine.finish()              # incidents, findings, attackers and a per-second timeline

`feed` keeps columnar aggregates only (per-second counts, per-client windows, aggregated signature hits) plus a
short horizon of raw rows for live judgement; `finish` judges the whole log with hindsight (baselines over all
quiet time, isolation forest on quiet clients) and is what batch analysis reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from floodwall.detect.baseline import minute_baseline
from floodwall.detect.breach import (
    BREACH_SCHEMA,
    BreachGroup,
    breach_groups,
    login_posters,
    payload_senders,
    probing_clients,
)
from floodwall.detect.clients import features_of, preload_forest
from floodwall.detect.history import Summary, WindowHistory, summarise, window_sums
from floodwall.detect.judge import JudgeContext, judge_totals
from floodwall.detect.live import LiveWatch
from floodwall.detect.matching import BatchMatcher, SignatureMatcher
from floodwall.detect.onset import Surge, find_surges, phases_of
from floodwall.detect.result import ATTACKER_SCHEMA, DetectionResult, SurgeVerdict, attack_pairs, timeline_from
from floodwall.detect.settings import DetectSettings
from floodwall.detect.windows import ClientWindows, SecondCounter, batch_tokens
from floodwall.logs.frame import compacted
from floodwall.model import Finding, Incident, IncidentKind, Vector

__all__ = ["Engine", "SignatureMatcher"]

log = logging.getLogger(__name__)

_MARGIN = timedelta(minutes=5)
_BEFORE = timedelta(minutes=90)
_BRUTE_VECTORS = [Vector.LOGIN_BRUTEFORCE.value, Vector.XMLRPC_ABUSE.value]
_AFTER = timedelta(minutes=60)


def _default_matcher(settings: DetectSettings) -> SignatureMatcher | None:
    try:
        from floodwall.detect.signatures import load_engine

        cache = settings.signatures_cache
        return load_engine(cache_dir=Path(cache) if cache else "default").match
    except Exception as exc:  # a missing rules package or hyperscan build must not stop flood detection
        log.warning("breach signatures disabled: %s", exc)
        return None


def _attack_span(hostile: pl.DataFrame, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """From the attackers' first request to their last: a surge's edges are blurred by readers (a crowd that read
    about the attack, an origin catching up), the attackers' own requests are not."""
    first, last = hostile.get_column("first_ts").min(), hostile.get_column("last_ts").max()
    if isinstance(first, datetime) and isinstance(last, datetime) and first < last:
        return first, last
    return start, end


class Engine:
    """One site's detection engine; see the module docstring."""

    def __init__(
        self,
        site: str,
        settings: DetectSettings | None = None,
        clock: Callable[[], datetime] | None = None,
        *,
        signatures: SignatureMatcher | None = None,
        live: bool = True,
        history: bool = True,
        memory_windows: int = 400_000,
        background_profile: bool = False,
    ) -> None:
        # `history=False` (a watcher or the edge, running for weeks) keeps no closed windows or hits for `finish()`:
        # the live judge has its own bounded horizon, and memory must not grow with uptime.
        self._history = history
        self.site = site
        self.settings = settings or DetectSettings()
        self.clock = clock or (lambda: datetime.now(UTC))
        self._counter = SecondCounter()
        self._windows = ClientWindows(self.settings.window_s)
        # Every closed window, for finish(): past `memory_windows` rows, in files on disk (see detect.history).
        self._closed = WindowHistory(memory_windows)
        self._hits: list[pl.DataFrame] = []
        self._agents: dict[int, str] = {}
        self._batches = BatchMatcher(signatures) if signatures is not None else None
        self._matcher_loaded = signatures is not None or not self.settings.signatures
        self._live = LiveWatch(site, self.settings, clock=self.clock, background=background_profile) if live else None
        self._finished = False
        if history:
            preload_forest()  # finish() fits a forest; its import then overlaps reading

    # --- streaming ----------------------------------------------------------------------------------------------

    def feed(self, frame: pl.DataFrame) -> list[Finding]:
        """Take one time-ordered batch; return findings that are new or stronger since the last batch."""
        if self._finished:
            raise RuntimeError("Engine.feed after finish(): make a new Engine")
        if frame.height == 0:
            return []
        toks, plain, browser, agents = batch_tokens(frame)
        seconds = self._counter.add(toks)
        closed = self._windows.add(toks)
        if closed.height and self._history:
            self._closed.add(closed)
        self._remember_agents(agents)
        if self._live is None:
            # Batch analysis reads the hits only in finish(): several batches are matched in one call (see
            # detect.matching), the rest of them by `_flush_hits`.
            if self._history:
                self._keep_hits(*self._matching(lambda m: m.defer(frame, plain, browser), []))
            return []
        no_hits = [pl.DataFrame(schema=BREACH_SCHEMA)]
        breach = self._matching(lambda m: [m.match(frame, plain, browser)], no_hits)[0]
        self._keep_hits(breach)
        return self._live.feed(toks, seconds, closed, breach)

    def close(self) -> None:
        """Join the live judge's profile builder (`background_profile=True`: the watcher calls this as it stops)."""
        if self._live is not None:
            self._live.close()

    def _remember_agents(self, agents: pl.DataFrame) -> None:
        """Each agent's text by its `ua_id`; `agents`: the batch's distinct agents (`windows.BatchTokens.agents`)."""
        if len(self._agents) >= 100_000:
            return
        for agent, ua_id in agents.select("user_agent", "ua_id").iter_rows():
            self._agents.setdefault(int(ua_id), agent or "")

    def _matching(
        self, call: Callable[[BatchMatcher], list[pl.DataFrame]], without: list[pl.DataFrame]
    ) -> list[pl.DataFrame]:
        """`call` on the batch matcher (the signatures loaded on first use), or `without` when they are off."""
        if not self._matcher_loaded:
            matcher = _default_matcher(self.settings)
            self._batches = BatchMatcher(matcher) if matcher is not None else None
            self._matcher_loaded = True
        return call(self._batches) if self._batches is not None else without

    def _keep_hits(self, *aggregated: pl.DataFrame) -> None:
        if self._history:
            self._hits.extend(compacted(frame) for frame in aggregated if frame.height)

    def _flush_hits(self) -> None:
        """Match the batches `feed` kept for matching together (batch analysis), before judging."""
        if self._batches is not None:
            self._keep_hits(*self._batches.flush())

    # --- the whole log ------------------------------------------------------------------------------------------

    def finish(self) -> DetectionResult:
        """Judge everything fed so far and return the result; the engine takes no more batches afterwards."""
        if not self._history:
            raise RuntimeError("Engine.finish() needs the history that Engine(history=False) does not keep")
        self._finished = True
        self._flush_hits()
        try:
            return self._judge_history()
        finally:
            self._closed.close()

    def _judge_history(self) -> DetectionResult:
        self._closed.add(self._windows.flush())
        seconds = self._counter.frame()
        if self._closed.rows == 0:
            return DetectionResult.empty(self.site, self.clock())
        baseline = minute_baseline(seconds, self.settings)
        surges = find_surges(seconds, baseline, self.settings)
        busy = [(s.start - _MARGIN, s.end + _MARGIN) for s in surges]
        step = timedelta(seconds=self.settings.window_s)
        intervals = [(s.start - _BEFORE - step, s.end + _AFTER) for s in surges]
        summary = summarise(self._closed, busy, intervals, self.settings)
        profile = summary.profile
        quiet = features_of(summary.quiet, profile, None, self.settings)
        context = JudgeContext.of_quiet(quiet, profile, self.settings)

        incidents: list[Incident] = []
        spans: list[Surge] = []
        attackers: list[pl.DataFrame] = []
        findings: list[Finding] = []
        verdicts: list[SurgeVerdict] = []
        for surge, totals, interval in zip(surges, summary.intervals, intervals, strict=True):
            # Judge with margins: a test flood, rotating addresses and a tail under the threshold are still the
            # attack; the incident then runs from its attackers' first request to their last.
            judged = judge_totals(context, totals, surge.start, self.settings)
            excess = max(1.0, surge.requests - surge.expected_rps * ((surge.end - surge.start).total_seconds() + 1))
            # POSTs to login forms and xmlrpc.php are a brute force, not a flood: the breach layer reports them.
            brute = pl.col("vectors").list.set_intersection(pl.lit(_BRUTE_VECTORS)).list.len() > 0
            senders = payload_senders(self._hits, judged, *interval)  # breach actors, never flood members
            # By client: the findings, decisions and attacker rows then come in one order, run after run (grouping
            # left them in hash order, and report.json's decisions with them).
            hostile = judged.filter(pl.col("attacker") & ~brute & ~pl.col("client").is_in(senders)).sort("client")
            attack_requests = int(hostile.get_column("requests").sum() or 0)
            is_flood = hostile.height > 0 and attack_requests >= 0.25 * excess
            verdicts.append(SurgeVerdict.of(surge, judged, is_flood))
            if not is_flood:
                continue
            start, end = _attack_span(hostile, surge.start, surge.end)
            inside = seconds.filter(pl.col("ts").is_between(start, end))
            widened = replace(surge, start=start, end=end, requests=int(inside.get_column("requests").sum() or 0))
            incident_id = self._incident_id(start, incidents)
            incident = Incident(
                id=incident_id,
                site=self.site,
                kind=IncidentKind.FLOOD,
                start=start,
                end=end,
                peak_rps=surge.peak_rps,
                requests=widened.requests,
                attack_requests=min(attack_requests, widened.requests),
                vectors=context.vectors_of(hostile),
                attackers=tuple(sorted(hostile.get_column("client").to_list())),
                phases=phases_of(seconds, widened),
            )
            rows = context.attacker_rows(hostile, incident_id)
            if incidents and incidents[-1].end >= start:  # widened spans met: one flood, not two
                incident, rows = self._merge(incidents.pop(), incident, spans.pop(), widened, seconds, attackers, rows)
                widened = replace(widened, start=incident.start, end=incident.end, requests=incident.requests)
            incidents.append(incident)
            spans.append(widened)
            attackers.append(rows)
            findings.extend(context.findings(hostile, start, end))

        breaches = self._breaches(summary, context, incidents, attackers, findings)
        attacker_frame = pl.concat(attackers) if attackers else pl.DataFrame(schema=ATTACKER_SCHEMA)
        # One more pass over the windows: the breach incidents' requests, and the attackers' share of each window.
        window_s = self.settings.window_s
        selections = [(sorted(group.clients), group.start, group.end) for _, group in breaches]
        pairs = attack_pairs(attacker_frame, incidents, window_s)
        member_sums, attack = window_sums(self._closed, selections, pairs, window_s)
        for (index, _), sums in zip(breaches, member_sums, strict=True):
            requests = int(sums.get_column("requests").sum() or 0)
            peak = float(sums.get_column("requests").cast(pl.Float64).max() or 0.0) / window_s  # type: ignore[arg-type]
            incidents[index] = replace(
                incidents[index], peak_rps=round(peak, 1), requests=requests, attack_requests=requests
            )
        incidents.sort(key=lambda i: i.start)
        return DetectionResult(
            site=self.site,
            incidents=tuple(incidents),
            findings=tuple(findings),
            attackers=attacker_frame,
            timeline=timeline_from(seconds, summary.per_window, attack, window_s),
            surges=tuple(verdicts),
            baseline_method=baseline.method,
            requests=int(seconds.get_column("requests").sum() or 0),
            clients=summary.clients,
            analysed_at=self.clock(),
            window_start=seconds.get_column("ts").min(),  # type: ignore[arg-type]
            window_end=seconds.get_column("ts").max(),  # type: ignore[arg-type]
            user_agents=dict(self._agents),
        )

    @staticmethod
    def _merge(
        first: Incident,
        second: Incident,
        first_span: Surge,
        second_span: Surge,
        seconds: pl.DataFrame,
        attackers: list[pl.DataFrame],
        rows: pl.DataFrame,
    ) -> tuple[Incident, pl.DataFrame]:
        """One flood incident from two whose attack spans overlap; the attackers' rows move to the first's id."""
        end = max(first.end, second.end)
        inside = seconds.filter(pl.col("ts").is_between(first.start, end))
        requests = int(inside.get_column("requests").sum() or 0)
        span = replace(first_span, end=end, requests=requests, peak_rps=max(first_span.peak_rps, second_span.peak_rps))
        previous = attackers.pop()
        merged_rows = (
            pl.concat([previous, rows.with_columns(pl.lit(first.id).alias("incident_id"))])
            .group_by("client", "incident_id")
            .agg(pl.col("score").max(), pl.col("vectors").first(), pl.col("reasons").first(), pl.col("requests").sum())
            .select(list(ATTACKER_SCHEMA))
        )
        vectors = tuple(dict.fromkeys((*first.vectors, *second.vectors)))
        merged = replace(
            first,
            end=end,
            peak_rps=span.peak_rps,
            requests=requests,
            attack_requests=min(requests, first.attack_requests + second.attack_requests),
            vectors=vectors,
            attackers=tuple(sorted(set(first.attackers) | set(second.attackers))),
            phases=phases_of(seconds, span),
        )
        return merged, merged_rows

    def _incident_id(self, start: datetime, existing: list[Incident]) -> str:
        prefix = f"{self.site}-{start.astimezone(UTC):%Y%m%dT%H%M}"
        n = 1 + sum(1 for i in existing if i.id.startswith(prefix + "-"))
        return f"{prefix}-{n}"

    def _breaches(
        self,
        summary: Summary,
        context: JudgeContext,
        incidents: list[Incident],
        attackers: list[pl.DataFrame],
        findings: list[Finding],
    ) -> list[tuple[int, BreachGroup]]:
        """Add the breach incidents, their attackers and findings; returns each one's index in `incidents` and its
        group. Their requests and peak rate are counted by the caller's next pass over the windows."""
        hits = pl.concat(self._hits) if self._hits else pl.DataFrame(schema=BREACH_SCHEMA)
        everyone = features_of(summary.everyone, context.profile, None, self.settings)
        flooders = {c for i in incidents for c in i.attackers}
        probing = probing_clients(everyone.filter(~pl.col("client").is_in(list(flooders))))
        signed = set(hits.filter(pl.col("family").is_in(["login", "xmlrpc"])).get_column("client").to_list())
        posters = login_posters(summary.logins.filter(~pl.col("client").is_in(list(signed))))
        combined = pl.concat([hits.drop("bucket", "rule_ids", "matched"), probing, posters], how="vertical_relaxed")
        added: list[tuple[int, BreachGroup]] = []
        for group in breach_groups(combined, self.settings):
            incident_id = self._incident_id(group.start, incidents)
            added.append((len(incidents), group))
            incidents.append(
                Incident(
                    id=incident_id,
                    site=self.site,
                    kind=group.kind,
                    start=group.start,
                    end=group.end,
                    peak_rps=0.0,
                    requests=0,
                    attack_requests=0,
                    vectors=group.vectors or (Vector.SCAN,),
                    attackers=tuple(sorted(group.clients)),
                )
            )
            rows = everyone.filter(pl.col("client").is_in(list(group.clients)))
            rows = rows.with_columns(
                pl.lit(0.9).alias("score"),
                pl.lit([v.value for v in group.vectors], pl.List(pl.String)).alias("vectors"),
                pl.col("client")
                .replace_strict({c: list(r) for c, r in group.reasons.items()}, return_dtype=pl.List(pl.String))
                .alias("reasons"),
            )
            attackers.append(context.attacker_rows(rows, incident_id))
            for client in group.clients:
                findings.append(
                    Finding(
                        target=client,
                        kind=f"breach-{group.kind.value}",
                        score=0.9,
                        window_start=group.start,
                        window_end=group.end,
                        reasons=group.reasons.get(client, ()),
                        vectors=group.vectors,
                        evidence=group.evidence.get(client, ()),
                        breach_hits=group.breach_hits.get(client, ()),
                    )
                )
        return added
