"""The real Apache sample (Elastic's examples): ordinary traffic, and the account says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from floodwall.analyze import analyze

SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "elastic-apache-sample" / "apache_logs"


@pytest.fixture(scope="module")
def sample_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SAMPLE.is_file():
        pytest.skip(f"the real sample log is absent ({SAMPLE})")
    out = tmp_path_factory.mktemp("apache")
    analyze([SAMPLE], site="apache-sample", out_dir=out, public=True)
    return out


def test_quiet_traffic_is_reported_as_quiet(sample_out: Path) -> None:
    for name in ("report.md", "report.public.md"):
        summary = (sample_out / name).read_text().split("## Summary")[1].split("## Timeline")[0]
        assert "No flood was found" in summary or "No attack was found" in summary
        assert "A flood (" not in summary
    html = (sample_out / "report.html").read_text()
    assert 'id="chart-traffic"' in html


def test_ordinary_pages_answered_2xx_are_not_called_a_breach(sample_out: Path) -> None:
    markdown = (sample_out / "report.md").read_text()
    section = markdown.split("## Breach attempts")[1].split("## Evidence")[0]
    assert "POSSIBLE SUCCESS" not in section
