"""The report's charts as inline SVG (`floodwall.report.svg`): requests per second with attack and other traffic
stacked and the phases shaded, answers by status class with the cache and request time, attack vectors over time,
and attacking addresses per network and per country. No script, nothing fetched; each chart is a few kilobytes."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any, Final

import numpy as np
import polars as pl

from floodwall.report.account import Charts
from floodwall.report.svg import Plot, figure, legend, nice_ticks, number

__all__ = ["chart_fragments"]

_ATTACK: Final = "#c0392b"
_BENIGN: Final = "#95a5a6"
_PHASE: Final = ("rgba(192,57,43,0.10)", "rgba(192,57,43,0.18)")
_OTHER_INCIDENT: Final = "rgba(41,128,185,0.16)"
_PALETTE: Final = ("#c0392b", "#2980b9", "#27ae60", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#f1c40f", "#2c3e50")
_STATUS: Final = (
    ("s2xx", "2xx", "#27ae60"),
    ("s3xx", "3xx", "#2980b9"),
    ("s4xx", "4xx", "#f39c12"),
    ("s5xx", "5xx", "#c0392b"),
    ("s499", "499 (client gave up)", "#8e44ad"),
)
_CACHE: Final = (("cache_hit", "cache hit", "#16a085"), ("cache_miss", "cache miss", "#7f8c8d"))
_WIDTH: Final = 1100
_HEIGHT: Final = 340
_NAMED_BANDS: Final = 12  # phases listed in a chart's description


def _epoch(frame: pl.DataFrame, column: str) -> np.ndarray:
    return frame.get_column(column).dt.epoch("s").to_numpy().astype(np.int64)


def _grid(
    frame: pl.DataFrame, step_s: int, columns: list[str], start_s: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`columns` of `frame` (bucketed by `bucket`) on a regular grid of `step_s` from `start_s`: buckets nobody
    requested in are 0, so an area drops to the axis over a silence instead of bridging it."""
    times = _epoch(frame, "bucket")
    size = int((times.max() - start_s) // step_s) + 1 if times.size else 1
    index = (times - start_s) // step_s
    keep = (index >= 0) & (index < size)
    out: dict[str, np.ndarray] = {}
    for column in columns:
        values = np.zeros(size)
        np.add.at(values, index[keep], frame.get_column(column).fill_null(0.0).to_numpy().astype(float)[keep])
        out[column] = values
    return start_s + np.arange(size, dtype=np.int64) * step_s, out


def _bands(plot: Plot, shading: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """Shaded phases (and non-flood incidents), and their names for the description."""
    marks, names = [], []
    span = (plot.x1 - plot.x0) or 1.0
    for n, part in enumerate(shading):
        start = datetime.fromisoformat(part["start"]).timestamp()
        end = datetime.fromisoformat(part["end"]).timestamp()
        colour = _PHASE[n % 2] if part["kind"] == "phase" else _OTHER_INCIDENT  # neighbours told apart
        title = f"{part['label']}: {part['start']} to {part['end']}"
        marks.append(plot.band(start, end, colour, part["label"], title, show_label=(end - start) > 0.05 * span))
        names.append(f"{part['label']} ({part['start']} to {part['end']})")
    return "".join(marks), names


def _described(names: list[str]) -> str:
    if not names:
        return ""
    shown = "; ".join(names[:_NAMED_BANDS]) + (
        f"; and {len(names) - _NAMED_BANDS} more" if len(names) > _NAMED_BANDS else ""
    )
    return f" Shaded: {shown}."


def _window(charts: Charts) -> tuple[int, int]:
    """The time axis every time chart shares: the traffic series' first bucket to the end of its last."""
    times = _epoch(charts.traffic, "bucket")
    if times.size == 0:
        return 0, 1
    return int(times.min()), int(times.max()) + charts.bucket_s


def _traffic(charts: Charts) -> str:
    start, end = _window(charts)
    x, series = _grid(charts.traffic, charts.bucket_s, ["benign_rps", "attack_rps"], start)
    benign, attack = series["benign_rps"], series["attack_rps"]
    total = benign + attack
    ticks = nice_ticks(float(total.max()) if total.size else 0.0)
    plot = Plot(_WIDTH, _HEIGHT, start, end, ticks[-1])
    bands, names = _bands(plot, charts.shading)
    others = sorted({part["kind"] for part in charts.shading if part["kind"] != "phase"})  # shaded blue
    body = "".join(
        [
            bands,
            plot.y_axis(ticks, "requests / s"),
            plot.area(x, np.zeros_like(benign), benign, _BENIGN, "other traffic"),
            plot.area(x, benign, total, _ATTACK, "attack"),
            plot.time_axis(),
            legend(
                [("other traffic", _BENIGN, "area"), ("attack", _ATTACK, "area"), ("flood phase", "#f2d7d5", "area")]
                + ([(f"incident ({', '.join(others)})", "#d6e6f2", "area")] if others else []),
                plot.left,
                _HEIGHT - 8,
                plot.inner_width,
            ),
        ]
    )
    peak = int(np.argmax(total)) if total.size else 0
    at = datetime.fromtimestamp(float(x[peak]), UTC).strftime("%Y-%m-%d %H:%M") if total.size else "–"
    title = f"Requests per second (mean per {charts.bucket_s} s), attack and other traffic stacked; phases shaded"
    description = (
        f"Stacked area chart over time. Busiest bucket: {number(float(total.max()) if total.size else 0)} requests/s "
        f"at {at} UTC, of which {number(float(attack[peak]) if total.size else 0)} attack; highest attack rate "
        f"{number(float(attack.max()) if attack.size else 0)} requests/s.{_described(names)}"
    )
    return figure("chart-traffic", _WIDTH, _HEIGHT, title, description, body)


def _step(frame: pl.DataFrame) -> int:
    times = np.unique(_epoch(frame, "bucket"))
    return int(np.diff(times).min()) if times.size > 1 else 60


def _status(charts: Charts) -> str:
    start, end = _window(charts)
    frame = charts.status
    step = _step(frame)
    columns = [c for c, _, _ in _STATUS]
    cached = int(frame.select(pl.col("cache_hit").sum() + pl.col("cache_miss").sum()).item() or 0) > 0
    if cached:
        columns += [c for c, _, _ in _CACHE]
    x, series = _grid(frame, step, columns, start - (start % step)) if frame.height else (np.zeros(0), {})
    peak = max((float(v.max()) for v in series.values() if v.size), default=0.0)
    ticks = nice_ticks(peak)
    timed = frame.filter(pl.col("rt_mean").is_not_null()) if frame.height else frame
    has_rt = timed.height > 0
    plot = Plot(_WIDTH, _HEIGHT, start, end, ticks[-1], right=64 if has_rt else 24)
    bands, names = _bands(plot, charts.shading)
    marks = [bands, plot.y_axis(ticks, "answers / s")]
    entries: list[tuple[str, str, str]] = []
    for column, name, colour in _STATUS + (_CACHE if cached else ()):
        if column in series:
            dashed = column.startswith("cache")
            marks.append(plot.line(x, series[column], colour, name, dashed=dashed))
            entries.append((name, colour, "dash" if dashed else "line"))
    rt_note = ""
    if has_rt:
        rt_x = _epoch(timed, "bucket").astype(float)
        rt = timed.get_column("rt_mean").to_numpy().astype(float)
        rt_ticks = nice_ticks(float(np.nanmax(rt)) if rt.size else 0.0)
        on_grid = np.full(x.size, np.nan)
        on_grid[((rt_x - x[0]) // step).astype(np.int64).clip(0, max(x.size - 1, 0))] = rt
        marks.append(plot.y_axis(rt_ticks, "mean request time (s)", right=True, y_top=rt_ticks[-1]))
        marks.append(plot.line(x, on_grid, "#34495e", "mean request time (s)", y_top=rt_ticks[-1]))
        entries.append(("mean request time (s, right axis)", "#34495e", "line"))
        rt_note = f" Mean request time peaked at {number(float(np.nanmax(rt)))} s."
    marks.append(plot.time_axis())
    marks.append(legend(entries, plot.left, _HEIGHT - 8, plot.inner_width))
    totals = {name: float(series[c].sum()) * step for c, name, _ in _STATUS if c in series}
    share = ", ".join(f"{name} {number(v)}" for name, v in totals.items() if v)
    title = "Answers per second by status class, and the cache"
    description = (
        f"Line chart over time, one line per status class{' and cache result' if cached else ''}. "
        f"Answers in the log: {share or 'none'}.{rt_note}{_described(names)}"
    )
    return figure("chart-status", _WIDTH, _HEIGHT, title, description, "".join(marks))


def _vectors(charts: Charts) -> str:
    start, end = _window(charts)
    frame = charts.vectors
    step = _step(frame)
    names = frame.get_column("vector").unique(maintain_order=True).to_list()
    wide = frame.pivot(on="vector", index="bucket", values="rps", aggregate_function="sum").fill_null(0.0)
    x, series = _grid(wide, step, names, start - (start % step))
    stacked = np.cumsum(np.vstack([series[n] for n in names]), axis=0) if names else np.zeros((1, x.size))
    ticks = nice_ticks(float(stacked[-1].max()) if stacked.size else 0.0)
    plot = Plot(_WIDTH, _HEIGHT, start, end, ticks[-1])
    marks = [plot.y_axis(ticks, "attack requests / s")]
    lower = np.zeros(x.size)
    entries = []
    totals = []
    for k, name in enumerate(names):
        colour = _PALETTE[k % len(_PALETTE)]
        marks.append(plot.area(x, lower, stacked[k], colour, str(name)))
        lower = stacked[k]
        entries.append((str(name), colour, "area"))
        totals.append(f"{name} {number(float(series[name].sum()) * step)} requests")
    marks.append(plot.time_axis())
    marks.append(legend(entries, plot.left, _HEIGHT - 8, plot.inner_width))
    title = "Attack requests per second by vector"
    description = f"Stacked area chart over time, one layer per vector: {'; '.join(totals)}."
    return figure("chart-vectors", _WIDTH, _HEIGHT, title, description, "".join(marks))


def _bars(rows: list[tuple[str, int, int]], x: float, width: float, top: float, colour: str, title: str) -> str:
    """Horizontal bars (label, addresses, requests) in a panel at `x` of `width`, labels on its left third."""
    label_w = width * 0.42
    bar_w = width - label_w - 50
    high = max((a for _, a, _ in rows), default=1) or 1
    parts = [f'<text class="panel-title" x="{x:.0f}" y="{top - 10:.0f}">{title}</text>']
    for k, (label, addresses, requests) in enumerate(rows):
        y = top + 20 * k
        length = max(addresses / high * bar_w, 1.0)
        short = label if len(label) <= 44 else label[:43] + "…"
        tip = f"{label}: {addresses:,} addresses, {requests:,} requests"
        parts.append(
            f'<text x="{x + label_w - 6:.0f}" y="{y + 12:.0f}" text-anchor="end">{escape(short)}</text>'
            f'<rect x="{x + label_w:.0f}" y="{y + 2:.0f}" width="{length:.1f}" height="14" fill="{colour}">'
            f"<title>{escape(tip)}</title></rect>"
            f'<text x="{x + label_w + length + 4:.0f}" y="{y + 13:.0f}">{addresses:,}</text>'
        )
    return "".join(parts)


def _networks(charts: Charts) -> str:
    networks = [
        (str(r[0]), int(r[1] or 0), int(r[2] or 0))
        for r in charts.networks.select("label", "addresses", "requests").iter_rows()
    ]
    countries = [
        (str(r[0] or "unknown"), int(r[1] or 0), int(r[2] or 0))
        for r in charts.countries.head(15).select("country", "addresses", "requests").iter_rows()
    ]
    top = 44
    height = top + 20 * max(len(networks), len(countries), 1) + 16
    left_w = _WIDTH * 0.62
    body = _bars(networks, 10, left_w - 20, top, _ATTACK, "Addresses per network") + _bars(
        countries, left_w + 10, _WIDTH - left_w - 20, top, "#2c3e50", "Addresses per country"
    )
    title = "Attacking addresses per network (left) and per country (right)"
    listed = "; ".join(f"{label} {count}" for label, count, _ in networks[:10])
    places = "; ".join(f"{label} {count}" for label, count, _ in countries[:10])
    description = f"Bar charts. Largest networks by addresses: {listed}. Countries: {places}."
    return figure("chart-networks", _WIDTH, height, title, description, body)


def _no_traffic() -> str:
    body = f'<text x="{_WIDTH / 2:.0f}" y="40" text-anchor="middle">No request was read: nothing to draw.</text>'
    title = "Requests per second, attack and other traffic stacked"
    return figure("chart-traffic", _WIDTH, 70, title, "Empty chart: the log held no request.", body)


def chart_fragments(charts: Charts) -> dict[str, str]:
    """chart name -> an inline-SVG `<figure>`; "" for a chart with nothing to draw (the traffic chart always has a
    figure, saying so when the log was empty)."""
    timed = charts.traffic.height > 0
    return {
        "traffic": _traffic(charts) if timed else _no_traffic(),
        "status": _status(charts) if timed and charts.status.height else "",
        "vectors": _vectors(charts) if timed and charts.vectors.height else "",
        "networks": _networks(charts) if charts.networks.height or charts.countries.height else "",
    }
