"""The signature engine: a Request frame in, a frame of hits out, each with its rule id, field and matched text.

Work is per distinct value, never per row: the values each transformation chain reads are made unique (Polars),
transformed once, scanned once by the chain's hyperscan database, and the hits joined back onto every row that
carried the value. A flood of identical requests costs one scan.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import polars as pl

from floodwall.detect.signatures.compiled import CompiledGroup, CompileReport, compile_groups
from floodwall.detect.signatures.fields import occurrences
from floodwall.detect.signatures.links import RequestValues, link_matches
from floodwall.detect.signatures.ruleset import DEFAULT_CRS_RULES, Ruleset, Signature, load_ruleset
from floodwall.detect.signatures.transforms import LOWERING, PLAIN_IDENTITY, apply_chain, to_bytes

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

#: Values no transformation changes except for case, and that no CRS pattern needs transformed per call.
_PLAIN: Final = r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$"
_INJECTION_PLAIN_RE: Final = re.compile(r"[A-Za-z0-9_.]*\Z")  # nothing libinjection could read as SQL or HTML
_EVIDENCE_BYTES: Final = 120
_PUBLIC_NAMES: Final = {
    "ARGS_GET": "ARGS",
    "ARGS_POST": "ARGS",
    "ARGS_GET_NAMES": "ARGS_NAMES",
    "ARGS_POST_NAMES": "ARGS_NAMES",
}


@dataclass(frozen=True, slots=True)
class _Match:
    value: str  # the transformed value
    signature: int
    matched: str
    capture: str | None


def _selector_filter(group: CompiledGroup) -> pl.Expr:
    whole = {s.var for sig in group.signatures for s in sig.selectors if s.key is None}
    keyed = {(s.var, s.key) for sig in group.signatures for s in sig.selectors if s.key is not None}
    expression = pl.col("var").is_in(sorted(whole))
    for var, key in sorted(keyed):
        if var not in whole:
            expression = expression | ((pl.col("var") == var) & (pl.col("key").str.to_lowercase() == key.lower()))
    return expression


def _transform(values: pl.Series, chain: tuple[str, ...]) -> dict[str, list[str]]:
    """Distinct transformed value -> the raw values that turn into it.

    Plain values are done in bulk (Polars) when the chain leaves them alone or only lowers them; the rest call
    Python once per distinct value. Transformed values may hold undecodable bytes (surrogates): they stay in Python.
    """
    result: dict[str, list[str]] = defaultdict(list)
    slow = values
    if set(chain) <= PLAIN_IDENTITY | LOWERING:
        plain_mask = values.str.contains(_PLAIN)
        plain = values.filter(plain_mask)
        slow = values.filter(~plain_mask)
        lowered = plain.str.to_lowercase() if set(chain) & LOWERING else plain
        for raw, transformed in zip(plain.to_list(), lowered.to_list(), strict=True):
            result[transformed].append(raw)
    for raw in slow.to_list():
        result[apply_chain(raw, chain)].append(raw)
    return result


def _clean(text: str) -> str:
    """Text safe to hold in Polars: undecodable bytes shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _scan(group: CompiledGroup, values: list[str], skip_injection: list[bool]) -> list[_Match]:
    matches: list[_Match] = []
    found: list[tuple[int, int]] = []

    def on_match(pattern_id: int, start: int, end: int, flags: int, context: Any) -> None:
        found.append((pattern_id, end))

    for position, value in enumerate(values):
        data = to_bytes(value)
        if group.database is not None:
            found.clear()
            group.database.scan(data, match_event_handler=on_match)
            for pattern_id, end in found:
                index = group.hs_members[pattern_id]
                match = _confirm(group, index, value, data, end)
                if match is not None:
                    matches.append(match)
        for index, regex in group.python_only.items():
            hit = regex.search(value)
            if hit is not None:
                matches.append(_Match(value, index, hit.group(0), _first_group(hit)))
        if not skip_injection[position]:
            for index, detect in group.injection:
                if detect(value):
                    matches.append(_Match(value, index, value[:_EVIDENCE_BYTES], None))
    return matches


