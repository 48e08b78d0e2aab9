"""campaigns.html: one self-contained page (charts as inline SVG, no script, nothing fetched) showing what
campaigns.json says.

Incidents by site and time, coloured by campaign, with the links drawn between them; the pairwise score matrix
(up to `_MATRIX_MAX` incidents); per campaign its infrastructure; and per link the evidence that made it. The
charts use the report's SVG kit (`floodwall.report.svg`): plotly.js added 4.8 MB of script to every page.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from importlib import resources
from typing import Any, Final

import numpy as np
from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from floodwall.correlate.campaigns import CampaignGroup
from floodwall.correlate.evidence import Pairwise
from floodwall.forensics.bundle import BundleIncident
from floodwall.report.svg import Plot, figure, legend

__all__ = ["campaigns_html"]

_MATRIX_MAX: Final = 200
_MATRIX_LABELS: Final = 60  # past this many incidents the matrix has no axis labels (they would overlap)
_PALETTE: Final = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_LEGEND_MAX: Final = 18
_WIDTH: Final = 1150


def _seconds(moment: datetime) -> float:
    return moment.timestamp()


def _timeline(incidents: list[BundleIncident], groups: list[CampaignGroup], p: Pairwise) -> str:
    sites = sorted({i.site for i in incidents})
    if not incidents:
        return ""
    start = min(_seconds(i.start) for i in incidents)
    end = max(_seconds(i.end) for i in incidents)
    pad = max((end - start) * 0.02, 60.0)
    label_w = min(260, 12 + 7 * max(len(site) for site in sites))
    row = 34
    height = 30 + row * len(sites) + 70
    plot = Plot(_WIDTH, height, start - pad, end + pad, 1.0, left=label_w, right=20, top=20, bottom=70)
    y_of = {site: plot.top + row * (k + 0.5) for k, site in enumerate(sites)}
    marks = [
        f'<text x="{label_w - 8}" y="{y + 4:.0f}" text-anchor="end">{escape(site)}</text>'
        f'<line class="grid" x1="{label_w}" x2="{_WIDTH - 20}" y1="{y:.0f}" y2="{y:.0f}"/>'
        for site, y in y_of.items()
    ]
    entries: list[tuple[str, str, str]] = []
    for k, group in enumerate(groups):
        several = len(group.members) > 1
        colour = _PALETTE[k % len(_PALETTE)] if several else "#999999"
        if several and len(entries) < _LEGEND_MAX:
            entries.append((group.id, colour, "line"))
        for i in group.members:
            inc = incidents[i]
            a, b = plot.x(_seconds(inc.start)), plot.x(_seconds(inc.end))
            when = f"{inc.start:%Y-%m-%d %H:%M} to {inc.end:%Y-%m-%d %H:%M} UTC"
            title = f"{inc.id} ({inc.kind}, {', '.join(inc.vectors)}) - {group.id}: {when}"
            marks.append(
                f'<rect x="{a:.1f}" y="{y_of[inc.site] - 7:.0f}" width="{max(b - a, 3.0):.1f}" height="14" rx="2" '
                f'fill="{colour}"><title>{escape(title)}</title></rect>'
            )
    # The links that hold each campaign together (a dense campaign's every pair would be thousands of lines).
    for i, j in (edge for group in groups for edge in group.tree):
        ends = []
        for n in (i, j):
            inc = incidents[n]
            ends.append((plot.x((_seconds(inc.start) + _seconds(inc.end)) / 2), y_of[inc.site]))
        (x1, y1), (x2, y2) = ends
        marks.append(
            f'<line x1="{x1:.1f}" y1="{y1:.0f}" x2="{x2:.1f}" y2="{y2:.0f}" stroke="rgba(0,0,0,0.4)" '
            f'stroke-width="1" stroke-dasharray="3 3"><title>link score {p.score[i, j]:.2f}</title></line>'
        )
    marks.append(plot.time_axis())
    if entries:
        marks.append(legend(entries, label_w, height - 8, _WIDTH - label_w - 20))
    linked = sum(len(g.members) > 1 for g in groups)
    description = (
        f"{len(incidents)} incidents on {len(sites)} sites over time; {linked} campaigns of several incidents are "
        "coloured, single incidents are grey, and dotted lines join the incidents a campaign's links tie together."
    )
    return figure("chart-campaign-timeline", _WIDTH, height, "Incidents by site and time", description, "".join(marks))


def _matrix(incidents: list[BundleIncident], groups: list[CampaignGroup], p: Pairwise) -> str:
    order = [i for g in groups for i in g.members]
    n = len(order)
    if n > _MATRIX_MAX or n < 2:
        return ""
    labels = [incidents[i].id for i in order]
    scores = p.score[np.ix_(order, order)]
    labelled = n <= _MATRIX_LABELS
    margin = min(300, 14 + 6 * max(len(label) for label in labels)) if labelled else 20
    cell = max(3.0, min(22.0, 640 / n))
    size = margin + cell * n + 20
    marks = []
    for r in range(n):
        for c in range(n):
            score = float(scores[r, c])
            if r == c or not np.isfinite(score) or score < 0.02:  # near-zero cells stay white: a lighter page
                continue
            tip = f"<title>{escape(labels[r])} / {escape(labels[c])}: score {score:.2f}</title>" if labelled else ""
            marks.append(
                f'<rect x="{margin + c * cell:.1f}" y="{margin + r * cell:.1f}" width="{cell:.1f}" height="{cell:.1f}" '
                f'fill-opacity="{min(score, 1.0):.2f}">{tip}</rect>'
            )
    axis = []
    if labelled:
        for k, label in enumerate(labels):
            at = margin + (k + 0.5) * cell
            axis.append(f'<text x="{margin - 4}" y="{at + 3:.1f}" text-anchor="end">{escape(label)}</text>')
            axis.append(f'<text transform="translate({at + 3:.1f} {margin - 4}) rotate(-90)">{escape(label)}</text>')
    frame = (
        f'<rect x="{margin}" y="{margin}" width="{cell * n:.1f}" height="{cell * n:.1f}" fill="none" stroke="#999"/>'
    )
    body = f'<g fill="#1f4e79">{"".join(marks)}</g>{frame}{"".join(axis)}'
    description = (
        f"Pairwise link scores between {n} incidents, ordered by campaign; darker is a higher score (0 to 1). "
        "A campaign shows as a dark block on the diagonal."
    )
    title = "Link scores between incidents"
    return figure("chart-campaign-matrix", size, size, title, description, body, stretch=False)


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
        timeline=Markup(_timeline(incidents, groups, p)),
        matrix=Markup(_matrix(incidents, groups, p)),
    )
