"""The C fast path of the CLF family (`floodwall.logs._clfscan`) against the reference, `clf.parse_line`.

The contract: every line the scanner accepts has exactly the values `parse_line` gives it (the extra fields are
handed on raw and applied by `clf.apply_extras`, as `parse_line` does); every line it rejects comes back as its
text for the strict path. Rejecting is always allowed, but not for ordinary lines.
"""

from __future__ import annotations

import codecs
import gc
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floodwall.logs import clf
from floodwall.logs.frame import client_networks, finish_frame

clfscan = pytest.importorskip("floodwall.logs._clfscan", reason="the C fast path was not built (no compiler)")

FORMATS = ("combined", "common", "vhost_combined")
COLUMNS = [
    "line",
    "ok",
    "ts",
    "client",
    "method",
    "path",
    "query",
    "protocol",
    "referer",
    "user_agent",
    "vhost",
    "extras",
    "client_net",
    "raw",
    "status",
    "bytes",
]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GOLDEN = Path(__file__).parent.parent / "data" / "logs"
ELASTIC = Path(__file__).parents[2].parent / "shared" / "data" / "elastic-apache-sample" / "apache_logs"


def scan_rows(buf: bytes, fmt: str, first_line: int = 1) -> list[dict[str, Any]]:
    frame = pl.DataFrame(clfscan.scan(buf, FORMATS.index(fmt), first_line))
    assert frame.columns == COLUMNS
    return frame.to_dicts()


def split_lines(buf: bytes) -> list[bytes]:
    """The scanner's idea of lines: split on \\n, no extra line after a final \\n, one \\r stripped per line."""
    lines = buf.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line.removesuffix(b"\r") for line in lines]


def assert_agrees(line: bytes, row: dict[str, Any], fmt: str) -> None:
    """The row the scanner gave `line` is the reference's parse, or a rejection carrying the line's text."""
    if not row["ok"]:
        assert row["raw"] == line.decode("utf-8", "replace")
        assert all(row[name] is None for name in COLUMNS[2:] if name != "raw"), row
        return
    text = line.decode("utf-8")  # accepted lines are valid UTF-8
    expected = clf.parse_line(text, fmt)
    assert expected is not None, f"scanner accepted a line parse_line rejects: {text!r}"
    assert row["raw"] is None
    # The extra fields' raw text is exactly the regex's last group, null when empty.
    assert row["extras"] == (clf.match_format(text, fmt) or None)
    got = clf.ParsedLine(
        ts=EPOCH + timedelta(microseconds=row["ts"]),
        client=row["client"],
        method=row["method"],
        path=row["path"],
        query=row["query"],
        protocol=row["protocol"],
        status=row["status"],
        bytes=row["bytes"],
        referer=row["referer"],
        user_agent=row["user_agent"],
        host=row["vhost"],
    )
    if fmt != "vhost_combined":
        assert row["vhost"] is None
    if row["extras"] is not None and row["extras"].strip():
        clf.apply_extras(got, row["extras"], clf.NO_EXTRAS)
    assert got == expected, f"{text!r}\n scanner:   {got}\n reference: {expected}"
    # The scanner's network, where it gives one, is the one `client_networks` gives (it leaves the rest to it).
    assert row["client_net"] in (None, client_networks(pl.Series([row["client"]], dtype=pl.String))[0])


def check_buffer(buf: bytes, fmt: str, first_line: int = 1) -> list[dict[str, Any]]:
    rows = scan_rows(buf, fmt, first_line)
    lines = split_lines(buf)
    assert [row["line"] for row in rows] == list(range(first_line, first_line + len(lines)))
    for line, row in zip(lines, rows, strict=True):
        assert_agrees(line, row, fmt)
    return rows


# ---- Strategies: lines assembled from parts, ordinary and odd --------------------------------------------------


