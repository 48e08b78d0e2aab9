"""The forensic pass: Request batches in, per-batch Polars aggregates kept, merged once at the end.

Which requests are the attack is known only once the engine has judged the whole log, so the account is built from
a second pass over the same inputs (the reader hashes them again; `analyze` checks the hashes agree). That pass
keeps aggregates only: per second and minute for all traffic, per (incident, phase, client, kind) for attack
traffic, a few sample rows per incident and kind, and pruned counts of the strings that could be markers. Memory is
bounded by the attackers, the duration and a fixed cap on candidate strings, never by the number of requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import polars as pl

from floodwall.detect import DetectionResult
from floodwall.forensics.batch import SAMPLE_COLUMNS, STATUS, plan_all, plan_attack, plan_normal, plan_shared
from floodwall.forensics.fingerprints import FingerprintAccumulator
from floodwall.forensics.shapes import CLIENT_HASH, cacheable, query_key_rows, request_kinds
from floodwall.forensics.tables import Parts, as_is, prune, summed
from floodwall.model import IncidentKind

__all__ = ["Aggregated", "Collected", "Collector", "Marked"]

_UTC: Final = pl.Datetime("us", "UTC")
_MARGIN: Final = timedelta(seconds=60)
#: Attack requests with a query string per batch searched for query keys that recur; past this, a sample.
_KEY_SAMPLE: Final = 10_000
#: A key is watched once its share of a batch's attack requests reaches this in the sample: a quarter of the 0.1%
#: that a marker (at least 0.2% of all attack requests, `mode._MARKER_SHARE`) must reach in one batch at least.
_KEY_SHARE: Final = 0.00025


@dataclass(frozen=True)
class Collected:
    """The merged aggregates of the forensic pass (frames may be empty, never None)."""

    minutes: pl.DataFrame  # minute: requests, s2xx..s499, rt_sum, rt_n, rt_max, cache_hit, cache_miss, attack
    attack_seconds: pl.DataFrame  # second: attack
    attack_kinds: pl.DataFrame  # minute, kind: attack
    attackers: (
        pl.DataFrame
    )  # incident_id, phase, client, kind: requests, statuses, cacheable, bytes, first/last, minutes
    samples: pl.DataFrame  # a few attack rows per (incident, kind, status class)
    agents: pl.DataFrame  # incident_id, client, user_agent, family: requests
    normal_families: pl.DataFrame  # family: requests
    schemes: pl.DataFrame  # incident_id, scheme, client: requests
    normal_schemes: pl.DataFrame  # scheme: requests
    candidates: (
        pl.DataFrame
    )  # kind, value, client, incident_id: requests, first_ts, last_ts, source, line (attack traffic)
    normal_candidates: pl.DataFrame  # kind, value: requests (normal traffic, rare values pruned)
    pruned_below: int  # normal candidate values seen fewer times than this may have been pruned
    paths_pruned_below: int  # attacked URLs requested fewer times than this may be missing
    paths: pl.DataFrame  # incident_id, host, path: requests, clients (attack traffic)
    breach: pl.DataFrame  # incident_id, client, method, path, status: requests, first/last, source, line, query
    forwarded: pl.DataFrame  # incident_id, client, forwarded_for: requests
    phase_clients: pl.DataFrame  # phase_key: clients (all traffic), attackers
    readers: pl.DataFrame  # client: requests, minutes (non-attack traffic)
    batches: int
    rows: int
    scheme_step: int  # 1: query-string schemes counted exactly; n: from 1 request in n of the largest batches


def _recurring_query_keys(attack: pl.DataFrame | None, attack_rows: int, query_rows: int) -> list[str] | None:
    """The query keys seen at `_KEY_SHARE` of the batch's attack requests or more in an even sample of `_KEY_SAMPLE`
    of its requests with a query string; None when there are fewer such requests than that (every key is counted
    then). See `Collector._watched_query_keys`."""
    step = query_rows // _KEY_SAMPLE
    if attack is None or step <= 1:
        return None
    sample = attack.lazy().filter(pl.col("query").is_not_null()).gather_every(step)
    bar = max(3, int(attack_rows * _KEY_SHARE / step))
    seen = (
        query_key_rows(sample, [])
        .group_by("value")
        .agg(pl.len().alias("requests"))
        .filter(pl.col("requests") >= bar)
        .collect(engine="in-memory")
    )
    return seen.get_column("value").to_list()


@dataclass(frozen=True)
class Marked:
    """One batch as `Collector.prepare` leaves it for `Collector.take`."""

    rows: pl.DataFrame  # the batch with minute, incident_id, incident_kind and attack
    attack_frame: pl.DataFrame | None  # its attack rows (None: none)
    attack: pl.DataFrame | None  # the same with kind, second, cacheable_plain and cacheable_any
    normal: pl.DataFrame | None  # the other rows (None: none)
    attack_rows: int
    query_rows: int  # attack rows with a query string
    recurring: list[str] | None  # `_recurring_query_keys` of the attack rows


@dataclass(frozen=True)
class Aggregated:
    """One batch's aggregates as `Collector.aggregate` leaves them for `Collector.keep`."""

    rows: int
    attack_rows: int
    normal: bool  # the batch had rows that are not attack traffic
    tables: list[tuple[Parts, pl.DataFrame]]  # each table's part of the batch
    fingerprints: list[pl.DataFrame]  # for `FingerprintAccumulator.take` (none without fingerprints)
    scheme_step: int


