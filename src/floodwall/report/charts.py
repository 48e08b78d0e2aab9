"""Plotly figures of the account's chart series, rendered as HTML fragments that use the page's one inlined copy
of plotly.js (nothing is fetched: no CDN, no MathJax, no map tiles)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import plotly.graph_objects as go
import polars as pl

from floodwall.report.account import Charts

__all__ = ["chart_fragments"]

_CONFIG: Final = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["sendDataToCloud"]}
_ATTACK: Final = "#c0392b"
_BENIGN: Final = "#7f8c8d"
_LAYOUT: Final[dict[str, Any]] = {
    "template": "plotly_white",
    "height": 360,
    "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
    "legend": {"orientation": "h", "y": -0.2},
    "font": {"family": "system-ui, sans-serif", "size": 12},
}


def _html(figure: go.Figure, div_id: str) -> str:
    return str(figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG))


def _shade(figure: go.Figure, charts: Charts) -> None:
    """Phases as shaded bands, set in one layout update (plotly's add_vrect copies the layout on every call)."""
    span = charts.bucket_s * max(1, charts.traffic.height)
    shapes: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    for part in charts.shading:
        colour = "rgba(192,57,43,0.10)" if part["kind"] == "phase" else "rgba(41,128,185,0.15)"
        shapes.append(
            {"type": "rect", "xref": "x", "yref": "paper", "x0": part["start"], "x1": part["end"], "y0": 0, "y1": 1,
             "fillcolor": colour, "line": {"width": 0}, "layer": "below"}
        )  # fmt: skip
        length = datetime.fromisoformat(part["end"]) - datetime.fromisoformat(part["start"])
        if length.total_seconds() > 0.04 * span:
            notes.append(
                {"x": part["start"], "y": 1, "xref": "x", "yref": "paper", "text": part["label"], "showarrow": False,
                 "xanchor": "left", "yanchor": "bottom", "font": {"size": 9}}
            )  # fmt: skip
    figure.update_layout(shapes=shapes, annotations=notes)


def _traffic(charts: Charts) -> go.Figure:
    frame = charts.traffic
    x = frame.get_column("bucket").to_list()
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=x,
            y=frame.get_column("benign_rps").to_list(),
            name="other traffic",
            stackgroup="rps",
            line={"color": _BENIGN, "width": 0.5},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=frame.get_column("attack_rps").to_list(),
            name="attack",
            stackgroup="rps",
            line={"color": _ATTACK, "width": 0.5},
        )
    )
    _shade(figure, charts)
    figure.update_layout(
        title=f"Requests per second (mean per {charts.bucket_s} s), attack and other traffic stacked; phases shaded",
        yaxis_title="requests / s",
        **_LAYOUT,
    )
    return figure


def _networks(charts: Charts) -> go.Figure:
    networks = charts.networks.sort("addresses")
    countries = charts.countries.head(15).sort("addresses")
    figure = go.Figure()
    figure.add_trace(
        go.Bar(
            x=networks.get_column("addresses").to_list(),
            y=networks.get_column("label").to_list(),
            orientation="h",
            name="addresses per network",
            marker_color=_ATTACK,
            xaxis="x",
            yaxis="y",
        )
    )
    figure.add_trace(
        go.Bar(
            x=countries.get_column("addresses").to_list(),
            y=[c or "unknown" for c in countries.get_column("country").to_list()],
            orientation="h",
            name="addresses per country",
            marker_color="#2c3e50",
            xaxis="x2",
            yaxis="y2",
        )
    )
    layout = dict(_LAYOUT) | {"height": max(360, 26 * max(networks.height, countries.height) + 120)}
    figure.update_layout(
        title="Attacking addresses per network (left) and per country (right)",
        xaxis={"domain": [0.0, 0.58], "title": "addresses"},
        yaxis={"automargin": True},
        xaxis2={"domain": [0.75, 1.0], "title": "addresses"},
        yaxis2={"anchor": "x2", "automargin": True},
        **layout,
    )
    return figure


def _vectors(charts: Charts) -> go.Figure:
    figure = go.Figure()
    for (vector,), part in charts.vectors.group_by("vector", maintain_order=True):
        figure.add_trace(
            go.Scatter(
                x=part.get_column("bucket").to_list(),
                y=part.get_column("rps").to_list(),
                name=str(vector),
                stackgroup="v",
                mode="lines",
            )
        )
    figure.update_layout(title="Attack requests per second by vector", yaxis_title="requests / s", **_LAYOUT)
    return figure


def _status(charts: Charts) -> go.Figure:
    frame = charts.status
    x = frame.get_column("bucket").to_list()
    figure = go.Figure()
    names = {"s2xx": "2xx", "s3xx": "3xx", "s4xx": "4xx", "s5xx": "5xx", "s499": "499 (client gave up)"}
    for column, name in names.items():
        figure.add_trace(go.Scatter(x=x, y=frame.get_column(column).to_list(), name=name, mode="lines"))
    if int(frame.select(pl.col("cache_hit").sum() + pl.col("cache_miss").sum()).item() or 0) > 0:
        for column, name in {"cache_hit": "cache hit", "cache_miss": "cache miss"}.items():
            figure.add_trace(
                go.Scatter(x=x, y=frame.get_column(column).to_list(), name=name, mode="lines", line={"dash": "dot"})
            )
    if frame.get_column("rt_mean").drop_nulls().len() > 0:
        figure.add_trace(
            go.Scatter(
                x=x,
                y=frame.get_column("rt_mean").to_list(),
                name="mean request time (s)",
                yaxis="y2",
                mode="lines",
                line={"color": "#8e44ad"},
            )
        )
        figure.update_layout(yaxis2={"overlaying": "y", "side": "right", "title": "seconds"})
    _shade(figure, charts)
    figure.update_layout(
        title="Answers per second by status class, and the cache", yaxis_title="answers / s", **_LAYOUT
    )
    return figure


def chart_fragments(charts: Charts) -> dict[str, str]:
    """chart name -> HTML fragment (a div and the script that draws it); "" for a chart with nothing to draw."""
    return {
        "traffic": _html(_traffic(charts), "chart-traffic"),
        "status": _html(_status(charts), "chart-status"),
        "vectors": _html(_vectors(charts), "chart-vectors") if charts.vectors.height else "",
        "networks": _html(_networks(charts), "chart-networks") if charts.networks.height else "",
    }
