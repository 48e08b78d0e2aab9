"""report.html: one self-contained page (charts as inline SVG, styles inline, no script, no request to anywhere)
and report.md, the same account in Markdown. Both come from Jinja2 templates in `floodwall/report/templates/`."""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from floodwall.report.account import Account
from floodwall.report.atomic import write_atomic
from floodwall.report.charts import chart_fragments

__all__ = ["preload_templates", "render_html", "render_markdown", "write_html", "write_markdown"]

_TEMPLATES = ((False, "report.html.j2"), (True, "report.md.j2"))
_preloads: list[threading.Thread] = []  # the one preload thread, once started
_environment_lock = threading.Lock()


def preload_templates() -> None:
    """Compile the templates on a thread of their own, once per process (`analyze` starts this as its forensic pass
    begins): compiling them is 0.2 s of Python on every run, which otherwise came last, after the forensic pass,
    with nothing beside it. A failed compile is left to the writer, which compiles again and raises."""
    if not _preloads:
        thread = threading.Thread(target=_compile_templates, name="floodwall-templates", daemon=True)
        _preloads.append(thread)
        thread.start()


def _compile_templates() -> None:
    for markdown, name in _TEMPLATES:
        _template(markdown, name, wait=False)


def _template(markdown: bool, name: str, *, wait: bool = True) -> jinja2.Template:
    """A template, compiled once per process; waits for a preload under way (one compile, not two)."""
    if wait:
        for thread in _preloads:
            thread.join()
    with _environment_lock:
        environment = _environment(markdown)
    return environment.get_template(name)


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
    template = _template(False, "report.html.j2")
    return template.render(
        **_context(account),
        charts=chart_fragments(account.charts),
    )


def render_markdown(account: Account) -> str:
    """The Markdown account, as text."""
    return _template(True, "report.md.j2").render(**_context(account))


def write_html(target: Path, account: Account) -> None:
    """Write report.html (or its public twin) atomically."""
    write_atomic(target, render_html(account))


def write_markdown(target: Path, account: Account) -> None:
    """Write report.md (or its public twin) atomically."""
    write_atomic(target, render_markdown(account))
