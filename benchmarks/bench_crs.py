"""Breach signatures: the CRS 3.3.4 regression tables per family (payloads in the URI and user agent, as a log has
them; payloads in the body or other headers, as the edge sees them); engine compile and cache load; match throughput
on a news-site batch and on simulated logs (the frames detect.Engine hands the matcher), side by side with an earlier
Floodwall; match_request latency; a naive Python `re` baseline.

    .venv/bin/python benchmarks/bench_crs.py [--rows 50000] [--sim-log /tmp/simperf/szabad-hang.access.log]
        [--before-src DIR] [--repeats 3] [--baseline-rows 2000] [--tables-only]

The regression tables run at paranoia 4 (as CRS runs its suite), each version in its own process; with
`--before-src` both versions' shares are printed side by side.

`--before-src DIR` is a tree holding an earlier `src/` (`git archive <commit> src | tar -x -C DIR`); each version runs
in its own processes, alternating, and the table gives medians.

The baseline in the same run is plain Python `re` over the same rules and transformations, request by request with
no de-duplication (what a naive port of CRS would do), timed on a sample and reported per second.
"""

# Report lines are long f-strings; splitting them would not make this script easier to read.
# ruff: noqa: E501
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from floodwall.detect.signatures import SignatureEngine, load_engine, match_requests
from floodwall.detect.signatures.fields import occurrences
from floodwall.detect.signatures.regression import load_cases
from floodwall.detect.signatures.ruleset import load_ruleset, python_pattern
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


#: Ordinary requests for the one-request (edge) path: (method, path, query, user agent, referer).
EDGE_REQUESTS = [
    (
        "GET",
        "/2023/09/01/parliament-votes-on-media-law/",
        "utm_source=twitter&utm_medium=social",
        UAS[0],
        "https://www.google.com/",
    ),
    ("GET", "/wp-content/uploads/2023/09/photo-12.jpg", None, UAS[1], "https://news.example/2023/09/01/story/"),
    ("GET", "/search", "q=climate+change+protests", UAS[2], None),
]
MATCH_KEYS = ("method", "path", "query", "user_agent", "referer")


def simulated_frames(log: Path, out_dir: Path) -> list[Path]:
    """What detect.Engine hands the matcher for `log`: per read batch, the candidate requests, each distinct once."""
    from floodwall.detect.breach import candidates
    from floodwall.logs.reader import LogReader

    paths = []
    for number, frame in enumerate(LogReader([log], site=log.stem)):
        suspects = frame.filter(candidates(frame))
        keyed = suspects.with_columns(pl.struct(MATCH_KEYS).hash(seed=3).alias("_key"))
        distinct = keyed.unique(subset="_key", keep="first", maintain_order=True).drop("_key")
        paths.append(out_dir / f"sim-{number:03d}.parquet")
        distinct.write_parquet(paths[-1])
        print(
            f"  {log.name} batch {number}: {frame.height:,} lines, {suspects.height:,} candidates, {distinct.height:,} distinct"
        )
    return paths


def worker(inputs: list[Path], paranoia: int) -> None:
    """One measurement with whichever floodwall is first on sys.path; prints JSON (seconds)."""
    from floodwall.detect.signatures import load_engine as load
    from floodwall.detect.signatures import match_request

    started = time.perf_counter()
    engine = load(paranoia=paranoia)
    result: dict[str, Any] = {"load_s": time.perf_counter() - started, "match_s": {}, "edge_ms": []}
    for path in inputs:
        frame = pl.read_parquet(path)
        started = time.perf_counter()
        hits = engine.match(frame)
        result["match_s"][path.name] = (time.perf_counter() - started, frame.height, hits.height)
    for method, path_, query, agent, referer in EDGE_REQUESTS:
        match_request(method, path_, query, user_agent=agent, referer=referer, engine=engine)
        times = []
        for _ in range(200):
            started = time.perf_counter()
            match_request(method, path_, query, user_agent=agent, referer=referer, engine=engine)
            times.append(time.perf_counter() - started)
        result["edge_ms"].append(statistics.median(times) * 1000)
    print(json.dumps(result))


Counts = dict[str, dict[str, Any]]  # family -> must_fire, detected, must_not, left_alone, missed, fired_wrongly


def _count(counts: Counts, family: str, must_fire: bool, fired: bool, title: str) -> None:
    row = counts.setdefault(
        family, {"must_fire": 0, "detected": 0, "must_not": 0, "left_alone": 0, "missed": [], "fired_wrongly": []}
    )
    if must_fire:
        row["must_fire"] += 1
        row["detected"] += fired
        if not fired:
            row["missed"].append(title)
    else:
        row["must_not"] += 1
        row["left_alone"] += not fired
        if fired:
            row["fired_wrongly"].append(title)


