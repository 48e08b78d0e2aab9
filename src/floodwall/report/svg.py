"""Small inline-SVG drawing kit for the report's charts: axes with readable ticks, stacked areas, lines, shaded
bands and horizontal bars, written as text.

Why our own: the report must open offline, print, and stay light. Plotly inlined 4.8 MB of JavaScript into every
report and took seconds to build its figures; these charts are a few kilobytes of SVG each, need no script (the
page's Content-Security-Policy allows none), and print as vector graphics. Each chart is a `<figure>` whose `<svg>`
has `role="img"` with a `<title>` and a `<desc>` (WAI-ARIA's graphics pattern: https://www.w3.org/TR/svg-aam-1.0/),
so a screen reader announces what it shows. Series are at most a few thousand points (`forensics.charts` buckets
them), so the per-point formatting below is bounded by the chart, not by the log.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Final

import numpy as np

__all__ = ["Plot", "figure", "legend", "nice_ticks", "number", "time_ticks"]

_TIME_STEPS: Final = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
    2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400,
)  # fmt: skip


def number(value: float) -> str:
    """A tick label: 950, 1.2k, 3.4M; fractions with two significant digits."""
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.3g}k"
    if magnitude >= 10 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.2g}"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Ticks from 0 to at least `top`, on a 1-2-2.5-5 step, about `count` of them."""
    if not math.isfinite(top) or top <= 0:
        return [0.0, 1.0]
    raw = top / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    last = math.ceil(top / step - 1e-9)
    return [round(step * k, 10) for k in range(last + 1)]


def time_ticks(start_s: float, end_s: float, count: int = 8) -> list[tuple[float, str]]:
    """(epoch seconds, label) ticks in UTC on a round step (seconds to weeks), at most about `count`."""
    span = max(end_s - start_s, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= count), _TIME_STEPS[-1])
    first = math.ceil(start_s / step) * step
    if step >= 86400:
        pattern = "%Y-%m-%d"
    elif span > 86400:
        pattern = "%m-%d %H:%M"
    elif step >= 60:
        pattern = "%H:%M"
    else:
        pattern = "%H:%M:%S"
    ticks = []
    at = float(first)
    while at <= end_s + 1e-6:
        ticks.append((at, datetime.fromtimestamp(at, UTC).strftime(pattern)))
        at += step
    return ticks


