"""campaigns.html: one self-contained page (Plotly inlined, nothing fetched) showing what campaigns.json says.

Incidents by site and time, coloured by campaign, with the links drawn between them; the pairwise score matrix
(up to `_MATRIX_MAX` incidents); per campaign its infrastructure; and per link the evidence that made it.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Final

import numpy as np
import plotly.graph_objects as go
from jinja2 import Environment, select_autoescape
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from floodwall.correlate.campaigns import CampaignGroup
from floodwall.correlate.evidence import Pairwise
from floodwall.forensics.bundle import BundleIncident

__all__ = ["campaigns_html"]

_MATRIX_MAX: Final = 200
_PALETTE: Final = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def _timeline(incidents: list[BundleIncident], groups: list[CampaignGroup], p: Pairwise) -> str:
    figure = go.Figure()
    sites = sorted({i.site for i in incidents})
    for k, group in enumerate(groups):
        xs: list[Any] = []
        ys: list[Any] = []
        texts: list[Any] = []
        for i in group.members:
            inc = incidents[i]
            label = f"{inc.id} ({inc.kind}, {', '.join(inc.vectors)}) - {group.id}"
            xs += [inc.start, inc.end, None]
            ys += [inc.site, inc.site, None]
            texts += [label, label, None]
        colour = _PALETTE[k % len(_PALETTE)] if len(group.members) > 1 else "#999999"
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                text=texts,
                mode="lines+markers",
                name=group.id,
                hoverinfo="text",
                line={"width": 10, "color": colour},
                showlegend=len(group.members) > 1,
            )
        )
    lx: list[Any] = []
    ly: list[Any] = []
    # The links that hold each campaign together (a dense campaign's every pair would be thousands of lines).
    for i, j in (edge for group in groups for edge in group.tree):
        for n in (i, j):
            inc = incidents[n]
            lx.append(inc.start + (inc.end - inc.start) / 2)
            ly.append(inc.site)
        lx.append(None)
        ly.append(None)
    if lx:
        figure.add_trace(
            go.Scatter(
                x=lx,
                y=ly,
                mode="lines",
                name="links",
                hoverinfo="skip",
                line={"width": 1, "color": "rgba(0,0,0,0.35)", "dash": "dot"},
            )
        )
    figure.update_layout(
        height=max(250, 60 * len(sites) + 120),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        yaxis={"categoryorder": "array", "categoryarray": sites},
        xaxis={"title": "UTC"},
    )
    html: str = figure.to_html(full_html=False, include_plotlyjs=False)
    return html


def _matrix(incidents: list[BundleIncident], groups: list[CampaignGroup], p: Pairwise) -> str:
    order = [i for g in groups for i in g.members]
    if len(order) > _MATRIX_MAX or len(order) < 2:
        return ""
    labels = [incidents[i].id for i in order]
    scores = p.score[np.ix_(order, order)].copy()
    np.fill_diagonal(scores, np.nan)
    figure = go.Figure(
        go.Heatmap(
            z=scores,
            x=labels,
            y=labels,
            zmin=0,
            zmax=1,
            colorscale="Blues",
            hovertemplate="%{y}<br>%{x}<br>score %{z:.2f}<extra></extra>",
        )
    )
    size = min(900, 200 + 18 * len(order))
    figure.update_layout(height=size, margin={"l": 10, "r": 10, "t": 10, "b": 10}, yaxis={"autorange": "reversed"})
    html: str = figure.to_html(full_html=False, include_plotlyjs=False)
    return html


def campaigns_html(
    document: dict[str, Any], incidents: list[BundleIncident], p: Pairwise, groups: list[CampaignGroup]
) -> str:
    """The page for campaigns.json's `document`."""
    environment = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    source = resources.files("floodwall.correlate").joinpath("campaigns.html.j2").read_text(encoding="utf-8")
    template = environment.from_string(source)
    return template.render(
        doc=document,
        incidents=len(incidents),
        sites=len({i.site for i in incidents}),
        plotly_js=Markup(get_plotlyjs()),
        timeline=Markup(_timeline(incidents, groups, p)),
        matrix=Markup(_matrix(incidents, groups, p)),
    )
