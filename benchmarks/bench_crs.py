"""Breach signatures: the CRS 3.3.4 regression table per family, and match_requests throughput on a news-site batch.

    .venv/bin/python benchmarks/bench_crs.py [--rows 1000000] [--baseline-rows 2000]

The baseline in the same run is plain Python `re` over the same rules and transformations, request by request with
no de-duplication (what a naive port of CRS would do), timed on a sample and reported per second.
"""

# Report lines are long f-strings; splitting them would not make this script easier to read.
# ruff: noqa: E501
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import polars as pl

from floodwall.detect.signatures import load_engine, match_requests
from floodwall.detect.signatures.fields import occurrences
from floodwall.detect.signatures.regression import load_cases, run_suite
from floodwall.detect.signatures.ruleset import python_pattern
from floodwall.detect.signatures.transforms import apply_chain

SUITE = Path(__file__).resolve().parents[2] / "shared/data/crs-3.3.4-regression/tests/regression/tests"
WORDS = [
    "election",
    "minister",
    "protest",
    "climate",
    "court",
    "police",
    "budget",
    "strike",
    "media",
    "law",
    "freedom",
    "press",
    "war",
    "energy",
]
UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/117.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/117.0",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/116.0.0.0 Mobile Safari/537.36",
]


def news_batch(rows: int, attack_share: float, seed: int = 7) -> pl.DataFrame:
    """Article pages (some with utm or fbclid), assets, searches, cache-busting floods, and a few % attacks."""
    rng = np.random.default_rng(seed)
    slugs = [
        f"/2023/09/{d:02d}/{WORDS[i % 14]}-{WORDS[(i * 7) % 14]}-story-{i}/"
        for i, d in zip(range(5000), rng.integers(1, 29, 5000), strict=True)
    ]
    kind = rng.choice(6, size=rows, p=[0.50, 0.20, 0.05, 0.10, 0.15 - attack_share, attack_share])
    article = rng.zipf(1.3, rows) % len(slugs)
    paths, queries = [], []
    attacks, _ = load_cases(SUITE) if SUITE.is_dir() else ([], None)
    attack_uris = [c.uri for c in attacks if c.must_fire] or ["/?id=1%27%20or%20%271%27=%271"]
    for i in range(rows):
        k = kind[i]
        if k == 0:
            paths.append(slugs[article[i]])
            r = rng.random()
            queries.append(
                "utm_source=twitter&utm_medium=social"
                if r < 0.2
                else f"fbclid=IwAR{rng.integers(1 << 40):x}"
                if r < 0.3
                else None
            )
        elif k == 1:
            paths.append(f"/wp-content/uploads/2023/09/photo-{article[i]}.jpg")
            queries.append(None)
        elif k == 2:
            paths.append("/search")
            queries.append("q=" + "+".join(rng.choice(WORDS, size=int(rng.integers(1, 4)))))
        elif k == 3:
            paths.append(slugs[article[i] % 20])
            queries.append(f"r={rng.integers(1 << 31)}")
        elif k == 4:
            paths.append(["/", "/news/", "/feed/", "/category/world/"][i % 4])
            queries.append(None)
        else:
            path, mark, query = attack_uris[int(rng.integers(len(attack_uris)))].partition("?")
            paths.append(path)
            queries.append(query if mark else None)
    return pl.DataFrame(
        {
            "method": ["GET"] * rows,
            "path": paths,
            "query": queries,
            "user_agent": [UAS[i % len(UAS)] for i in range(rows)],
            "referer": ["https://www.google.com/"] * rows,
            "source": ["bench"] * rows,
            "line": list(range(1, rows + 1)),
        },
        schema={
            "method": pl.String,
            "path": pl.String,
            "query": pl.String,
            "user_agent": pl.String,
            "referer": pl.String,
            "source": pl.String,
            "line": pl.Int64,
        },
    )


