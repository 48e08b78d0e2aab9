"""The C scanner of paths and queries (`floodwall.detect._tokenscan`) gives what the regular expressions give.

Detection reads a request's kind, path template, query keys, cache-busting flag and the breach filter's "plain"
flags from it: any difference would change which clients look like a flood or which requests the signatures see.
The reference is `windows._path_tokens_reference` / `_query_tokens_reference` (Polars' regular expressions).
"""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floodwall.detect import windows
from floodwall.testing import requests_frame

pytestmark = pytest.mark.skipif(windows._tokenscan is None, reason="the C token scanner is not built")

# Pieces the expressions look for (extensions, folders, slugs, words, digits, suspect names), and characters that
# change their meaning (separators, case, non-ASCII, control characters).
_PATH_PIECES = [
    "/", "/", "/", "-", ".", "~", "a", "b", "z", "0", "7", "2024", "Ab", "X", "_", "+", ",", "%2e", " ", "\t",
    "é", "İ", "\u212a", "feed", "feed/", "rss", "atom", ".xml", ".rss", "wp-content/", "wp-includes/", "static/",
    "_next/", "img/", "js/", "api", "wp-json", "graphql", "ajax", "wp-admin/admin-ajax.php", ".js", ".css", ".jpg",
    ".jpeg", ".html", ".htm", ".mp4", ".map", ".json", ".woff2", ".php", ".php5", ".PHP", ".env", ".git", ".bak~",
    ".config", ".conf", ".7z", "admin", "Login", "xmlrpc", "wp-config", "wp-cron", ".well-known", "/.", "etc/",
    "proc/", "win.ini", "owa", "solr", "backup", "server-status", "politics", "economics", "abcdefg", "abcdef",
    "some-long-story", "a-b", "a-b-c", "x1-y2-z3", "{slug}", "*",
]  # fmt: skip
_QUERY_PIECES = [
    "=", "&", "&", "a", "Z", "k", "_", "-", "0", "9", "12345678", "1699999999123", "v", "ver", "utm_source", "page",
    "abc123", "x9y", "1a", "a1b2c3d4", ".", "~", "%20", " ", "é", "ő", "\u00e9" * 3, "k" * 41, "é" * 41, "+", ",",
]  # fmt: skip


def _texts(pieces: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(pieces), max_size=12).map("".join)


def _values(pieces: list[str], alphabet: str) -> st.SearchStrategy[list[str | None]]:
    """Lists of pieces joined, short texts of a few characters that matter, any text, and nulls."""
    one = st.one_of(_texts(pieces), st.text(alphabet=alphabet, max_size=14), st.text(max_size=30), st.none())
    return st.lists(one, min_size=1, max_size=60)


def _same(fast: pl.DataFrame, reference: pl.DataFrame) -> None:
    assert fast.columns == reference.columns
    for name in fast.columns:
        differ = fast.get_column(name).ne_missing(reference.get_column(name))
        assert not differ.any(), (name, fast.filter(differ).head(3), reference.filter(differ).head(3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values(_PATH_PIECES, "/-.~aZ09"))
def test_paths_get_the_reference_kind_template_and_plain_flag(paths):
    frame = pl.DataFrame({"path": paths}, schema={"path": pl.String})
    _same(windows._path_tokens(frame), windows._path_tokens_reference(frame))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values(_QUERY_PIECES, "=&a1_-."))
def test_queries_get_the_reference_cache_bust_keys_and_plain_flag(queries):
    frame = pl.DataFrame({"query": queries}, schema={"query": pl.String})
    _same(windows._query_tokens(frame), windows._query_tokens_reference(frame))


def test_known_paths_and_queries():
    frame = requests_frame(
        [
            {"path": "/2024/11/04/a-story-about-things/", "query": "utm_source=x&page=2&utm_source=y"},
            {"path": "/wp-content/uploads/Photo.JPG", "query": "ver=5a9f2c1e"},
            {"path": "/politics/economics/culture", "query": "_=1699999999123"},
            {"path": "/Ünnep/hírek/", "query": "q=árvíztűrő"},
            {"path": "/wp-login.php", "query": "a=1&b=2"},
        ]
    )
    toks, plain = windows.request_tokens(frame)
    assert toks.get_column("kind").to_list() == ["page", "asset", "page", "page", "page"]
    assert toks.get_column("template").to_list() == [
        "/0/0/0/{slug}/",
        "/wp-content/{word}/*.jpg",
        "/{word}/economics/{word}/",
        "/ünnep/hírek/",
        "/wp-login.php",
    ]
    assert toks.get_column("query_keys").to_list() == ["page,utm_source", "ver", "_", "q", "a,b"]
    assert toks.get_column("cache_bust").to_list() == [False, True, True, False, False]
    assert plain.to_list() == [True, True, True, False, False]


def test_a_series_in_several_chunks_is_read_whole():
    paths = pl.concat([pl.Series("path", ["/a/b.css", None]), pl.Series("path", ["/feed/", "/x-y-z"])], rechunk=False)
    assert paths.n_chunks() == 2
    frame = pl.DataFrame({"path": paths})
    got = windows._path_tokens(frame)
    assert got.get_column("kind").to_list() == ["asset", "page", "feed", "page"]
    _same(got, windows._path_tokens_reference(frame))


# Every alternative of breach._SUSPECT_PATH, inside an otherwise plain path: each must make it not plain.
_SUSPECT = [
    "admin", "login", "xmlrpc", "wp-admin", "wp-login", "wp-config", "wp-json", "wp-cron", "wp-includes/x.php", "cgi",
    "phpmyadmin", ".well-known", "actuator", "server-status", "console", "shell", "setup", "install", "/.", "debug",
    "passwd", "etc/", "proc/", "boot", "win.ini", "vendor", "backup", "dump", "owa", "autodiscover", "solr", "jenkins",
    "manager", "x~",
]  # fmt: skip
_EXTENSIONS = [
    "php", "php5", "asp", "aspx", "jsp", "cgi", "pl", "py", "sh", "env", "git", "svn", "htaccess", "htpasswd", "ini",
    "conf", "config", "cfg", "sql", "bak", "old", "orig", "swp", "log", "yml", "yaml", "zip", "tar", "gz", "rar", "7z",
    "pem", "key", "db", "sqlite", "mdb", "inc", "dist", "save", "tmp",
]  # fmt: skip


def test_every_suspect_name_and_extension_makes_a_path_not_plain():
    paths = [f"/news/{word}" for word in _SUSPECT] + [f"/{word.upper()}/x" for word in _SUSPECT]
    paths += [f"/f.{ext}{end}" for ext in _EXTENSIONS for end in ("", "/", "~", "x", ".x")]
    frame = pl.DataFrame({"path": paths})
    got = windows._path_tokens(frame)
    _same(got, windows._path_tokens_reference(frame))
    assert not got.filter(pl.col("path").str.starts_with("/news/")).get_column("plain_path").any()


def test_cache_busting_values_at_their_shortest():
    queries = ["v=1abcd", "v=1abc", "a1bcd", "v=ab1cd", "v=12345678", "v=1234567", "v=1abcd.", "1abcd&x=", "=&a1bcd"]
    frame = pl.DataFrame({"query": queries})
    got = windows._query_tokens(frame)
    _same(got, windows._query_tokens_reference(frame))
    assert got.get_column("cache_bust").to_list() == [True, False, True, False, True, False, False, True, True]