def usually(ordinary: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly `ordinary`, one time in sixteen `odd`: lines must be accepted often for the agreement to be tested."""
    return st.integers(0, 15).flatmap(lambda n: odd if n == 0 else ordinary)


ASCII_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)

ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=8).map(
    lambda g: "2001:db8::" + ":".join(f"{x:x}" for x in g)
)
token = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=10)
client = usually(st.one_of(ipv4, ipv4, ipv6, st.just("-"), token), st.one_of(ANY_TEXT, st.just("")))
user = usually(st.one_of(st.just("-"), st.just("frank"), token), st.one_of(ANY_TEXT, st.just("")))

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@st.composite
def clf_time(draw: st.DrawFn) -> str:
    when = draw(st.datetimes(min_value=datetime(1969, 12, 30), max_value=datetime(2201, 1, 2)))
    sign = draw(st.sampled_from("+-"))
    off_h, off_m = draw(st.integers(0, 14)), draw(st.sampled_from([0, 0, 30, 45]))
    text = f"{when.day:02d}/{MONTHS[when.month - 1]}/{when.year:04d}:{when:%H:%M:%S} {sign}{off_h:02d}{off_m:02d}"
    odd = draw(st.integers(0, 24))
    if odd == 0:  # an impossible or malformed field, by position
        pos = draw(st.integers(0, len(text) - 1))
        text = text[:pos] + draw(st.sampled_from(["9", "0", "x", " ", "]", "/", ":", "é"])) + text[pos + 1 :]
    elif odd == 1:
        text = draw(
            st.sampled_from(["31/Feb/2023", "29/Feb/2023", "29/Feb/2024", "29/Feb/2100", "29/Feb/2000", "00/Jan/2000"])
        )
        text += draw(st.sampled_from([":00:00:00 +0000", ":24:00:00 +0000", ":23:59:60 +0000", ":12:00:00 +0099"]))
    elif odd == 2:
        text = draw(st.sampled_from(["01/jan/2020:00:00:00 +0000", "1/Jan/2020:00:00:00 +0000", "", "-"]))
    elif odd == 3:
        text = text.replace(" ", draw(st.sampled_from(["  ", "", " +", "\t"])), 1)
    return "[" + text + "]"


def quoted_body(alphabet: st.SearchStrategy[str], max_size: int = 40) -> st.SearchStrategy[str]:
    """Text that fits `"((?:[^"\\\\]|\\\\.)*)"` most of the time: plain characters and Apache/nginx escapes."""
    plain = alphabet.filter(lambda c: c not in '"\\')
    escape = st.sampled_from(['\\"', "\\\\", "\\x22", "\\x5C", "\\ ", "\\?", " ", "?", "-"])
    body = st.lists(st.one_of(plain, plain, plain, escape), max_size=max_size).map("".join)
    broken = st.tuples(body, st.sampled_from(['"', "\\"]), body).map("".join)  # an unescaped quote or backslash
    return usually(body, broken)


ascii_char = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
any_char = st.characters(codec="utf-8")
protocols = usually(
    st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/2.0", "HTTP/3"]),
    st.one_of(
        st.sampled_from(["HTTP/1.", "HTTP/11", "http/1.1", "HTTP/", "HTTP/1.1 "]),
        st.tuples(st.just("HTTP/"), ascii_char, ascii_char, ascii_char).map("".join),
    ),
)
methods = st.sampled_from(["GET", "POST", "HEAD", "PUT", "OPTIONS", "", "get", 'G\\"ET', "PRI"])


@st.composite
def request(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 15))
    if kind == 0:
        return draw(st.sampled_from(["", "-", " ", "  ", "GET", "GET /", "GET / ", " / HTTP/1.1", "GET  HTTP/1.1"]))
    if kind == 1:  # junk: a TLS handshake, a scanner's probe
        return draw(quoted_body(ascii_char))
    if kind == 2:  # an attacker's 8 KB request line
        return "GET /" + "A" * draw(st.integers(8000, 8200)) + "?q=" + "B" * 50 + " HTTP/1.1"
    path = "/" + draw(quoted_body(ascii_char, 20))
    if draw(st.booleans()):
        path += "?" + draw(quoted_body(ascii_char, 20))
    parts = [draw(methods), path]
    if kind != 3:
        parts.append(draw(protocols))
    if kind == 4:
        parts.insert(1, draw(token))  # a space inside the target
    if kind == 5:
        parts[1] = draw(quoted_body(any_char, 10))  # non-ASCII in the request
    return " ".join(parts)


status = usually(
    st.one_of(st.integers(100, 599).map(str), st.just("-")), st.sampled_from(["000", "99", "2000", "20x", "-1", ""])
)
size = usually(
    st.one_of(st.integers(0, 10**7).map(str), st.just("-")),
    st.one_of(
        st.sampled_from(["0", "007", "", "12x", "-5"]),
        st.integers(10**16, 10**20).map(str),  # around the 18-digit limit and past int64
    ),
)
referer = st.one_of(
    st.sampled_from(["-", "", "https://www.google.com/", 'https://example.org/a?b=1&c=\\"x\\"']),
    quoted_body(any_char),
)
user_agent = st.one_of(
    st.sampled_from(
        [
            "-",
            "",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/5",
            'Mozilla/5.0 \\"quoted\\" agent',
            "curl/8.5.0",
        ]
    ),
    quoted_body(any_char),
)
extras = st.one_of(
    st.just(""),
    st.sampled_from([" 0.123", ' "www.example.org"', " rt=0.052 urt=0.050 cs=HIT", " 0.004 0.003 MISS", " ", "x"]),
    st.sampled_from([' "203.0.113.9, 10.0.0.1"', " www.example.org:443", " host=News.Example.ORG", ' "-" "-"']),
    ASCII_TEXT.map(lambda s: " " + s),
    ANY_TEXT.map(lambda s: " " + s),
)
vhost = st.one_of(
    st.sampled_from(["www.example.org:443", "News.Example.ORG:80", "example.org", ":80", "[::1]:8080", "a:b:c"]),
    token,
)


@st.composite
def log_line(draw: st.DrawFn, log_format: str) -> bytes:
    """One line of the log's format, or now and then of another of the family; sometimes damaged."""
    fmt = draw(usually(st.just(log_format), st.sampled_from(FORMATS)))
    head = (
        f'{draw(client)} {draw(user)} {draw(user)} {draw(clf_time())} "{draw(request())}" {draw(status)} {draw(size)}'
    )
    if fmt == "common":
        text = head + draw(st.one_of(st.just(""), st.just(""), extras))
    else:
        text = head + f' "{draw(referer)}" "{draw(user_agent)}"' + draw(extras)
    if fmt == "vhost_combined":
        text = draw(vhost) + " " + text
    line = text.encode()
    damage = draw(st.integers(0, 15))
    if damage == 0 and line:  # truncated
        line = line[: draw(st.integers(0, len(line) - 1))]
    elif damage == 1:  # a stray byte: control, DEL, invalid UTF-8, a lone continuation, non-ASCII
        pos = draw(st.integers(0, len(line)))
        stray = draw(
            st.sampled_from([b"\x00", b"\t", b"\r", b"\x1b", b"\x7f", b"\xff", b"\xc3", b"\x80", "é".encode()])
        )
        line = line[:pos] + stray + line[pos:]
    elif damage == 2:
        line += b"\r"
    return line


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data(), st.sampled_from(FORMATS), st.integers(0, 10**12))
def test_accepted_lines_agree_with_parse_line(data: st.DataObject, fmt: str, first_line: int) -> None:
    lines = data.draw(st.lists(log_line(fmt), min_size=1, max_size=8))
    check_buffer(b"\n".join(lines), fmt, first_line)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60).filter(lambda b: b"\n" not in b))
