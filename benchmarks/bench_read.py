"""How fast Floodwall reads a combined access log, and in how much memory, next to two points of comparison.

    .venv/bin/python benchmarks/bench_read.py                      # generate 5M lines (cached), measure all
    .venv/bin/python benchmarks/bench_read.py --log access.log     # measure a log of your own
    .venv/bin/python benchmarks/bench_read.py --lines 1000000 --repeat 1 --skip-goaccess --json out.json

Each measurement runs in a fresh child process; its peak memory is the child's RSS high-water mark
(`ru_maxrss` from `wait4`), so one measurement's garbage never counts against the next. Times for the Python
readers are taken inside the child around the read alone (interpreter start and imports excluded); goaccess's
is its whole run. The compared tools:

- `floodwall`: `LogReader` over the file, every frame consumed (typed Request frames, `client_net` included);
  run on a 1M-line prefix as well, to show memory stays flat as the file grows;
- `python re loop`: the baseline, one `re` match per line into a tuple (status and size as ints), discarded;
- `goaccess`: `goaccess --log-format=COMBINED -o report.json`, which parses *and* aggregates: a floor to beat,
  not a like-for-like comparison.

This is a benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

GENERATOR_VERSION = 1
CHUNK_LINES = 500_000
ODD_FRACTION = 0.03

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 "
    "Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.6668.81 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 "
    "Safari/537.36 Edg/129.0.0.0",
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/129.0.6668.69 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "[FBAN/FBIOS;FBAV/482.0.0.37.106;FBBV/652102473;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.6;FBSS/3;FBID/phone;"
    "FBLC/en_US;FBOP/5;FBRV/654012881]",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) "
    "Chrome/116.0.1938.76 Safari/537.36",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "python-requests/2.32.3",
    "curl/8.5.0",
    "Go-http-client/1.1",
    "-",
]
UA_WEIGHTS = [18, 8, 16, 12, 6, 4, 5, 3, 3, 4, 3, 2, 1, 1, 1, 1, 0.5, 0.5, 1]
WORDS = [
    "election",
    "budget",
    "climate",
    "storm",
    "council",
    "school",
    "police",
    "court",
    "health",
    "housing",
    "energy",
    "football",
    "transport",
    "minister",
    "protest",
    "festival",
    "market",
    "strike",
    "vaccine",
    "border",
    "flood",
    "drought",
    "museum",
    "election-results",
    "live-blog",
]
SECTIONS = ["news", "politics", "world", "business", "sport", "culture", "opinion", "local", "science"]


def _weights(values: Sequence[float]) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    weights: npt.NDArray[np.float64] = array / array.sum()
    return weights


def _pools(rng: np.random.Generator) -> dict[str, list[str]]:
    """Distinct values to draw from: building these few tens of thousands in Python is cheap; lines are not."""
    octets = rng.integers(1, 255, size=(60_000, 4))
    v4 = list({f"{a}.{b}.{c}.{d}" for a, b, c, d in octets.tolist()})
    v6 = [f"2a02:{a:x}:{b:x}:{c:x}::{d:x}" for a, b, c, d in rng.integers(1, 65535, size=(4_000, 4)).tolist()]
    articles = [
        f"/{SECTIONS[s]}/2024/10/{WORDS[w1]}-{WORDS[w2]}-{n}"
        for s, w1, w2, n in zip(
            rng.integers(0, len(SECTIONS), 20_000).tolist(),
            rng.integers(0, len(WORDS), 20_000).tolist(),
            rng.integers(0, len(WORDS), 20_000).tolist(),
            rng.integers(100_000, 999_999, 20_000).tolist(),
            strict=True,
        )
    ]
    assets = [f"/static/js/app.{h:08x}.js" for h in rng.integers(0, 2**32, 40).tolist()]
    assets += [f"/static/css/site.{h:08x}.css" for h in rng.integers(0, 2**32, 20).tolist()]
    assets += [f"/img/2024/10/{n}-{w}.jpg" for n, w in enumerate(rng.integers(100, 2000, 3000).tolist())]
    assets += ["/favicon.ico", "/robots.txt", "/sitemap.xml", "/feed/", "/wp-login.php", "/xmlrpc.php"]
    queries = ["", "?utm_source=twitter&utm_medium=social", "?page=2", "?page=3", "?ref=homepage", "?amp=1"]
    queries += [f"?utm_source=newsletter&utm_campaign=daily-{d}" for d in range(1, 31)]
    queries += [f"?q={WORDS[a]}+{WORDS[b]}" for a, b in rng.integers(0, len(WORDS), (300, 2)).tolist()]
    referers = ["-"] * 8 + ["https://www.google.com/", "https://t.co/", "https://www.facebook.com/"]
    referers += [f"https://example-news.org{p}" for p in articles[:200]]
    return {"v4": v4, "v6": v6, "articles": articles, "assets": assets, "queries": queries, "referers": referers}


def _odd_lines(rng: np.random.Generator, normal: list[str], count: int) -> list[bytes]:
    """Lines a real log holds a few of: truncated, junk, huge, escaped, `-` in numbers, other formats."""
    out: list[bytes] = []
    for i in range(count):
        kind = i % 9
        base = normal[i % len(normal)]
        if kind == 0:  # truncated (a crashed writer, a full disk)
            out.append(base[: int(rng.integers(10, max(11, len(base) - 1)))].encode())
        elif kind == 1:  # binary junk, newline-free, often invalid UTF-8
            junk = rng.integers(0, 256, int(rng.integers(5, 200)), dtype=np.uint8).tobytes()
            out.append(junk.replace(b"\n", b" ").replace(b"\r", b" "))
        elif kind == 2:  # an attacker's 8 KB request line
            out.append(
                (
                    f'198.51.100.{i % 250} - - [10/Oct/2024:13:55:36 +0000] "GET /search?q={"A" * 8192} HTTP/1.1" '
                    f'414 0 "-" "sqlmap/1.8"'
                ).encode()
            )
        elif kind == 3:  # Apache-style escaped quotes
            out.append(
                (
                    f'203.0.113.{i % 250} - - [10/Oct/2024:13:55:36 +0000] "GET /news/\\"quoted\\"-{i} HTTP/1.1" 200 '
                    f'512 "-" "Mozilla/5.0 \\"evil\\" agent"'
                ).encode()
            )
        elif kind == 4:  # `-` in numeric fields
            out.append(base.replace(" 200 ", " - ", 1).encode() if " 200 " in base else base.encode())
        elif kind == 5:  # bytes `-`
            out.append(f'192.0.2.{i % 250} - - [10/Oct/2024:13:55:37 +0000] "HEAD / HTTP/1.1" 304 - "-" "-"'.encode())
        elif kind == 6:  # a JSON line from another log
            out.append(b'{"time":"2024-10-10T13:55:38+00:00","remote_addr":"192.0.2.7","status":200}')
        elif kind == 7:  # common format (no referer, no agent)
            out.append(f'192.0.2.{i % 250} - bob [10/Oct/2024:13:55:39 +0000] "GET /private HTTP/1.0" 401 381'.encode())
        else:  # a syslog line
            out.append(f"Oct 10 13:55:40 web1 nginx[{1000 + i}]: worker process exited on signal 9".encode())
    return out


def _chunk(rng: np.random.Generator, pools: dict[str, list[str]], start_s: float, n: int) -> tuple[bytes, float]:
    """`n` combined lines, built column by column; returns them and the time the next chunk starts at."""
    v4, v6 = pl.Series(pools["v4"]), pl.Series(pools["v6"])
    # Half the requests come from a few busy clients (Zipf-like), half from anyone in the pool.
    busy = (rng.zipf(1.4, n) - 1) % len(v4)
    which = np.where(rng.random(n) < 0.5, busy, rng.integers(0, len(v4), n))
    clients = v4.gather(which)
    is_v6 = rng.random(n) < 0.06
    clients = pl.select(
        pl.when(pl.lit(pl.Series(is_v6))).then(pl.lit(v6.gather(rng.integers(0, len(v6), n)))).otherwise(clients)
    ).to_series()
    seconds = start_s + np.cumsum(rng.exponential(86_400 / 2_000_000, n))
    ts = pl.Series(seconds * 1e6).cast(pl.Int64).cast(pl.Datetime("us")).dt.strftime("%d/%b/%Y:%H:%M:%S +0000")
    is_asset = rng.random(n) < 0.45
    article = pl.Series(pools["articles"]).gather(np.minimum(rng.zipf(1.2, n) - 1, len(pools["articles"]) - 1))
    asset = pl.Series(pools["assets"]).gather(rng.integers(0, len(pools["assets"]), n))
    query = pl.Series(pools["queries"]).gather(
        rng.choice(len(pools["queries"]), n, p=_weights([60] + [1] * (len(pools["queries"]) - 1)))
    )
    method = pl.Series(["GET", "POST", "HEAD"]).gather(rng.choice(3, n, p=[0.93, 0.05, 0.02]))
    proto = pl.Series(["HTTP/1.1", "HTTP/2.0", "HTTP/1.0"]).gather(rng.choice(3, n, p=[0.6, 0.38, 0.02]))
    status = pl.Series(["200", "304", "301", "404", "500", "503", "206", "403"]).gather(
        rng.choice(8, n, p=[0.84, 0.06, 0.03, 0.04, 0.005, 0.005, 0.01, 0.01])
    )
    size = pl.Series(rng.lognormal(9, 1.5, n).astype(np.int64)).cast(pl.String)
    referer = pl.Series(pools["referers"]).gather(rng.integers(0, len(pools["referers"]), n))
    agent = pl.Series(USER_AGENTS).gather(rng.choice(len(UA_WEIGHTS), n, p=_weights(UA_WEIGHTS)))
    frame = pl.DataFrame(
        {
            "c": clients,
            "t": ts,
            "m": method,
            "p": pl.select(pl.when(pl.lit(pl.Series(is_asset))).then(pl.lit(asset)).otherwise(pl.lit(article)))
            .to_series()
            .alias("p"),
            "q": query,
            "v": proto,
            "s": status,
            "b": size,
            "r": referer,
            "a": agent,
        }
    )
    lines = frame.select(
        pl.concat_str(
            "c",
            pl.lit(" - - ["),
            "t",
            pl.lit('] "'),
            "m",
            pl.lit(" "),
            "p",
            pl.when(pl.col("p").str.starts_with("/static") | pl.col("p").str.starts_with("/img"))
            .then(pl.lit(""))
            .otherwise("q"),
            pl.lit(" "),
            "v",
            pl.lit('" '),
            "s",
            pl.lit(" "),
            "b",
            pl.lit(' "'),
            "r",
            pl.lit('" "'),
            "a",
            pl.lit('"'),
        ).alias("line")
    )["line"]
    odd_rows = np.flatnonzero(rng.random(n) < ODD_FRACTION)
    marker = pl.Series([f"\x00ODD{i}\x00" for i in range(len(odd_rows))])
    lines = lines.scatter(odd_rows, marker)
    data = (lines.str.join("\n").item() + "\n").encode()
    odd = _odd_lines(rng, lines.gather(np.arange(0, min(n, 2000), 7)).to_list(), len(odd_rows))
    data = re.sub(rb"\x00ODD(\d+)\x00", lambda m: odd[int(m.group(1))], data)
    return data, float(seconds[-1])


def generate(path: Path, lines: int, seed: int = 20241010) -> None:
    rng = np.random.default_rng(seed)
    pools = _pools(rng)
    start_s = 1_728_518_400.0  # 2024-10-10 00:00:00 UTC
    partial = path.with_suffix(".partial")
    written = 0
    began = time.monotonic()
    with partial.open("wb") as out:
        while written < lines:
            n = min(CHUNK_LINES, lines - written)
            data, start_s = _chunk(rng, pools, start_s, n)
            out.write(data)
            written += n
            print(f"\r  generated {written:,} lines", end="", file=sys.stderr, flush=True)
    partial.rename(path)
    print(f" in {time.monotonic() - began:.1f} s -> {path}", file=sys.stderr)


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))


def prefix(source: Path, target: Path, lines: int) -> None:
    """The first `lines` lines of `source`."""
    partial = target.with_suffix(".partial")
    remaining = lines
    with source.open("rb") as src, partial.open("wb") as out:
        while remaining > 0 and (block := src.read(16 * 1024 * 1024)):
            count = block.count(b"\n")
            if count >= remaining:
                cut = -1
                for _ in range(remaining):
                    cut = block.index(b"\n", cut + 1)
                block = block[: cut + 1]
                count = remaining
            out.write(block)
            remaining -= count
    partial.rename(target)


# -- measurement, in a child process ---------------------------------------------------------------------------

COMBINED_RX = re.compile(
    rb'(\S+) (\S+) (\S+) \[([^\]]*)\] "((?:[^"\\]|\\.)*)" (\d{3}|-) (\d+|-) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"'
)


def _measure_floodwall(path: str) -> dict[str, Any]:
    from floodwall.logs import LogReader, fast_path_available

    began = time.perf_counter()
    reader = LogReader([path], site="bench")
    rows = 0
    for frame in reader:
        rows += frame.height
    seconds = time.perf_counter() - began
    stats = reader.inputs[0]
    return {
        "seconds": seconds,
        "lines": stats.lines,
        "rows": rows,
        "fast": stats.fast_lines,
        "strict": stats.parsed - stats.fast_lines,
        "bad": stats.bad_lines,
        "fast_path_built": fast_path_available(),
    }


def _measure_re(path: str) -> dict[str, Any]:
    began = time.perf_counter()
    lines = parsed = 0
    match = COMBINED_RX.fullmatch
    with open(path, "rb") as f:  # noqa: PTH123 - the plainest loop is the point of the baseline
        for raw in f:
            lines += 1
            m = match(raw.rstrip(b"\r\n"))
            if m is None:
                continue
            g = m.groups()
            row = (
                g[0].decode(),
                g[3].decode(),
                g[4].decode("utf-8", "replace"),
                None if g[5] == b"-" else int(g[5]),
                None if g[6] == b"-" else int(g[6]),
                g[7].decode("utf-8", "replace"),
                g[8].decode("utf-8", "replace"),
            )
            parsed += row is not None
    return {"seconds": time.perf_counter() - began, "lines": lines, "rows": parsed}


def _child_main(kind: str, path: str) -> None:
    result = _measure_floodwall(path) if kind == "floodwall" else _measure_re(path)
    print(json.dumps(result))


@dataclass
class Row:
    tool: str
    lines: int
    seconds: float
    lines_per_s: float
    peak_rss_mb: float
    notes: str = ""
    runs: list[float] | None = None


def _run_child(argv: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in bytes, stdout) of a child process.

    The peak comes from GNU time (`%M`, the child's `ru_maxrss`) when installed: `wait4` from this process would
    not do, because Linux carries a process's RSS high-water mark across fork and exec, so every child would
    report at least this (large, log-generating) process's peak. Without GNU time, the child's `VmHWM` is polled.
    """
    with tempfile.TemporaryDirectory() as scratch:
        out_path, time_path = Path(scratch) / "out", Path(scratch) / "time"
        gnu_time = Path("/usr/bin/time")
        command = [str(gnu_time), "-f", "%M", "-o", str(time_path), *argv] if gnu_time.exists() else argv
        with out_path.open("wb") as out:
            began = time.perf_counter()
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL)
            polled = 0
            while proc.poll() is None:
                polled = max(polled, _vm_hwm(proc.pid))
                time.sleep(0.02)
            wall = time.perf_counter() - began
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}")
        peak = int(time_path.read_text().split()[-1]) * 1024 if gnu_time.exists() else polled
        return wall, peak, out_path.read_text()