class Collector:
    """Feeds on Request batches, after detection; see the module docstring."""

    def __init__(
        self, detection: DetectionResult, fingerprints: FingerprintAccumulator | None = None, spooled: bool = False
    ) -> None:
        """`spooled`: the batches are read back from a `FrameSpool` (Parquet), not handed on by the log reader."""
        self.detection = detection
        self.fingerprints = fingerprints  # fed the same attack rows, in the same Polars run as the tables below
        kinds = {i.id: i.kind.value for i in detection.incidents}
        spans = [(i.id, i.start - _MARGIN, i.end + _MARGIN) for i in detection.incidents]
        span_frame = pl.DataFrame(
            spans, schema={"incident_id": pl.String, "start": _UTC, "end": _UTC}, orient="row"
        ).with_columns(pl.col("incident_id").replace_strict(kinds, default="flood").alias("incident_kind"))
        client_spans = (
            detection.attackers.select("client", "incident_id")
            .unique()
            .join(span_frame, on="incident_id", how="inner")
            .sort("start")
        )
        # Most attackers take part in one incident: their rows are marked by a plain lookup of the client; the rows
        # of the few in several (a pool address that floods, then scans) go through every span of theirs.
        several = pl.col("client").is_duplicated()
        self._single_spans = client_spans.filter(~several)
        self._spans = client_spans.filter(several)
        phases = []
        for incident in detection.incidents:
            parts = incident.phases or ()
            if incident.kind is not IncidentKind.FLOOD or not parts:
                phases.append((incident.id, "main", incident.start, incident.end))
            phases.extend((incident.id, p.label, p.start, p.end) for p in parts)
        self._phases = (
            pl.DataFrame(
                phases,
                schema={"incident_id": pl.String, "phase": pl.String, "phase_start": _UTC, "phase_end": _UTC},
                orient="row",
            )
            .with_columns(pl.concat_str([pl.col("incident_id"), pl.lit("/"), pl.col("phase")]).alias("phase_key"))
            .sort("phase_start")
        )
        count_names = ["requests", *STATUS]
        self.minutes = summed(
            ["minute"], [*count_names, "rt_sum", "rt_n", "cache_hit", "cache_miss", "attack"], [pl.col("rt_max").max()]
        )
        self.attack_seconds = summed(["second"], ["attack"])
        self.attack_kinds = summed(["minute", "kind"], ["attack"])
        self.attackers = summed(
            ["incident_id", "phase", "client", "kind"],
            [*count_names, "cacheable_plain", "cacheable_any", "bytes", "minutes"],
            [pl.col("first_ts").min(), pl.col("last_ts").max()],
        )
        self.samples = Parts([], [])
        self.agents = summed(["incident_id", "client", "user_agent", "family"], ["requests"])
        self.normal_families = summed(["family"], ["requests"])
        self.schemes = summed(["incident_id", "scheme", "client"], ["requests"])
        self.normal_schemes = summed(["scheme"], ["requests"])
        # No client dimension (random cache-busting keys times clients would pile up): `clients` is the most
        # distinct clients seen in one batch, a lower bound, exact when the log fits one batch.
        self.candidates = Parts(
            ["kind", "value", "incident_id"],
            [
                pl.col("clients").max(),
                pl.col("requests").sum(),
                pl.col("first_ts").min(),
                pl.col("last_ts").max(),
                pl.col("source").sort_by("first_ts", "source", "line").first(),
                pl.col("line").sort_by("first_ts", "source", "line").first(),
            ],
        )
        self.normal_candidates = summed(["kind", "value"], ["requests"])
        self.pruned_below = 0
        self.paths_pruned_below = 0
        self.candidates_pruned_below = 0
        self.paths = summed(["incident_id", "host", "path"], ["requests"])
        self.breach = Parts(
            ["incident_id", "client", "method", "path", "status"],
            [
                pl.col("requests").sum(),
                pl.col("first_ts").min(),
                pl.col("last_ts").max(),
                pl.col("source").sort_by("first_ts").first(),
                pl.col("line").sort_by("first_ts").first(),
                pl.col("query").sort_by("first_ts").first(),
            ],
        )
        self.forwarded = summed(["incident_id", "client", "forwarded_for"], ["requests"])
        self.phase_clients = Parts(["phase_key", "client"], [pl.col("attack").max()])
        self.readers = summed(["client"], ["requests", "minutes"])
        self.batches = 0
        self.rows = 0
        self.scheme_step = 1
        if spooled:
            # The reader's batches hold the parser's buffers, and an aggregate of one (its strings are views into
            # them) kept them all alive until copied (`compacted`: 1.3 GB after 5M requests without, 0.6 GB with).
            # Batches read back from the spool's Parquet hold no such buffers: on 5M-line hano-like the forensic
            # pass peaked at the same RSS (620-660 MB) with and without the copies, which cost 0.4 CPU-s.
            for parts in vars(self).values():
                if isinstance(parts, Parts):
                    parts.keep = as_is
        self.query_keys: set[str] = set()  # the attack's query keys that recur (`_watched_query_keys`)

    # --- per batch ---------------------------------------------------------------------------------------------

    def feed(self, frame: pl.DataFrame) -> None:
        """Take one time-ordered Request batch (`prepare`, then `take`)."""
        self.take(self.prepare(frame))

    def prepare(self, frame: pl.DataFrame) -> Marked | None:
        """The batch marked once: minute, attack or not, the attack rows apart with their request kind, second and
        what a cache could have done. It reads nothing `take` changes, so a caller may prepare the next batch on
        another thread while this one is taken (`Forensics.feed_all`); None for an empty batch."""
        if frame.height == 0:
            return None
        rows = self._marked(frame)
        attack_rows, query_rows = rows.select(
            pl.col("attack").sum().alias("rows"), (pl.col("attack") & pl.col("query").is_not_null()).sum().alias("q")
        ).row(0)
        attack_frame = attack = None
        if attack_rows:
            # Filtered once, eagerly: each query below then starts from these rows (cheaper than a cached subplan).
            attack_frame = rows.filter(pl.col("attack"))
            attack = attack_frame.with_columns(request_kinds(attack_frame)).with_columns(  # attack rows' kinds only
                pl.col("ts").dt.truncate("1s").alias("second"),
                cacheable(ignore_query=False, kind=pl.col("kind")).alias("cacheable_plain"),
                cacheable(ignore_query=True, kind=pl.col("kind")).alias("cacheable_any"),
            )
        normal = rows.filter(~pl.col("attack")) if attack_rows < rows.height else None
        recurring = _recurring_query_keys(attack_frame, int(attack_rows), int(query_rows))
        return Marked(rows, attack_frame, attack, normal, int(attack_rows), int(query_rows), recurring)

    def take(self, batch: Marked | None) -> None:
        """Aggregate one `prepare`d batch and keep its aggregates, batches in time order."""
        if batch is not None:
            self.keep(self.aggregate(batch, self.watch(batch)))

    def watch(self, batch: Marked) -> list[str] | None:
        """The query keys to count in `batch` (see `_watched_query_keys`), for `aggregate`; batches in time order."""
        return self._watched_query_keys(batch.recurring)

    def aggregate(self, batch: Marked, watched: list[str] | None) -> Aggregated:
        """One batch's aggregates, for `keep`. It changes nothing here, so consecutive batches may be aggregated side
        by side on threads of their own (`Forensics.feed_all`), as long as they are kept in order.

        Every table's aggregate of the batch is one lazy query over the marked rows, and all of them run together
        in `pl.collect_all`: Polars runs the queries side by side on the cores it has, where one eager call after
        another kept barely one core busy. The attackers' fingerprints (`FingerprintAccumulator.plan`) ride on the
        same attack rows."""
        rows, attack_rows, query_rows = batch.rows, batch.attack_rows, batch.query_rows
        plans = self._tables(plan_all(rows.lazy(), self._phases))
        extra: list[pl.LazyFrame] = []
        step = 1
        if batch.attack is not None and batch.attack_frame is not None:
            attack = batch.attack.lazy()
            # The groupings several tables read (and the fingerprints the agents) run first, once each: collect_all
            # did not share a group-by between the queries that read it, it ran it once per query.
            queries = plan_shared(attack)
            shared = dict(zip(queries, pl.collect_all(queries.values(), engine="in-memory"), strict=True))
            attack_plans, step = plan_attack(attack, self._phases, query_rows, shared, watched)
            plans += self._tables(attack_plans)
            if self.fingerprints is not None:
                agents = next(plan for parts, plan in plans if parts is self.agents)
                extra = self.fingerprints.plan(
                    attack, query_rows, agents=agents.rename({"requests": "count"}), row_count=attack_rows
                )
        if batch.normal is not None:
            plans += self._tables(plan_normal(batch.normal.lazy()))
        # The in-memory engine: "auto" picks Polars' streaming engine here, which ran these group-bys 2-3x slower
        # (a batch fits in memory by construction).
        results = pl.collect_all([plan for _, plan in plans] + extra, engine="in-memory")
        return Aggregated(
            rows=rows.height,
            attack_rows=attack_rows,
            normal=batch.normal is not None,
            tables=[(parts, result) for (parts, _), result in zip(plans, results, strict=False)],
            fingerprints=results[len(plans) :],
            scheme_step=step,
        )

    def keep(self, aggregated: Aggregated) -> None:
        """Add one batch's aggregates to the tables, batches in time order; prune the long tails."""
        self.batches += 1
        self.rows += aggregated.rows
        self.scheme_step = max(self.scheme_step, aggregated.scheme_step)
        for parts, result in aggregated.tables:
            parts.add(result)
        if aggregated.fingerprints:
            assert self.fingerprints is not None
            self.fingerprints.take(aggregated.fingerprints)
        if aggregated.attack_rows:
            self._settle_attack()
        if aggregated.normal:
            self._prune_normal_candidates()

    def _watched_query_keys(self, recurring: list[str] | None) -> list[str] | None:
        """The query keys worth counting as marker candidates in this batch, or None for all of them (few queries).

        Only strings that recur can be markers, and a cache-busting flood's keys mostly do not: finding and
        counting every key of every request was a fifth of the forensic pass. Past `_KEY_SAMPLE` attack requests
        with a query string, the keys are looked for in an even sample of that many; a key seen there at `_KEY_SHARE`
        of the batch's attack requests or more is watched from then on, and every request that carries a watched
        key is counted. A marker reaches four times that share in one batch at least, so it is watched by then
        (its expected count in the sample is 4 times the bar, 30 or more for a full batch); only its requests in
        earlier batches, where it was rarer than the bar, can be missing from its count, as rare values pruned by
        `tables.prune` can be. The sample is searched as the batch is prepared (`_recurring_query_keys`, on the marking
        thread); the keys watched so far are kept here."""
        if recurring is None:
            return None
        self.query_keys.update(recurring)
        return sorted(self.query_keys)

    def _tables(self, plans: list[tuple[str, pl.LazyFrame]]) -> list[tuple[Parts, pl.LazyFrame]]:
        """Each named query with the table its result adds to."""
        return [(getattr(self, name), plan) for name, plan in plans]

    def _marked(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The batch with its minute, and the incident (if any) each row is attack traffic of."""
        # The client's hash, for the queries that group the rows by client (`shapes.grouped`): hashed once here.
        rows = frame.with_columns(
            pl.col("ts").dt.truncate("1m").alias("minute"), pl.col("client").hash().alias(CLIENT_HASH)
        )
        if not rows.get_column("ts").is_sorted():  # batches come in time order; the phase joins rely on it
            rows = rows.sort("ts", maintain_order=True)
        inside = pl.col("ts").is_between(pl.col("start"), pl.col("end"))
        # Joined on the two columns it needs, then set beside the batch: a join copies every column it carries.
        marks = (
            rows.select("client", "ts")
            .join(self._single_spans, on="client", how="left", maintain_order="left")
            .select(pl.when(inside).then(pl.col(name)).alias(name) for name in ("incident_id", "incident_kind"))
        )
        rows = rows.hstack(marks.get_columns())
        if self._spans.height:
            numbered = rows.with_row_index("_row")
            hits = (
                numbered.select("_row", "client", "ts")
                .join(self._spans, on="client", how="inner")
                .filter(inside)
                .unique("_row", keep="first")
                .select("_row", pl.col("incident_id").alias("_id"), pl.col("incident_kind").alias("_kind"))
            )
            rows = (
                numbered.join(hits, on="_row", how="left", maintain_order="left")
                .with_columns(
                    pl.coalesce("incident_id", "_id").alias("incident_id"),
                    pl.coalesce("incident_kind", "_kind").alias("incident_kind"),
                )
                .drop("_row", "_id", "_kind")
            )
        return rows.with_columns(pl.col("incident_id").is_not_null().alias("attack"))

    def _settle_attack(self) -> None:
        """After a batch's attack aggregates were added: keep a few samples, prune the long tails."""
        if len(self.samples.parts) > 8:
            status_class = (pl.col("status") // 100).alias("_class")
            merged = pl.concat(self.samples.parts).sort("ts").with_columns(status_class)
            picked = merged.group_by("incident_id", "kind", "_class", maintain_order=True).head(3)
            self.samples.parts = [self.samples.keep(picked.select(list(SAMPLE_COLUMNS)))]
        self.paths_pruned_below = max(self.paths_pruned_below, prune(self.paths, ["host", "path"]))
        self.candidates_pruned_below = max(self.candidates_pruned_below, prune(self.candidates, ["kind", "value"]))

    def _prune_normal_candidates(self) -> None:
        self.pruned_below = max(self.pruned_below, prune(self.normal_candidates, ["kind", "value"]))

    # --- the end -------------------------------------------------------------------------------------------------

    def collected(self) -> Collected:
        """Everything merged; empty frames where nothing was seen."""

        def get(parts: Parts, schema: dict[str, pl.DataType]) -> pl.DataFrame:
            merged = parts.frame()
            return merged if merged is not None else pl.DataFrame(schema=schema)

        i64, s = pl.Int64(), pl.String()
        counts = {"requests": i64, **{n: i64 for n in STATUS}}
        when = {"first_ts": _UTC, "last_ts": _UTC}
        return Collected(
            minutes=get(
                self.minutes,
                {"minute": _UTC, **counts, "rt_sum": pl.Float64(), "rt_n": i64, "cache_hit": i64}
                | {"cache_miss": i64, "attack": i64, "rt_max": pl.Float64()},
            ).sort("minute"),
            attack_seconds=get(self.attack_seconds, {"second": _UTC, "attack": i64}).sort("second"),
            attack_kinds=get(self.attack_kinds, {"minute": _UTC, "kind": s, "attack": i64}).sort("minute"),
            attackers=get(
                self.attackers,
                {"incident_id": s, "phase": s, "client": s, "kind": s, **counts}
                | {"cacheable_plain": i64, "cacheable_any": i64, "bytes": i64, "minutes": i64, **when},
            ),
            samples=pl.concat(self.samples.parts).sort("ts")
            if self.samples.parts
            else pl.DataFrame(schema={c: pl.String() for c in SAMPLE_COLUMNS}),
            agents=get(self.agents, {"incident_id": s, "client": s, "user_agent": s, "family": s, "requests": i64}),
            normal_families=get(self.normal_families, {"family": s, "requests": i64}),
            schemes=get(self.schemes, {"incident_id": s, "scheme": s, "client": s, "requests": i64}),
            normal_schemes=get(self.normal_schemes, {"scheme": s, "requests": i64}),
            candidates=get(
                self.candidates,
                {"kind": s, "value": s, "incident_id": s, "requests": i64, "clients": i64, **when}
                | {"source": s, "line": i64},
            ),
            normal_candidates=get(self.normal_candidates, {"kind": s, "value": s, "requests": i64}),
            pruned_below=self.pruned_below,
            paths_pruned_below=self.paths_pruned_below,
            paths=get(self.paths, {"incident_id": s, "host": s, "path": s, "requests": i64}),
            breach=get(
                self.breach,
                {"incident_id": s, "client": s, "method": s, "path": s, "status": pl.Int16(), "requests": i64}
                | {**when, "source": s, "line": i64, "query": s},
            ),
            forwarded=get(self.forwarded, {"incident_id": s, "client": s, "forwarded_for": s, "requests": i64}),
            phase_clients=get(self.phase_clients, {"phase_key": s, "client": s, "attack": pl.Boolean()}),
            readers=get(self.readers, {"client": s, "requests": i64, "minutes": i64}),
            batches=self.batches,
            rows=self.rows,
            scheme_step=self.scheme_step,
        )
