"""The signature engine: a Request frame in, a frame of hits out, each with its rule id, field and matched text.

Work is per distinct value, never per row: the values each transformation chain reads are made unique (Polars) and
transformed once (in bulk when the chain leaves them alone or only lowers them); every distinct transformed value of
the batch is scanned once by the pooled hyperscan database, whichever chains produced it, and the hits are joined back
onto every row that carried a raw value turning into it. A flood of identical requests costs one scan.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal

import polars as pl

from floodwall.detect.signatures.compiled import (
    CompiledGroup,
    CompileReport,
    Scanner,
    compile_groups,
    default_cache_dir,
    evidence_regex,
)
from floodwall.detect.signatures.fields import occurrences
from floodwall.detect.signatures.links import RequestValues, link_matches
from floodwall.detect.signatures.ruleset import DEFAULT_CRS_RULES, Ruleset, Signature, load_ruleset
from floodwall.detect.signatures.transforms import (
    LOWERING,
    TRANSFORMS,
    base64_decode_bulk,
    chain_trigger,
    to_bytes,
)

__all__ = ["HIT_SCHEMA", "SignatureEngine", "load_engine"]

HIT_SCHEMA: Final = {
    "row": pl.UInt32(),  # position of the request in the frame given
    "source": pl.String(),
    "line": pl.Int64(),
    "rule_id": pl.String(),  # a CRS rule id ("942100"), or one of Floodwall's own ("FW-100101")
    "family": pl.String(),  # "sqli", "traversal", "scanner", "login", ...
    "vector": pl.String(),  # the CONTRACT vector: "sqli", "path-traversal", "scan", "rce", ...
    "paranoia": pl.UInt8(),
    "anomaly_score": pl.UInt8(),  # CRS points: 5 critical, 4 error, 3 warning, 2 notice
    "variable": pl.String(),  # where it matched, in ModSecurity's words: "ARGS:id", "REQUEST_HEADERS:user-agent"
    "matched": pl.String(),  # the text that matched, after the rule's transformations
    "message": pl.String(),
}

#: Values libinjection is not asked about: nothing in them it could read as SQL or HTML.
_INJECTION_PLAIN: Final = r"^[A-Za-z0-9_.]*$"
_INJECTION_PLAIN_RE: Final = re.compile(rb"[A-Za-z0-9_.]*")
EVIDENCE_BYTES: Final = 120
PUBLIC_NAMES: Final = {
    "ARGS_GET": "ARGS",
    "ARGS_POST": "ARGS",
    "ARGS_GET_NAMES": "ARGS_NAMES",
    "ARGS_POST_NAMES": "ARGS_NAMES",
}
_FOUND_SCHEMA: Final = {
    "value": pl.String,
    "rule_id": pl.String,
    "transformed": pl.String,
    "matched": pl.String,
    "capture": pl.String,
}

#: Transformed values per chain prefix: raw value -> value after the prefix, shared by every chain of a batch.
Memo = dict[tuple[str, ...], dict[str, str]]


def _selector_filter(group: CompiledGroup) -> pl.Expr:
    whole = {s.var for sig in group.signatures for s in sig.selectors if s.key is None}
    keyed = {(s.var, s.key) for sig in group.signatures for s in sig.selectors if s.key is not None}
    expression = pl.col("var").is_in(sorted(whole))
    for var, key in sorted(keyed):
        if var not in whole:
            expression = expression | ((pl.col("var") == var) & (pl.col("key").str.to_lowercase() == key.lower()))
    return expression


def _selected(group: CompiledGroup) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    """What `_selector_filter` lets through: whole collections, and (collection, lower-case key) pairs."""
    whole = frozenset(s.var for sig in group.signatures for s in sig.selectors if s.key is None)
    keyed = frozenset((s.var, s.key.lower()) for sig in group.signatures for s in sig.selectors if s.key is not None)
    return whole, frozenset((var, key) for var, key in keyed if var not in whole)


def _selector_key(group: CompiledGroup) -> frozenset[tuple[str, str | None]]:
    """Groups with the same key read the same rows."""
    return frozenset((s.var, s.key.lower() if s.key else None) for sig in group.signatures for s in sig.selectors)


def _selectors_frame(group: CompiledGroup) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"rule_id": sig.id, "var": sel.var, "sel_key": sel.key, "sel_regex": sel.key_regex, "exclude": ex}
            for sig in group.signatures
            for ex, chosen in ((False, sig.selectors), (True, sig.exclusions))
            for sel in chosen
        ],
        schema={
            "rule_id": pl.String,
            "var": pl.String,
            "sel_key": pl.String,
            "sel_regex": pl.String,
            "exclude": pl.Boolean,
        },
    )


def apply_memo(value: str, chain: tuple[str, ...], memo: Memo) -> str:
    """`apply_chain`, remembering the value after every prefix of `chain` (chains share their first steps)."""
    if not chain:
        return value
    done = memo.setdefault(chain, {})
    result = done.get(value)
    if result is None:
        result = TRANSFORMS[chain[-1]](apply_memo(value, chain[:-1], memo))
        done[value] = result
    return result


class DistinctValues:
    """The distinct raw values some chain groups read, with what every such group asks of them worked out once."""

    def __init__(self, values: pl.Series) -> None:
        self.values = values
        self._masks: dict[str, pl.Series] = {}
        self._lowered: pl.Series | None = None
        self._plain: pl.Series | None = None

    def changed(self, chain: tuple[str, ...]) -> pl.Series:
        """True where `chain` may change a value other than by lowering it (`transforms.chain_trigger`)."""
        trigger = chain_trigger(chain)
        if trigger is None:
            return pl.repeat(False, self.values.len(), eager=True)
        if trigger not in self._masks:
            self._masks[trigger] = self.values.str.contains(trigger)
        return self._masks[trigger]

    def lowered(self) -> pl.Series:
        if self._lowered is None:
            self._lowered = self.values.str.to_lowercase()
        return self._lowered

    def plain(self) -> pl.Series:
        """True where libinjection has nothing to read (lowering keeps a value plain or not)."""
        if self._plain is None:
            self._plain = self.values.str.contains(_INJECTION_PLAIN)
        return self._plain


def transform_values(distinct: DistinctValues, chain: tuple[str, ...], memo: Memo) -> pl.DataFrame:
    """(value, transformed, plain) for distinct values, `transformed` as bytes (it may hold bytes that are not UTF-8).

    Values the chain leaves alone, or only lowers, are done in bulk (see `transforms.PLAIN_TRIGGERS`), as is a final
    base64Decode (`transforms.base64_decode_bulk`); the rest call Python once per distinct value and chain prefix.
    """
    decode = bool(chain) and chain[-1] == "base64decode"
    bulk_chain = chain[:-1] if decode else chain
    slow_mask = distinct.changed(bulk_chain)
    fast = distinct.values.filter(~slow_mask)
    plain = distinct.plain().filter(~slow_mask)
    transformed = (distinct.lowered() if set(bulk_chain) & LOWERING else distinct.values).filter(~slow_mask)
    slow = distinct.values.filter(slow_mask)
    if decode:
        decoded = base64_decode_bulk(transformed)
        done = decoded.is_not_null()
        slow = pl.concat([slow, fast.filter(~done)])
        fast, decoded = fast.filter(done), decoded.filter(done)
        plain = _bytes_plain(decoded.to_list())
        bulk = pl.DataFrame({"value": fast, "transformed": decoded, "plain": plain})
    else:
        bulk = pl.DataFrame({"value": fast, "transformed": transformed.cast(pl.Binary), "plain": plain})
    one_by_one = [to_bytes(apply_memo(value, chain, memo)) for value in slow.to_list()]
    rest = pl.DataFrame(
        {"value": slow, "transformed": pl.Series(one_by_one, dtype=pl.Binary), "plain": _bytes_plain(one_by_one)},
        schema={"value": pl.String, "transformed": pl.Binary, "plain": pl.Boolean},
    )
    return pl.concat([bulk, rest])


def _bytes_plain(values: list[bytes]) -> pl.Series:
    return pl.Series([_INJECTION_PLAIN_RE.fullmatch(data) is not None for data in values], dtype=pl.Boolean)


def _with_ids(values: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`values` with `tid`, an id of its transformed value, and the distinct (tid, transformed) pairs to scan.

    The id is the value's hash when no two distinct values share one (checked), else a numbering; joins on it are
    cheaper than on the bytes.
    """
    values = values.with_columns(pl.col("transformed").hash(seed=11).alias("tid"))
    distinct = values.select("tid", "transformed").unique("transformed")
    if distinct.get_column("tid").n_unique() == distinct.height:
        return values, distinct
    distinct = distinct.with_columns(pl.int_range(pl.len(), dtype=pl.UInt64).alias("tid"))
    return values.drop("tid").join(distinct, on="transformed"), distinct