def test_rejected_text_is_decoded_like_python(line: bytes) -> None:
    (row,) = scan_rows(line + b"\n", "combined")
    assert_agrees(line.removesuffix(b"\r"), row, "combined")


# ---- Ordinary lines: none may be rejected ----------------------------------------------------------------------


def nginx_combined_lines(count: int, seed: int = 7) -> list[str]:
    """Ordinary nginx `combined` lines with realistic variety: IPv4 and IPv6, queries, long user agents."""
    rng = random.Random(seed)
    agents = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
        "Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "curl/8.5.0",
        "python-requests/2.31.0",
        "-",
    ]
    paths = ["/", "/news/2024/05/13/election-results", "/static/app.3f9a.js", "/api/v1/articles", "/search", "/feed/"]
    lines = []
    for _ in range(count):
        if rng.random() < 0.85:
            address = ".".join(str(rng.randrange(256)) for _ in range(4))
        else:
            address = f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(65536):x}"
        path = rng.choice(paths)
        if rng.random() < 0.5:
            path += f"?q={rng.randrange(10**6)}&page={rng.randrange(50)}&utm_source=newsletter%20may"
        when = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(40 * 86400))
        stamp = f"{when:%d}/{MONTHS[when.month - 1]}/{when:%Y:%H:%M:%S} {rng.choice(['+0000', '+0200', '-0700'])}"
        referer = rng.choice(["-", "https://www.google.com/", f"https://news.example.org/a/{rng.randrange(999)}"])
        method = rng.choice(["GET", "GET", "GET", "POST", "HEAD"])
        code = rng.choice([200, 200, 200, 301, 304, 404, 499, 500])
        sent = rng.choice([str(rng.randrange(200000)), "0"])
        lines.append(
            f'{address} - {rng.choice(["-", "alice"])} [{stamp}] "{method} {path} HTTP/{rng.choice(["1.1", "2.0"])}" '
            f'{code} {sent} "{referer}" "{rng.choice(agents)}"'
        )
    return lines


