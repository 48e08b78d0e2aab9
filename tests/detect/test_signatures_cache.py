"""The compiled signature databases kept on disk: written once, loaded on the next start, rebuilt when unusable."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import pytest

from floodwall.detect.signatures import SignatureEngine
from floodwall.detect.signatures.ruleset import load_ruleset

ATTACKS = pl.DataFrame(
    {
        "method": ["GET", "GET", "GET", "GET"],
        "path": ["/a", "/search", "/x.php", "/"],
        "query": ["id=1%27%20or%20%271%27=%271", "q=%3Cscript%3Ealert(1)%3C/script%3E", "f=;cat /etc/passwd", None],
        "user_agent": ["Mozilla/5.0", "Mozilla/5.0", "Mozilla/5.0", "sqlmap/1.7"],
    }
)


@pytest.fixture(scope="module")
def ruleset():  # type: ignore[no-untyped-def]
    return load_ruleset(paranoia=1)


def test_second_engine_loads_the_cache_and_finds_the_same_hits(ruleset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = SignatureEngine(ruleset, 1, tmp_path)
    (cache_file,) = tmp_path.glob("signatures-*.hsdb")
    second = SignatureEngine(ruleset, 1, tmp_path)
    assert (first.compile_report.cached, second.compile_report.cached) == (False, True)
    assert second.compile_report.prefiltered == first.compile_report.prefiltered
    assert first.match(ATTACKS).equals(second.match(ATTACKS))
    assert second.match(ATTACKS).get_column("row").unique().sort().to_list() == [0, 1, 2, 3]
    assert list(tmp_path.glob(".tmp-*")) == []  # written atomically, nothing left behind
    assert cache_file.stat().st_size > 100_000


def test_a_damaged_cache_file_is_reported_and_rebuilt(ruleset, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    expected = SignatureEngine(ruleset, 1, tmp_path).match(ATTACKS)
    (cache_file,) = tmp_path.glob("signatures-*.hsdb")
    cache_file.write_bytes(cache_file.read_bytes()[:5000])
    with caplog.at_level(logging.WARNING):
        rebuilt = SignatureEngine(ruleset, 1, tmp_path)
    assert not rebuilt.compile_report.cached
    assert "unusable" in caplog.text
    assert rebuilt.match(ATTACKS).equals(expected)
    assert SignatureEngine(ruleset, 1, tmp_path).compile_report.cached  # and written again


def test_another_rule_set_gets_its_own_cache_file(ruleset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    SignatureEngine(ruleset, 1, tmp_path)
    SignatureEngine(load_ruleset(paranoia=1, own_rules=False), 1, tmp_path)
    assert len(list(tmp_path.glob("signatures-*.hsdb"))) == 2


def test_no_cache_dir_compiles_in_memory(ruleset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    engine = SignatureEngine(ruleset, 1, None)
    assert not engine.compile_report.cached
    assert engine.match(ATTACKS).height > 0