def _vm_hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def measure_python(kind: str, path: Path, repeat: int) -> tuple[list[float], list[int], dict[str, Any]]:
    seconds, peaks = [], []
    result: dict[str, Any] = {}
    for _ in range(repeat):
        _, peak, stdout = _run_child([sys.executable, __file__, "--_child", kind, str(path)])
        result = json.loads(stdout)
        seconds.append(result["seconds"])
        peaks.append(peak)
    return seconds, peaks, result


def measure_goaccess(path: Path, repeat: int, workdir: Path) -> tuple[list[float], list[int]]:
    seconds, peaks = [], []
    for _ in range(repeat):
        report = workdir / "goaccess-report.json"
        argv = [
            "goaccess",
            str(path),
            "--log-format=COMBINED",
            "--no-global-config",
            "--no-progress",
            "-o",
            str(report),
        ]
        wall, peak, _ = _run_child(argv)
        seconds.append(wall)
        peaks.append(peak)
    return seconds, peaks


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "polars": pl.__version__,
        "load_average_at_start": os.getloadavg(),
    }


def _row(tool: str, lines: int, seconds: list[float], peaks: list[int], notes: str = "") -> Row:
    median = statistics.median(seconds)
    return Row(tool, lines, median, lines / median if median else 0.0, max(peaks) / 2**20, notes, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/floodwall-bench"))
    parser.add_argument("--log", type=Path, help="measure this combined log instead of a generated one")
    parser.add_argument("--lines", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-goaccess", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        _child_main(*args._child)
        return 0

    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.log is not None:
        log = args.log
        total = count_lines(log)
    else:
        log = args.workdir / f"combined-{args.lines}-v{GENERATOR_VERSION}.log"
        if not log.exists():
            generate(log, args.lines)
        total = args.lines
    small_lines = min(1_000_000, total // 5) if total >= 2_000_000 else 0
    small = args.workdir / f"{log.stem}-prefix-{small_lines}.log"
    if small_lines and not small.exists():
        prefix(log, small, small_lines)

    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores; load average at start {info['load_average_at_start']}")
    print(f"log: {log} ({log.stat().st_size / 2**20:,.0f} MiB, {total:,} lines); median of {args.repeat} runs")
    subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=False)  # into the page cache for everyone

    rows: list[Row] = []
    seconds, peaks, result = measure_python("floodwall", log, args.repeat)
    notes = (
        f"fast path {result['fast']:,}, strict {result['strict']:,}, bad {result['bad']:,}"
        f"{'' if result['fast_path_built'] else ' (C fast path not built)'}"
    )
    rows.append(_row("floodwall LogReader", result["lines"], seconds, peaks, notes))
    if small_lines:
        seconds, peaks, result = measure_python("floodwall", small, args.repeat)
        rows.append(_row("floodwall LogReader (prefix)", result["lines"], seconds, peaks, "memory vs file size"))
    seconds, peaks, result = measure_python("re", log, args.repeat)
    rows.append(_row("python re loop", result["lines"], seconds, peaks, f"{result['rows']:,} lines matched"))
    if not args.skip_goaccess:
        if shutil.which("goaccess") is None:
            print("goaccess is not installed (apt-get install goaccess); skipped", file=sys.stderr)
        else:
            seconds, peaks = measure_goaccess(log, args.repeat, args.workdir)
            rows.append(_row("goaccess COMBINED", total, seconds, peaks, "parses and aggregates; wall time"))

    print()
    print(f"{'tool':<30} {'lines':>11} {'seconds':>9} {'lines/s':>11} {'peak RSS MB':>12}  notes")
    for row in rows:
        print(
            f"{row.tool:<30} {row.lines:>11,} {row.seconds:>9.2f} {row.lines_per_s:>11,.0f} "
            f"{row.peak_rss_mb:>12,.0f}  {row.notes}"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"machine": info, "log": str(log), "rows": [asdict(r) for r in rows]}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