@dataclass(frozen=True)
class Plot:
    """A plotting area inside an SVG of `width` x `height` user units, mapping x (epoch seconds or any number)
    from [x0, x1] and y from [0, y_top] into the area left by the margins."""

    width: int
    height: int
    x0: float
    x1: float
    y_top: float
    left: int = 64
    right: int = 24
    top: int = 30
    bottom: int = 64

    @property
    def inner_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def inner_height(self) -> float:
        return self.height - self.top - self.bottom

    @property
    def base(self) -> float:
        return float(self.height - self.bottom)

    def xs(self, values: np.ndarray) -> np.ndarray:
        span = (self.x1 - self.x0) or 1.0
        return np.asarray(self.left + (values - self.x0) / span * self.inner_width, dtype=float)

    def ys(self, values: np.ndarray, y_top: float | None = None) -> np.ndarray:
        top = (y_top if y_top is not None else self.y_top) or 1.0
        return np.asarray(self.base - np.asarray(values, dtype=float) / top * self.inner_height, dtype=float)

    def x(self, value: float) -> float:
        return float(self.xs(np.array([value]))[0])

    # --- marks -----------------------------------------------------------------------------------------------------

    def area(self, x: np.ndarray, lower: np.ndarray, upper: np.ndarray, colour: str, name: str) -> str:
        """The band between two series (a layer of a stacked area), as one path."""
        px, low, high = self.xs(x), self.ys(lower), self.ys(upper)
        top = _points(px, high)
        bottom = _points(px[::-1], low[::-1])
        return f'<path class="area" fill="{colour}" d="M{top} L{bottom} Z"><title>{escape(name)}</title></path>'

    def line(
        self, x: np.ndarray, y: np.ndarray, colour: str, name: str, *, dashed: bool = False, y_top: float | None = None
    ) -> str:
        """A line, broken where `y` is NaN."""
        px, py = self.xs(x), self.ys(y, y_top)
        finite = np.isfinite(py)
        runs = []
        for segment in np.split(np.arange(px.size), np.flatnonzero(np.diff(finite.astype(np.int8))) + 1):
            if segment.size and finite[segment[0]]:
                runs.append("M" + _points(px[segment], py[segment]))
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        return (
            f'<path class="line" fill="none" stroke="{colour}" stroke-width="1.6"{dash} d="{" ".join(runs)}">'
            f"<title>{escape(name)}</title></path>"
        )

    def band(self, start: float, end: float, colour: str, label: str, title: str, *, show_label: bool) -> str:
        """A shaded vertical band (a phase or incident), labelled at its top when wide enough."""
        a, b = self.x(max(start, self.x0)), self.x(min(end, self.x1))
        if b < a:
            return ""
        text = (
            f'<text class="band-label" x="{a + 2:.1f}" y="{self.top - 4}">{escape(label)}</text>' if show_label else ""
        )
        return (
            f'<g class="band"><rect x="{a:.1f}" y="{self.top}" width="{max(b - a, 1.0):.1f}" '
            f'height="{self.inner_height:.1f}" fill="{colour}"><title>{escape(title)}</title></rect>'
            f'<line class="band-edge" x1="{a:.1f}" x2="{a:.1f}" y1="{self.top}" y2="{self.base}"/>{text}</g>'
        )

    # --- axes ------------------------------------------------------------------------------------------------------

    def y_axis(self, ticks: Sequence[float], title: str, *, right: bool = False, y_top: float | None = None) -> str:
        x = self.width - self.right if right else self.left
        anchor, dx = ("start", 6) if right else ("end", -6)
        parts = [f'<line class="axis" x1="{x}" x2="{x}" y1="{self.top}" y2="{self.base}"/>']
        for tick in ticks:
            y = float(self.ys(np.array([tick]), y_top)[0])
            if not right:
                parts.append(
                    f'<line class="grid" x1="{self.left}" x2="{self.width - self.right}" y1="{y:.1f}" y2="{y:.1f}"/>'
                )
            parts.append(f'<text x="{x + dx}" y="{y + 4:.1f}" text-anchor="{anchor}">{number(tick)}</text>')
        mid = self.top + self.inner_height / 2
        tx = self.width - 8 if right else 14
        parts.append(
            f'<text class="axis-title" transform="translate({tx} {mid:.0f}) rotate({90 if right else -90})" '
            f'text-anchor="middle">{escape(title)}</text>'
        )
        return "".join(parts)

    def time_axis(self) -> str:
        parts = [
            f'<line class="axis" x1="{self.left}" x2="{self.width - self.right}" y1="{self.base}" y2="{self.base}"/>'
        ]
        for at, label in time_ticks(self.x0, self.x1):
            x = self.x(at)
            parts.append(f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{self.base}" y2="{self.base + 4}"/>')
            # Labels at the ends hang inwards, so the first and last stay inside the picture.
            anchor = "end" if x > self.width - 50 else "start" if x < 50 else "middle"
            parts.append(f'<text x="{x:.1f}" y="{self.base + 17}" text-anchor="{anchor}">{escape(label)}</text>')
        parts.append(f'<text class="axis-title" x="{self.left + self.inner_width / 2:.0f}" y="{self.base + 33}" '
                     'text-anchor="middle">time (UTC)</text>')  # fmt: skip
        return "".join(parts)


def _points(x: np.ndarray, y: np.ndarray) -> str:
    return " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x.tolist(), y.tolist(), strict=True))


def legend(entries: Sequence[tuple[str, str, str]], x: float, y: float, width: float) -> str:
    """A row (wrapping) of swatches: (name, colour, "area" | "line" | "dash")."""
    parts, cx, cy = [], x, y
    for name, colour, kind in entries:
        size = 22 + 7 * len(name)
        if cx + size > x + width and cx > x:
            cx, cy = x, cy + 16
        if kind == "area":
            parts.append(f'<rect x="{cx:.0f}" y="{cy - 9:.0f}" width="12" height="10" fill="{colour}"/>')
        else:
            dash = ' stroke-dasharray="5 3"' if kind == "dash" else ""
            parts.append(
                f'<line x1="{cx:.0f}" x2="{cx + 14:.0f}" y1="{cy - 4:.0f}" y2="{cy - 4:.0f}" stroke="{colour}" '
                f'stroke-width="2"{dash}/>'
            )
        parts.append(f'<text x="{cx + 17:.0f}" y="{cy:.0f}">{escape(name)}</text>')
        cx += size
    return f'<g class="legend">{"".join(parts)}</g>'


def figure(
    chart_id: str, width: float, height: float, title: str, description: str, body: str, *, stretch: bool = True
) -> str:
    """The chart as a `<figure>`: an accessible `<svg>` (title and description) and a visible caption. A chart
    that `stretch`es fills the page's width; one that does not keeps its own size (at most the page's width)."""
    size = 'width="100%"' if stretch else f'width="{width:.0f}" height="{height:.0f}"'
    return (
        f'<figure class="chart" id="{chart_id}">'
        f'<svg viewBox="0 0 {width:.0f} {height:.0f}" {size} role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{chart_id}-title">{escape(title)}</title><desc id="{chart_id}-desc">{escape(description)}</desc>'
        f"{body}</svg><figcaption>{escape(title)}</figcaption></figure>"
    )