def clean(text: str) -> str:
    """Text safe to hold in Polars: undecodable bytes shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _first_group(hit: Any) -> str | None:
    return hit.group(1) if hit.re.groups else None


@dataclass(frozen=True, slots=True)
class _Match:
    matched: str  # the text that matched, at most EVIDENCE_BYTES of it
    capture: str | None  # the pattern's first group, for chained rules reading TX:1


def evidence(signature: Signature, value: str, data: bytes, end: int | None, confirm: bool) -> _Match | None:
    """The evidence for a hit on `value`; for a prefiltered pattern (`confirm`), whether `re` agrees at all."""
    regex = evidence_regex(signature)
    hit = regex.search(value) if regex is not None else None
    if hit is not None:
        return _Match(hit.group(0)[:EVIDENCE_BYTES], _first_group(hit))
    if confirm:
        return None
    stop = len(data) if end is None else end
    return _Match(data[max(0, stop - EVIDENCE_BYTES) : stop].decode("utf-8", "replace"), None)


class SignatureEngine:
    """CRS breach-attempt signatures (and Floodwall's own) compiled for one paranoia level."""

    def __init__(self, ruleset: Ruleset, paranoia: int, cache_dir: Path | None = None) -> None:
        self.paranoia = paranoia
        self.ruleset = ruleset
        self.groups, self.patterns, self.report = compile_groups(ruleset, cache_dir)
        self.by_id = {signature.id: signature for signature in ruleset.signatures}
        self._filters = [_selector_filter(group) for group in self.groups]
        self._reads = [_selected(group) for group in self.groups]
        self._selector_keys = [_selector_key(group) for group in self.groups]
        self._selectors: dict[int, pl.DataFrame] = {}
        self._targets = [
            pl.DataFrame(
                [(expression, g, s) for expression, pairs in enumerate(scanner.targets) for g, s in pairs],
                schema={"expression": pl.UInt32, "group": pl.UInt16, "signature": pl.UInt32},
                orient="row",
            )
            for scanner in self.patterns.scanners
        ]
        self._injectors = pl.DataFrame(
            [
                (index, signature, group.signatures[signature].detector)
                for index, group in enumerate(self.groups)
                for signature, _ in group.injection
            ],
            schema={"group": pl.UInt16, "signature": pl.UInt32, "kind": pl.String},
            orient="row",
        )

    @property
    def signatures(self) -> list[Signature]:
        return self.ruleset.signatures

    @property
    def compile_report(self) -> CompileReport:
        return self.report

    def selected(self, group: int) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
        """What the group's signatures read: whole collections, and (collection, lower-case key) pairs."""
        return self._reads[group]

    def match(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Hits of every signature on a Request frame (plus optional `headers` and `body` columns)."""
        if frame.height == 0:
            return pl.DataFrame(schema=HIT_SCHEMA)
        table = occurrences(frame)
        memo: Memo = {}
        rows_by_key: dict[frozenset[tuple[str, str | None]], tuple[pl.DataFrame, DistinctValues]] = {}
        selected: dict[int, pl.DataFrame] = {}
        pieces: list[pl.DataFrame] = []
        for index, group in enumerate(self.groups):
            key = self._selector_keys[index]
            if key not in rows_by_key:
                rows = table.filter(self._filters[index])
                rows_by_key[key] = (rows, DistinctValues(rows.get_column("value").unique()))
            rows, distinct = rows_by_key[key]
            if rows.height == 0:
                continue
            selected[index] = rows
            values = transform_values(distinct, group.chain, memo)
            pieces.append(values.with_columns(pl.lit(index, pl.UInt16).alias("group")))
        if not pieces:
            return pl.DataFrame(schema=HIT_SCHEMA)
        values, scan_list = _with_ids(pl.concat(pieces))
        found = self._found(values, scan_list)
        if found.height == 0:
            return pl.DataFrame(schema=HIT_SCHEMA)
        placed = [
            self._place(index, found.filter(pl.col("group") == index).drop("group"), selected[index])
            for index in found.get_column("group").unique().sort().to_list()
        ]
        hits = pl.concat(placed).unique(subset=["row", "rule_id"], keep="first", maintain_order=True)
        hits = self._apply_links(hits, table)
        return self._finish(hits, frame)

    def _scan(self, scanner: Scanner, distinct: pl.DataFrame) -> pl.DataFrame:
        """(tid, expression) for every expression of `scanner` that hyperscan reports in a distinct value."""
        positions: list[int] = []
        expressions: list[int] = []

        def on_match(expression: int, start: int, end: int, flags: int, context: Any) -> None:
            positions.append(context)
            expressions.append(expression)

        scan = scanner.database.scan
        for position, data in enumerate(distinct.get_column("transformed").to_list()):
            scan(data, match_event_handler=on_match, context=position)
        tids = distinct.get_column("tid").gather(positions) if positions else pl.Series([], dtype=pl.UInt64)
        return pl.DataFrame({"tid": tids, "expression": pl.Series(expressions, dtype=pl.UInt32)})

    def _found(self, values: pl.DataFrame, distinct: pl.DataFrame) -> pl.DataFrame:
        """(group, value, rule_id, transformed, matched, capture): every confirmed signature hit on a raw value."""
        records: list[tuple[int, int, int, bytes, str, str | None]] = []
        for scanner, targets in zip(self.patterns.scanners, self._targets, strict=True):
            scope = distinct
            if scanner.groups is not None:
                wanted = values.filter(pl.col("group").is_in(sorted(scanner.groups))).select("tid")
                scope = distinct.join(wanted, on="tid", how="semi")
            reported = self._scan(scanner, scope).join(targets, on="expression")
            # Keep the (group, value) pairs that exist: the pooled database reports every group's patterns.
            present = values.filter(pl.col("tid").is_in(reported.get_column("tid").unique().implode()))
            candidates = (
                reported.join(present.select("group", "tid").unique(), on=["group", "tid"])
                .unique(["group", "signature", "tid"])
                .join(distinct, on="tid")
            )
            for tid, expression, group, index, data in candidates.select(
                "tid", "expression", "group", "signature", "transformed"
            ).iter_rows():
                signature = self.groups[group].signatures[index]
                match = evidence(signature, _text(data), data, None, scanner.prefiltered[expression])
                if match is not None:
                    records.append((group, index, tid, data, match.matched, match.capture))
        records += self._python_only(values, distinct)
        records += self._injection(values, distinct)
        if not records:
            return pl.DataFrame()
        found = pl.DataFrame(
            [
                (group, self.groups[group].signatures[index].id, tid, clean(_text(data)), clean(m), c and clean(c))
                for group, index, tid, data, m, c in records
            ],
            schema={
                "group": pl.UInt16,
                "rule_id": pl.String,
                "tid": pl.UInt64,
                "transformed": pl.String,
                "matched": pl.String,
                "capture": pl.String,
            },
            orient="row",
        )
        return found.join(values.select("group", "tid", "value"), on=["group", "tid"]).select("group", *_FOUND_SCHEMA)

    def _python_only(
        self, values: pl.DataFrame, distinct: pl.DataFrame
    ) -> list[tuple[int, int, int, bytes, str, str | None]]:
        records = []
        for group, index in self.patterns.python_only:
            signature = self.groups[group].signatures[index]
            members = values.filter(pl.col("group") == group).select("tid").unique().join(distinct, on="tid")
            for tid, data in members.select("tid", "transformed").iter_rows():
                match = evidence(signature, _text(data), data, None, confirm=True)
                if match is not None:
                    records.append((group, index, tid, data, match.matched, match.capture))
        return records

    def _injection(
        self, values: pl.DataFrame, distinct: pl.DataFrame
    ) -> list[tuple[int, int, int, bytes, str, str | None]]:
        """libinjection once per (detector, distinct transformed value) that is not plain, whatever its groups."""
        if self._injectors.height == 0:
            return []
        groups = self._injectors.get_column("group").unique().implode()
        wanted = (
            values.filter(pl.col("group").is_in(groups) & ~pl.col("plain"))
            .select("group", "tid")
            .join(self._injectors, on="group")
        )
        if wanted.height == 0:
            return []
        detectors = {
            group.signatures[index].detector: detect for group in self.groups for index, detect in group.injection
        }
        asked = wanted.select("kind", "tid").unique().join(distinct, on="tid")
        fired = [
            (kind, tid, data)
            for kind, tid, data in asked.select("kind", "tid", "transformed").iter_rows()
            if detectors[kind](_text(data))
        ]
        if not fired:
            return []
        hits = wanted.join(
            pl.DataFrame(fired, schema={"kind": pl.String, "tid": pl.UInt64, "transformed": pl.Binary}, orient="row"),
            on=["kind", "tid"],
        )
        return [
            (group, index, tid, data, _text(data)[:EVIDENCE_BYTES], None)
            for group, index, tid, data in hits.select("group", "signature", "tid", "transformed").unique().iter_rows()
        ]

    def _place(self, index: int, found: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
        """The group's hits on raw values, onto the rows and variables its signatures read (and do not exclude)."""
        if index not in self._selectors:
            self._selectors[index] = _selectors_frame(self.groups[index])
        joined = found.join(rows, on="value").join(self._selectors[index], on=["rule_id", "var"])
        key = pl.col("key").fill_null("").str.to_lowercase()
        applies = pl.col("sel_key").is_null() | (key == pl.col("sel_key").str.to_lowercase())
        if joined.get_column("sel_regex").is_not_null().any():
            regex_ok = [r is None or key_matches(r, k) for r, k in zip(joined["sel_regex"], joined["key"], strict=True)]
            joined = joined.with_columns(pl.Series("regex_ok", regex_ok, dtype=pl.Boolean))
            applies = pl.when(pl.col("sel_regex").is_null()).then(applies).otherwise(pl.col("regex_ok"))
        joined = joined.with_columns(applies.alias("applies"))
        excluded = joined.filter(pl.col("exclude") & pl.col("applies")).select("row", "rule_id", "var", "key")
        kept = joined.filter(~pl.col("exclude") & pl.col("applies"))
        kept = kept.join(excluded, on=["row", "rule_id", "var", "key"], how="anti", nulls_equal=True)
        return kept.select("row", "rule_id", "var", "key", "transformed", "matched", "capture")

    def _apply_links(self, hits: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
        chained = {sig.id: sig for sig in self.signatures if sig.rule.chain}
        needs = hits.filter(pl.col("rule_id").is_in(list(chained)))
        if needs.height == 0:
            return hits
        context = table.filter(pl.col("row").is_in(needs.get_column("row").unique().implode()))
        per_row: dict[int, dict[tuple[str, str | None], list[str]]] = defaultdict(lambda: defaultdict(list))
        for row, var, key, value in context.iter_rows():
            per_row[row][(var, key.lower() if var == "REQUEST_HEADERS" and key else key)].append(value)
        failed: list[tuple[int, str]] = []
        for row, rule_id, transformed, capture in needs.select("row", "rule_id", "transformed", "capture").iter_rows():
            values: RequestValues = per_row[row]
            links = chained[rule_id].rule.chain
            if not all(link_matches(link, transformed, capture, values) for link in links):
                failed.append((row, rule_id))
        if not failed:
            return hits
        drop = pl.DataFrame(failed, schema={"row": pl.UInt32, "rule_id": pl.String}, orient="row")
        return hits.join(drop, on=["row", "rule_id"], how="anti")

    def _finish(self, hits: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
        by_id = {sig.id: sig for sig in self.signatures}
        ids = hits.get_column("rule_id").unique().to_list()
        facts = pl.DataFrame(
            {
                "rule_id": ids,
                "family": [by_id[i].family for i in ids],
                "vector": [by_id[i].vector.value for i in ids],
                "paranoia": [by_id[i].rule.paranoia for i in ids],
                "anomaly_score": [by_id[i].rule.anomaly_score for i in ids],
                "message": [by_id[i].rule.message for i in ids],
            },
            schema={k: HIT_SCHEMA[k] for k in ("rule_id", "family", "vector", "paranoia", "anomaly_score", "message")},
        )
        origin = frame.select(
            pl.int_range(pl.len(), dtype=pl.UInt32()).alias("row"),
            (pl.col("source") if "source" in frame.columns else pl.lit(None, pl.String)).alias("source"),
            (pl.col("line") if "line" in frame.columns else pl.lit(None, pl.Int64)).alias("line"),
        )
        variable = pl.col("var").replace(PUBLIC_NAMES)
        variable = (
            pl.when(pl.col("key").is_null()).then(variable).otherwise(pl.concat_str(variable, pl.lit(":"), "key"))
        )
        return (
            hits.join(facts, on="rule_id")
            .join(origin, on="row")
            .with_columns(variable.alias("variable"))
            .sort("row", "rule_id")
            .select(list(HIT_SCHEMA))
            .cast(HIT_SCHEMA)  # type: ignore[arg-type]
        )


def key_matches(regex: str, key: str | None) -> bool:
    return key is not None and re.search(regex, key, re.IGNORECASE) is not None


def load_engine(
    rules_dir: Path = DEFAULT_CRS_RULES, paranoia: int = 1, cache_dir: Path | Literal["default"] | None = "default"
) -> SignatureEngine:
    """The engine for `rules_dir` at `paranoia`, made once per process; its compiled database is kept in `cache_dir`
    (`default_cache_dir()` unless given; None for no on-disk cache), since compiling takes seconds."""
    return _load_engine(rules_dir, paranoia, default_cache_dir() if cache_dir == "default" else cache_dir)


@lru_cache(maxsize=8)
def _load_engine(rules_dir: Path, paranoia: int, cache_dir: Path | None) -> SignatureEngine:
    return SignatureEngine(load_ruleset(rules_dir, paranoia), paranoia, cache_dir)