def test_ordinary_nginx_lines_are_never_rejected() -> None:
    lines = nginx_combined_lines(20_000)
    rows = check_buffer(("\n".join(lines) + "\n").encode(), "combined")
    assert sum(not row["ok"] for row in rows) == 0


def test_real_apache_sample_agrees_and_is_read() -> None:
    if not ELASTIC.exists():
        pytest.skip(f"shared data not present: {ELASTIC}")
    rows = check_buffer(ELASTIC.read_bytes(), "combined")
    rejected = [row for row in rows if not row["ok"]]
    # The sample's few rejections are lines the strict path must read (non-ASCII outside the quoted strings).
    assert len(rejected) / len(rows) < 0.001, [row["raw"] for row in rejected[:5]]


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.log")), ids=lambda p: p.name)
def test_golden_samples_agree(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    fmt = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# format:"))
    if fmt not in FORMATS:
        pytest.skip(f"{path.name} is {fmt}, not of the CLF family")
    lines = [
        codecs.escape_decode(line[4:].encode())[0] if line.startswith("RAW ") else line.encode()
        for line in text.split("\n")[:-1]
        if not line.startswith("#")
    ]
    check_buffer(b"\n".join(lines), fmt)


# ---- Golden cases: values written out -------------------------------------------------------------------------


def test_golden_combined_line() -> None:
    line = (
        b'203.0.113.7 - alice [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?a=1&b= HTTP/1.0" 200 2326 '
        b'"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"'
    )
    (row,) = scan_rows(line, "combined", first_line=41)
    assert row == {
        "line": 41,
        "ok": True,
        "ts": int((datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC) - EPOCH).total_seconds()) * 1_000_000,
        "client": "203.0.113.7",
        "method": "GET",
        "path": "/apache_pb.gif",
        "query": "a=1&b=",
        "protocol": "HTTP/1.0",
        "referer": "http://www.example.com/start.html",
        "user_agent": "Mozilla/4.08 [en] (Win98; I ;Nav)",
        "vhost": None,
        "extras": None,
        "client_net": "203.0.113.0/24",
        "raw": None,
        "status": 200,
        "bytes": 2326,
    }


def test_golden_odd_but_readable_lines() -> None:
    lines = [
        # Apache's escapes are kept as logged; IPv6; "-" in both numeric fields; a trailing "?".
        b'2001:db8::1 - - [17/May/2015:10:05:03 +0000] "GET /index.php? HTTP/1.1" - - "-" "Mozilla/5.0 \\"q\\""',
        # Junk request: kept whole as the path, no method.
        b'198.51.100.4 - - [17/May/2015:10:05:03 +0000] "\\x16\\x03\\x01\\x02\\x00\\x01" 400 157 "-" "-"',
        # Extra fields after the user agent, handed on raw.
        b'198.51.100.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/2.0" 200 5 "-" "curl/8.5.0" 0.004 "HIT"',
        # Non-ASCII user agent.
        '198.51.100.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 5 "-" "Navigateur/1.0 (été)"'.encode(),
    ]
    rows = check_buffer(b"\n".join(lines), "combined")
    assert [row["ok"] for row in rows] == [True] * 4
    assert (rows[0]["path"], rows[0]["query"], rows[0]["status"], rows[0]["bytes"]) == ("/index.php", "", None, None)
    assert rows[0]["user_agent"] == 'Mozilla/5.0 \\"q\\"'
    assert (rows[1]["method"], rows[1]["path"]) == (None, "\\x16\\x03\\x01\\x02\\x00\\x01")
    assert (rows[1]["referer"], rows[1]["user_agent"]) == (None, None)
    assert rows[2]["extras"] == ' 0.004 "HIT"'
    assert rows[3]["user_agent"] == "Navigateur/1.0 (été)"