def table_worker(cases_json: Path) -> None:
    """Both regression tables with whichever floodwall is first on sys.path; prints JSON. The whole-request cases come
    from `cases_json` (written by the parent), so an earlier Floodwall without `load_whole_cases` runs them too."""
    from floodwall.detect.signatures import load_engine as load
    from floodwall.detect.signatures import match_request
    from floodwall.detect.signatures.regression import run_suite

    engine = load(paranoia=4)
    uri: Counts = {}
    result = run_suite(SUITE, paranoia=4, engine=engine)
    for family, score in result.families.items():
        uri[family] = {
            "must_fire": score.must_fire,
            "detected": score.detected,
            "must_not": score.must_not_fire,
            "left_alone": score.left_alone,
            "missed": score.missed,
            "fired_wrongly": score.false_alarms,
        }
    whole: Counts = {}
    for case in json.loads(cases_json.read_text()):
        path, mark, query = case["uri"].partition("?")
        named = {name.lower(): value for name, value in case["headers"]}
        hits = match_request(
            case["method"],
            path,
            query if mark else None,
            user_agent=named.get("user-agent"),
            referer=named.get("referer"),
            host=named.get("host"),
            headers=dict(case["headers"]),
            body=case["body"],
            engine=engine,
        )
        fired = case["rule_id"] in {hit.rule_id for hit in hits}
        _count(whole, case["family"], case["must_fire"], fired, case["title"])
    print(json.dumps({"uri": uri, "whole": whole, "skipped": dict(result.skipped)}))


def suite_tables(before_src: Path | None) -> None:
    """The URI and whole-request regression tables per family, after (and before, with `--before-src`)."""
    from floodwall.detect.signatures.regression import load_whole_cases  # here: a table worker may run older code

    versions = {"after": Path(__file__).resolve().parents[1] / "src"}
    if before_src:
        versions = {"before": before_src.resolve() / "src", **versions}
    with tempfile.TemporaryDirectory() as scratch:
        cases_json = Path(scratch) / "whole-cases.json"
        cases_json.write_text(json.dumps([asdict(case) for case in load_whole_cases(SUITE)]))
        results: dict[str, dict[str, Any]] = {}
        for name, src in versions.items():
            started = time.perf_counter()
            env = {**os.environ, "PYTHONPATH": str(src)}
            command = [sys.executable, __file__, "--table-worker", str(cases_json)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"{name} table worker failed:\n{done.stderr}")
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  {name}: regression tables in {time.perf_counter() - started:.1f} s", flush=True)
    titles = {
        "uri": "payload in method/URI/query/User-Agent/Referer (what a log holds)",
        "whole": "payload in the body or other headers (what the edge sees)",
    }
    for table, title in titles.items():
        print(f"\nCRS 3.3.4 regression suite at paranoia 4, {title}; must-fire detected, must-not-fire left alone")
        head = "".join(f"{name + ' det.':>20}" for name in versions) + "".join(
            f"{name + ' alone':>18}" for name in versions
        )
        print(f"{'family':<24}{'must-fire':>10}{'must-not':>10}{head}")
        families = sorted({f for result in results.values() for f in result[table]})
        for family in families:
            rows = {name: result[table].get(family) for name, result in results.items()}
            first = next(row for row in rows.values() if row)
            line = f"{family:<24}{first['must_fire']:>10}{first['must_not']:>10}"
            line += "".join(f"{_share(row, 'detected', 'must_fire'):>20}" for row in rows.values())
            line += "".join(f"{_share(row, 'left_alone', 'must_not'):>18}" for row in rows.values())
            print(line)
        for name, result in results.items():
            for family in families:
                row = result[table].get(family) or {}
                if row.get("missed") or row.get("fired_wrongly"):
                    wrong = row["fired_wrongly"]
                    print(f"  {name} {family}: missed {row['missed']} fired wrongly {len(wrong)} {wrong[:3]}")
    print(
        "URI table, skipped (not selected): " + ", ".join(f"{k}: {n}" for k, n in results["after"]["skipped"].items())
    )


def _share(row: dict[str, Any] | None, part: str, whole: str) -> str:
    if not row or not row[whole]:
        return "-"
    return f"{row[part]}/{row[whole]} {row[part] / max(row[whole], 1):.1%}"