def _first_group(hit: Any) -> str | None:
    return hit.group(1) if hit.re.groups else None


def _confirm(group: CompiledGroup, index: int, value: str, data: bytes, end: int) -> _Match | None:
    """The evidence for a hyperscan hit; for a prefilter pattern, whether `re` agrees at all."""
    regex = group.confirm.get(index) or group.evidence.get(index)
    hit = regex.search(value) if regex is not None else None
    if hit is not None:
        return _Match(value, index, hit.group(0)[:_EVIDENCE_BYTES], _first_group(hit))
    if index in group.confirm:
        return None
    text = data[max(0, end - _EVIDENCE_BYTES) : end].decode("utf-8", "replace")
    return _Match(value, index, text, None)


class SignatureEngine:
    """CRS breach-attempt signatures (and Floodwall's own) compiled for one paranoia level."""

    def __init__(self, ruleset: Ruleset, paranoia: int) -> None:
        self.paranoia = paranoia
        self.ruleset = ruleset
        self.groups, self.report = compile_groups(ruleset)

    @property
    def signatures(self) -> list[Signature]:
        return self.ruleset.signatures

    @property
    def compile_report(self) -> CompileReport:
        return self.report

    def match(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Hits of every signature on a Request frame (plus optional `headers` and `body` columns)."""
        if frame.height == 0:
            return pl.DataFrame(schema=HIT_SCHEMA)
        table = occurrences(frame)
        found: list[pl.DataFrame] = []
        for group in self.groups:
            hits = self._match_group(group, table)
            if hits is not None:
                found.append(hits)
        if not found:
            return pl.DataFrame(schema=HIT_SCHEMA)
        hits = pl.concat(found).unique(subset=["row", "rule_id"], keep="first", maintain_order=True)
        hits = self._apply_links(hits, table)
        return self._finish(hits, frame)

    def _match_group(self, group: CompiledGroup, table: pl.DataFrame) -> pl.DataFrame | None:
        rows = table.filter(_selector_filter(group))
        if rows.height == 0:
            return None
        by_transformed = _transform(rows.get_column("value").unique(), group.chain)
        distinct = list(by_transformed)
        skip = [_INJECTION_PLAIN_RE.match(value) is not None for value in distinct]
        matches = _scan(group, distinct, skip)
        if not matches:
            return None
        signatures = group.signatures
        records = [
            (
                raw,
                signatures[m.signature].id,
                _clean(m.value),
                _clean(m.matched),
                None if m.capture is None else _clean(m.capture),
            )
            for m in matches
            for raw in by_transformed[m.value]
        ]
        found = pl.DataFrame(
            records,
            schema={
                "value": pl.String,
                "rule_id": pl.String,
                "transformed": pl.String,
                "matched": pl.String,
                "capture": pl.String,
            },
            orient="row",
        )
        selectors = pl.DataFrame(
            [
                {"rule_id": sig.id, "var": sel.var, "sel_key": sel.key, "sel_regex": sel.key_regex, "exclude": ex}
                for sig in signatures
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
        joined = found.join(rows, on="value").join(selectors, on=["rule_id", "var"])
        key = pl.col("key").fill_null("").str.to_lowercase()
        applies = pl.col("sel_key").is_null() | (key == pl.col("sel_key").str.to_lowercase())
        if joined.get_column("sel_regex").is_not_null().any():
            regex_ok = [
                r is None or _key_matches(r, k) for r, k in zip(joined["sel_regex"], joined["key"], strict=True)
            ]
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
        variable = pl.col("var").replace(_PUBLIC_NAMES)
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


def _key_matches(regex: str, key: str | None) -> bool:
    return key is not None and re.search(regex, key, re.IGNORECASE) is not None


@lru_cache(maxsize=8)
def load_engine(rules_dir: Path = DEFAULT_CRS_RULES, paranoia: int = 1) -> SignatureEngine:
    """The engine for `rules_dir` at `paranoia`, compiled once per process (compiling takes a few seconds)."""
    return SignatureEngine(load_ruleset(rules_dir, paranoia), paranoia)