def test_golden_vhost_and_common_lines() -> None:
    vhost_line = b'News.Example.ORG:443 192.0.2.1 - - [01/Jan/2024:00:00:00 +0100] "GET / HTTP/1.1" 200 9 "-" "x"'
    (row,) = check_buffer(vhost_line, "vhost_combined")
    assert (row["ok"], row["vhost"], row["client"]) == (True, "news.example.org", "192.0.2.1")
    assert row["ts"] == int((datetime(2023, 12, 31, 23, tzinfo=UTC) - EPOCH).total_seconds()) * 1_000_000
    common = b'192.0.2.1 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 9'
    combined_in_common_log = common + b' "-" "curl/8.5.0"'
    rows = check_buffer(common + b"\n" + combined_in_common_log, "common")
    assert [row["ok"] for row in rows] == [True, False]  # the strict path reads the second as combined


def test_rejections() -> None:
    good = b'192.0.2.1 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 9 "-" "x"'
    lines = [
        good.replace(b"GET", b"G\x01T"),  # control byte
        good.replace(b'"x"', b'"x\\\x1b"'),  # control byte, even escaped
        good.replace(b'"x"', b'"\xc3\x28"'),  # invalid UTF-8
        good.replace(b"GET /", "GET /é".encode()),  # non-ASCII in the request
        good.replace(b"2024", b"1969"),  # year out of range
        good.replace(b"01/Jan/2024", b"29/Feb/2023"),  # not a leap year
        good.replace(b" 9 ", b" 1234567890123456789 "),  # 19 digits
        good[:-10],  # truncated
        good.removesuffix(b' "-" "x"'),  # common, in a combined log
    ]
    rows = check_buffer(b"\n".join(lines), "combined")
    assert [row["ok"] for row in rows] == [False] * len(lines)
    assert rows[2]["raw"] == good.replace(b'"x"', b'"\xc3\x28"').decode("utf-8", "replace")


# ---- Framing --------------------------------------------------------------------------------------------------


def test_empty_input_gives_an_empty_typed_frame() -> None:
    frame = pl.DataFrame(clfscan.scan(b"", 0, 1))
    assert frame.height == 0
    assert frame.schema == pl.Schema(
        {
            "line": pl.Int64,
            "ok": pl.Boolean,
            "ts": pl.Int64,
            **{name: pl.String for name in COLUMNS[3:14]},
            "status": pl.Int16,
            "bytes": pl.Int64,
        }
    )
    assert len(clfscan.scan(b"", 1, 1)) == 0


def test_line_numbering_newlines_and_crlf() -> None:
    good = b'192.0.2.1 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 9 "-" "x"'
    assert [r["line"] for r in scan_rows(good + b"\n" + good + b"\n", "combined", 100)] == [100, 101]
    assert [r["ok"] for r in scan_rows(good + b"\n" + good, "combined")] == [True, True]  # no final newline
    rows = scan_rows(good + b"\r\n" + good + b"\r\r\n", "combined")
    assert [r["ok"] for r in rows] == [True, False]  # one \r is stripped, not two
    assert rows[1]["raw"] == good.decode() + "\r"
    rows = scan_rows(b"\n\n" + good, "combined", 0)
    assert [(r["line"], r["ok"], r["raw"]) for r in rows] == [(0, False, ""), (1, False, ""), (2, True, None)]
    with pytest.raises(ValueError, match="fmt"):
        clfscan.scan(good, 3, 1)


def test_columns_outlive_the_scan_result() -> None:
    result = clfscan.scan(("\n".join(nginx_combined_lines(500))).encode(), 0, 1)
    capsules = result.__arrow_c_array__()  # exported but never imported: released with the capsules
    frame = pl.DataFrame(result)
    expected = frame.clone().rows()
    del result, capsules
    gc.collect()
    assert frame.rows() == expected
    assert frame["ok"].all()