def run_worker(src: Path, inputs: list[Path], paranoia: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, __file__, "--worker", "--paranoia", str(paranoia), *map(str, inputs)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def side_by_side(args: argparse.Namespace, inputs: list[Path]) -> None:
    """Before (--before-src) and after, in alternation, `--repeats` times each; medians."""
    versions = {"after": Path(__file__).resolve().parents[1] / "src"}
    if args.before_src:
        versions = {"before": args.before_src.resolve() / "src", **versions}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
    for repeat in range(args.repeats):
        for name, src in versions.items():
            runs[name].append(run_worker(src, inputs, args.paranoia))
            print(f"  repeat {repeat + 1}/{args.repeats} {name}: done", flush=True)

    def median(name: str, pick: Callable[[dict[str, Any]], Any]) -> float:
        return float(statistics.median(pick(run) for run in runs[name]))

    print(f"\nmedians of {args.repeats} runs (one process per run; load includes the compile or the cache load):")
    header = f"{'input':<28}{'rows':>9}" + "".join(f"{name + ' s':>12}{name + ' req/s':>15}" for name in versions)
    print(header + (f"{'speed-up':>10}" if len(versions) == 2 else ""))
    for path in inputs:
        rows = runs["after"][0]["match_s"][path.name][1]
        seconds = {name: median(name, lambda run: run["match_s"][path.name][0]) for name in versions}  # noqa: B023
        line = f"{path.name:<28}{rows:>9,}" + "".join(
            f"{seconds[n]:>12.2f}{rows / seconds[n]:>15,.0f}" for n in versions
        )
        print(line + (f"{seconds['before'] / seconds['after']:>9.1f}x" if len(versions) == 2 else ""))
    loads = "  ".join(f"{name} {median(name, lambda run: run['load_s']):.2f} s" for name in versions)
    print(f"engine load: {loads}")
    for number, (method, path_, query, _, _) in enumerate(EDGE_REQUESTS):
        edge = "  ".join(f"{name} {median(name, lambda run: run['edge_ms'][number]):.3f} ms" for name in versions)  # noqa: B023
        print(f"match_request {method} {path_}{'?' + query if query else ''}: {edge}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000, help="rows of the news-site batch")
    parser.add_argument("--baseline-rows", type=int, default=2_000)
    parser.add_argument("--attack-share", type=float, default=0.03)
    parser.add_argument("--paranoia", type=int, default=1)
    parser.add_argument("--sim-log", type=Path, action="append", default=[], help="a `floodwall simulate` log")
    parser.add_argument("--before-src", type=Path, help="a checkout of an earlier Floodwall to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tables-only", action="store_true", help="the regression tables, then stop")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--table-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("inputs", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.inputs, args.paranoia)
        return
    if args.table_worker:
        table_worker(args.table_worker)
        return
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}, polars {pl.__version__}"
    )

    if SUITE.is_dir():
        suite_tables(args.before_src)
    else:
        print(f"\nCRS regression suite not found at {SUITE}: tables skipped")
    if args.tables_only:
        return

    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        cold = SignatureEngine(load_ruleset(paranoia=args.paranoia), args.paranoia, Path(scratch))
        cold_s = time.perf_counter() - started
        started = time.perf_counter()
        SignatureEngine(load_ruleset(paranoia=args.paranoia), args.paranoia, Path(scratch))
        cached_s = time.perf_counter() - started
    report = cold.compile_report
    print(
        f"\nengine at paranoia {args.paranoia}: {len(cold.signatures)} signatures in {len(cold.groups)} chain groups; compiled in {cold_s:.1f} s, from the cache in {cached_s:.2f} s"
    )
    print(
        f"  hyperscan {report.hyperscan}, prefilter+re {report.prefiltered}, re only {report.python_only}, unusable {report.unusable}, libinjection {report.libinjection} (missing: {report.libinjection_missing})"
    )

    with tempfile.TemporaryDirectory() as scratch:
        frame = news_batch(args.rows, args.attack_share)
        inputs = [Path(scratch) / "news-batch.parquet"]
        frame.write_parquet(inputs[0])
        print(f"\ninputs: news-site batch of {args.rows:,} requests ({args.attack_share:.0%} attacks)")
        for log in args.sim_log:
            inputs += simulated_frames(log, Path(scratch))
        side_by_side(args, inputs)

    engine = load_engine(paranoia=args.paranoia)
    hits = engine.match(frame)
    print(f"\nnews-site batch: {hits.height:,} hits on {hits.get_column('row').n_unique():,} requests")
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
