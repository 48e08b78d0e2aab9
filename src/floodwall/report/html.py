"""report.html: one self-contained page (charts as inline SVG, styles inline, no script, no request to anywhere)
and report.md, the same account in Markdown. Both come from Jinja2 templates in `floodwall/report/templates/`."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from floodwall.report.account import Account
from floodwall.report.atomic import write_atomic
from floodwall.report.charts import chart_fragments

__all__ = ["render_html", "render_markdown", "write_html", "write_markdown"]


@cache
def _environment(markdown: bool) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("floodwall.report", "templates"),
        autoescape=not markdown,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["num"] = _num
    environment.filters["pct"] = _pct
    environment.filters["md"] = _md_cell
    return environment


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    if isinstance(value, (int, float)):
        return f"{value:,.0f}" if not isinstance(value, float) or value >= 10 or value == int(value) else f"{value:.2g}"
    return str(value)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{float(value):.1%}"


def _md_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell or inline code."""
    text = "–" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _context(account: Account) -> dict[str, Any]:
    return {"a": account, "d": account.to_dict()}


def render_html(account: Account) -> str:
    """The page, as text."""
    template = _environment(False).get_template("report.html.j2")
    return template.render(
        **_context(account),
        charts=chart_fragments(account.charts),
    )


def render_markdown(account: Account) -> str:
    """The Markdown account, as text."""
    return _environment(True).get_template("report.md.j2").render(**_context(account))


def write_html(target: Path, account: Account) -> None:
    """Write report.html (or its public twin) atomically."""
    write_atomic(target, render_html(account))


def write_markdown(target: Path, account: Account) -> None:
    """Write report.md (or its public twin) atomically."""
    write_atomic(target, render_markdown(account))