def rss_bytes() -> int:
    with Path("/proc/self/statm").open() as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_repeated_scans_do_not_leak() -> None:
    lines = nginx_combined_lines(5_000)
    lines[::50] = [line.replace("GET", "G\x01T") for line in lines[::50]]  # some rejected lines too
    buf = ("\n".join(lines) + "\n").encode()  # ~1 MB
    for _ in range(20):
        pl.DataFrame(clfscan.scan(buf, 0, 1))
    gc.collect()
    before = rss_bytes()
    for _ in range(200):
        result = clfscan.scan(buf, 0, 1)
        result.__arrow_c_array__()
        assert pl.DataFrame(result).height == len(lines)
    gc.collect()
    grown = rss_bytes() - before
    assert grown < 16 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 200 scans of {len(buf) / 2**20:.1f} MiB"


def test_rows_and_rejected_counts() -> None:
    good = b'192.0.2.1 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 9 "-" "x"'
    result = clfscan.scan(good + b"\njunk\n" + good, 0, 1)
    assert (result.rows, result.rejected, len(result)) == (3, 1, 3)


def test_a_kept_batch_carries_nothing_of_its_last_scan() -> None:
    # Released batches are kept and zeroed for the next scans: a big scan with every field set, then small ones with
    # nulls, rejections and fewer rows must each read exactly as the reference does, however the batches are reused.
    wide = nginx_combined_lines(20_000, seed=3)
    big = ("\n".join(wide) + "\n").encode()
    small = (
        b'192.0.2.9 - - [01/Jan/2024:00:00:01 +0000] "GET /a HTTP/1.1" 404 - "-" "-"\n'
        b"junk that no format reads\n"
        b'192.0.2.10 - - [01/Jan/2024:00:00:02 +0000] "-" 400 0 "-" "-"\n'
    )
    for _ in range(6):  # more rounds than batches are kept
        held = [pl.DataFrame(clfscan.scan(big, 0, 1)) for _ in range(3)]
        del held
        gc.collect()
        check_buffer(small, "combined", first_line=7)
        rows = check_buffer(big[: len(big) // 3].rsplit(b"\n", 1)[0] + b"\n", "combined")
        assert all(row["ok"] for row in rows)


def test_count_lines() -> None:
    assert [clfscan.count_lines(b) for b in (b"", b"x", b"x\n", b"\n\n\r\n", bytes(range(256)) * 3)] == [0, 0, 1, 3, 3]
    assert clfscan.count_lines(memoryview(b"a\nb\nc")) == 2


addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded),
    st.ip_addresses(v=6).map(lambda a: a.exploded.upper()),
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),
    st.ip_addresses(v=6).map(lambda a: f"{a}%eth0"),
    st.tuples(*[st.integers(0, 300)] * 4).map(lambda t: ".".join(map(str, t))),
    st.tuples(*[st.integers(0, 99)] * 4).map(lambda t: ".".join(f"{n:02d}" for n in t)),
    st.text(alphabet="0123456789abcdef:.", min_size=1, max_size=40),
    st.sampled_from(["-", "localhost", "proxy.example.org", "1.2.3", "::", "1::2::3"]),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(addresses, min_size=1, max_size=20))
def test_client_networks_agree_with_python(clients: list[str]) -> None:
    clients = [c for c in clients if " " not in c and c]
    if not clients:
        return
    lines = [f'{c} - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 9 "-" "x"' for c in clients]
    scanned = pl.DataFrame(clfscan.scan(("\n".join(lines) + "\n").encode(), 0, 1))
    expected = client_networks(pl.Series(clients, dtype=pl.String))
    given_nets = scanned.get_column("client_net")
    for client, mine, theirs in zip(clients, given_nets, expected, strict=True):
        assert mine in (None, theirs), client
        plain = "%" not in client and (theirs is not None)
        assert mine is not None or not plain, f"{client}: left to Python though it is a plain address"
    # And the frame analyze gets has every client's network, however it was found.
    frame = finish_frame(scanned.select("ts", "client", "line", "client_net"), "site", "source")
    assert frame.get_column("client_net").to_list() == expected.to_list()