def naive_re(frame: pl.DataFrame, paranoia: int) -> int:
    """Every rule, every value of every request, transformed and searched with `re`: the baseline."""
    engine = load_engine(paranoia=paranoia)
    compiled = [(s, python_pattern(s.pattern, s.caseless)) for s in engine.signatures if s.detector == "regex"]
    table = occurrences(frame)
    per_row: dict[int, list[tuple[str, str | None, str]]] = {}
    for row, var, key, value in table.iter_rows():
        per_row.setdefault(row, []).append((var, key, value))
    hits = 0
    for values in per_row.values():
        for signature, regex in compiled:
            if regex is None:
                continue
            wanted = {(sel.var, sel.key) for sel in signature.selectors}
            for var, key, value in values:
                reads = (var, None) in wanted or (var, (key or "").lower()) in wanted
                if reads and any(regex.search(apply_chain(value, chain)) for chain in signature.chains):
                    hits += 1
                    break
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=2_000)
    parser.add_argument("--attack-share", type=float, default=0.03)
    parser.add_argument("--paranoia", type=int, default=1)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, Python {platform.python_version()}, polars {pl.__version__}"
    )

    if SUITE.is_dir():
        started = time.perf_counter()
        result = run_suite(SUITE, paranoia=4)
        print(
            f"\nCRS 3.3.4 regression suite at paranoia 4 ({time.perf_counter() - started:.1f} s), payload in method/URI/query/User-Agent/Referer"
        )
        print(f"{'family':<24}{'vector':<16}{'must-fire':>10}{'detected':>10}{'must-not':>10}{'left alone':>12}")
        total = [0, 0, 0, 0]
        from floodwall.detect.signatures.families import family_of

        vectors = {}
        for family, score in sorted(result.families.items()):
            vector = next((v.value for f, v in [family_of(c) or ("", None) for c in ()] if f == family), "")
            vectors[family] = vector
            print(
                f"{family:<24}{'':<16}{score.must_fire:>10}{score.detected_share:>10.1%}{score.must_not_fire:>10}{score.left_alone_share:>12.1%}"
            )
            total = [
                total[0] + score.must_fire,
                total[1] + score.detected,
                total[2] + score.must_not_fire,
                total[3] + score.left_alone,
            ]
        print(
            f"{'all':<40}{total[0]:>10}{total[1] / max(total[0], 1):>10.1%}{total[2]:>10}{total[3] / max(total[2], 1):>12.1%}"
        )
        print("skipped (not selected): " + ", ".join(f"{reason}: {n}" for reason, n in result.skipped.most_common()))
        for family, score in sorted(result.families.items()):
            if score.missed or score.false_alarms:
                print(f"  {family}: missed {score.missed} fired-wrongly {score.false_alarms}")
    else:
        print(f"\nCRS regression suite not found at {SUITE}: table skipped")

    started = time.perf_counter()
    engine = load_engine(paranoia=args.paranoia)
    report = engine.compile_report
    print(
        f"\nengine at paranoia {args.paranoia}: {len(engine.signatures)} signatures in {len(engine.groups)} chain groups, compiled in {time.perf_counter() - started:.1f} s"
    )
    print(
        f"  hyperscan {report.hyperscan}, prefilter+re {report.prefiltered}, re only {report.python_only}, unusable {report.unusable}, libinjection {report.libinjection} (missing: {report.libinjection_missing})"
    )

    frame = news_batch(args.rows, args.attack_share)
    started = time.perf_counter()
    hits = match_requests(frame, paranoia=args.paranoia)
    elapsed = time.perf_counter() - started
    flagged = hits.get_column("row").n_unique()
    print(
        f"\nmatch_requests on {args.rows:,} requests ({args.attack_share:.0%} attacks): {elapsed:.2f} s, {args.rows / elapsed:,.0f} requests/s; {hits.height:,} hits on {flagged:,} requests"
    )
    print(hits.group_by("vector").len().sort("len", descending=True))

    sample = frame.head(args.baseline_rows)
    started = time.perf_counter()
    hits_fast = match_requests(sample, paranoia=args.paranoia).get_column("row").n_unique()
    fast = time.perf_counter() - started
    started = time.perf_counter()
    naive_re(sample, args.paranoia)
    slow = time.perf_counter() - started
    print(
        f"\nsame {args.baseline_rows:,}-request sample: match_requests {args.baseline_rows / fast:,.0f} requests/s ({hits_fast} flagged); Python re baseline {args.baseline_rows / slow:,.0f} requests/s"
    )


if __name__ == "__main__":
    main()
