"""The challenge: a solved puzzle earns a cookie that verifies; tampered, expired, moved or borrowed ones do not;
the page's own script solves it in a real browser; no one can make the verify endpoint redirect off the site."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floodwall.edge.challenge import VERIFY_PATH, Challenger, is_challenge_path, safe_target, secret_from_settings
from floodwall.edge.settings import ChallengeSettings
from floodwall.errors import ConfigError

SCRIPT = Path(__file__).resolve().parents[2] / "src/floodwall/edge/templates/challenge.js"
CHROMIUM = shutil.which("chromium")
NODE = shutil.which("node")
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CONTACT = "Readers who see this by mistake: write to desk@news.example"


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def _challenger(**options: object) -> tuple[Challenger, Clock]:
    clock = Clock()
    settings = ChallengeSettings.model_validate({"difficulty_bits": 10, **options})
    return Challenger(settings, CONTACT, b"s" * 32, clock), clock


def _challenge_of(body: bytes) -> str:
    found = re.search(rb'data-challenge="([^"]+)"', body)
    assert found is not None
    return found.group(1).decode()


def _solve(challenge: str, bits: int) -> int:
    nonce = 0
    while int.from_bytes(hashlib.sha256(f"{challenge}:{nonce}".encode()).digest(), "big") >> (256 - bits):
        nonce += 1
    return nonce


def _pass(challenger: Challenger, address: str, user_agent: str = UA, target: str = "/news/1?x=2") -> str:
    """Solve a page's puzzle like the browser does and return the `name=value` of the cookie earned."""
    _, _, body = challenger.page(target, address, user_agent)
    challenge = _challenge_of(body)
    status, headers, _ = challenger.answer(
        VERIFY_PATH, f"c={challenge}&n={_solve(challenge, challenger.settings.difficulty_bits)}", address, user_agent
    )
    assert status == 303
    assert (b"Location", target.encode()) in headers
    cookie = dict(headers)[b"Set-Cookie"].decode()
    assert {"HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=3600"} <= {part.strip() for part in cookie.split(";")}
    return cookie.split(";")[0]


def test_the_page_is_a_self_contained_429_with_the_contact_line() -> None:
    challenger, _ = _challenger()
    status, headers, body = challenger.page("/news/1", "192.0.2.10", UA)
    assert status == 429
    fields = dict(headers)
    assert fields[b"Cache-Control"] == b"no-store"
    assert fields[b"Content-Type"].startswith(b"text/html")
    assert b"default-src 'none'" in fields[b"Content-Security-Policy"]
    text = body.decode()
    assert "desk@news.example" in text and "<noscript>" in text
    challenge = _challenge_of(body)
    assert text.count(challenge) == 3 and "FLOODWALL" not in text  # attribute, refresh URL, form field
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text)  # nothing fetched from anywhere
    script = re.search(r"<script>(.*)</script>", text, re.S)
    assert script is not None
    digest = hashlib.sha256(script.group(1).encode()).digest()
    assert b"'sha256-" + base64.b64encode(digest) + b"'" in fields[b"Content-Security-Policy"]


def test_a_solved_puzzle_earns_a_cookie_for_its_prefix_and_agent() -> None:
    challenger, clock = _challenger()
    cookie = _pass(challenger, "192.0.2.10")
    assert challenger.verify(cookie, "192.0.2.10", UA)
    assert challenger.verify(f"_ga=GA1.2.3; {cookie}; other=1".encode(), "192.0.2.77", UA)  # same /24
    assert not challenger.verify(cookie, "192.0.3.10", UA)  # another prefix
    assert not challenger.verify(cookie, "192.0.2.10", UA + " evil")  # another user agent
    clock.now += 3599
    assert challenger.verify(cookie, "192.0.2.10", UA)
    clock.now += 2
    assert not challenger.verify(cookie, "192.0.2.10", UA)  # expired


def test_the_cookie_is_secure_when_the_site_is_served_over_https() -> None:
    challenger, _ = _challenger(cookie_secure=True)
    challenge = _challenge_of(challenger.page("/", "192.0.2.10", UA)[2])
    _, headers, _ = challenger.answer(VERIFY_PATH, f"c={challenge}&n={_solve(challenge, 10)}", "192.0.2.10", UA)
    assert dict(headers)[b"Set-Cookie"].endswith(b"; Secure")


def test_ipv6_readers_keep_their_pass_within_their_slash_48() -> None:
    challenger, _ = _challenger()
    cookie = _pass(challenger, "2001:db8:1:2::1")
    assert challenger.verify(cookie, "2001:db8:1:ffff::9", UA)
    assert not challenger.verify(cookie, "2001:db8:2::1", UA)


def test_tampered_and_foreign_cookies_are_refused() -> None:
    challenger, clock = _challenger()
    cookie = _pass(challenger, "192.0.2.10")
    name, _, value = cookie.partition("=")
    expiry, _, mac = value.partition(".")
    later = f"{name}={int(expiry) + 100000}.{mac}"
    flipped = f"{name}={expiry}.{mac[:-2]}{'A' if mac[-2] != 'A' else 'B'}{mac[-1]}"
    other_secret = Challenger(challenger.settings, CONTACT, b"t" * 32, clock)
    for bad in (later, flipped, f"{name}={expiry}", f"{name}=", f"{name}=abc.def", f"x{cookie}", None, "", b"\xff"):
        assert not challenger.verify(bad, "192.0.2.10", UA), bad
    assert not other_secret.verify(cookie, "192.0.2.10", UA)


def test_a_wrong_tampered_or_stale_answer_gets_a_fresh_page_not_a_cookie() -> None:
    challenger, clock = _challenger(difficulty_bits=16)
    _, _, body = challenger.page("/live", "192.0.2.10", UA)
    challenge = _challenge_of(body)
    nonce = _solve(challenge, 16)
    wrong = next(n for n in range(nonce + 1, nonce + 100000) if not _zero_bits(challenge, n, 16))
    for query in (
        f"c={challenge}&n={wrong}",
        f"c={challenge}&n=-1",
        f"c={challenge}&n={'9' * 40}",
        f"c={challenge}&n=%D9%A3",  # an Arabic-Indic three: a digit to str.isdigit, not to us
        f"c={challenge[:-3]}xyz&n={nonce}",
        f"c=&n={nonce}",
        "",
    ):
        status, headers, _ = challenger.answer(VERIFY_PATH, query, "192.0.2.10", UA)
        assert status == 429 and b"Set-Cookie" not in dict(headers), query
    # solved for another client: refused
    assert challenger.answer(VERIFY_PATH, f"c={challenge}&n={nonce}", "198.51.100.1", UA)[0] == 429
    clock.now += 301  # past puzzle_ttl_s
    status, _, body = challenger.answer(VERIFY_PATH, f"c={challenge}&n={nonce}", "192.0.2.10", UA)
    assert status == 429  # a fresh puzzle, still leading back to the page asked for
    fresh = _challenge_of(body)
    status, headers, _ = challenger.answer(VERIFY_PATH, f"c={fresh}&n={_solve(fresh, 16)}", "192.0.2.10", UA)
    assert status == 303 and dict(headers)[b"Location"] == b"/live"
    assert challenger.answer(VERIFY_PATH + "x", "", "192.0.2.10", UA)[0] == 404


def _zero_bits(challenge: str, nonce: int, bits: int) -> bool:
    return int.from_bytes(hashlib.sha256(f"{challenge}:{nonce}".encode()).digest(), "big") >> (256 - bits) == 0


def test_under_attack_new_puzzles_are_harder_and_old_ones_keep_their_difficulty() -> None:
    challenger, _ = _challenger(difficulty_bits=8, under_attack_difficulty_bits=14)
    easy = _challenge_of(challenger.page("/", "192.0.2.10", UA)[2])
    challenger.under_attack = True
    page = challenger.page("/", "192.0.2.10", UA)[2]
    hard = _challenge_of(page)
    assert b'data-bits="14"' in page
    easy_nonce = _solve(easy, 8)
    assert challenger.answer(VERIFY_PATH, f"c={easy}&n={easy_nonce}", "192.0.2.10", UA)[0] == 303
    weak = next(n for n in range(10**6) if _zero_bits(hard, n, 8) and not _zero_bits(hard, n, 14))
    assert challenger.answer(VERIFY_PATH, f"c={hard}&n={weak}", "192.0.2.10", UA)[0] == 429
    assert challenger.answer(VERIFY_PATH, f"c={hard}&n={_solve(hard, 14)}", "192.0.2.10", UA)[0] == 303


def test_without_javascript_the_reader_waits_instead() -> None:
    challenger, clock = _challenger(noscript_wait_s=5)
    _, _, body = challenger.page("/news/1", "192.0.2.10", UA)
    challenge = _challenge_of(body)
    assert f'content="5;url={VERIFY_PATH}?c={quote(challenge, safe="")}&amp;w=1"'.encode() in body
    clock.now += 4
    assert challenger.answer(VERIFY_PATH, f"c={challenge}&w=1", "192.0.2.10", UA)[0] == 429
    clock.now += 1
    status, headers, _ = challenger.answer(VERIFY_PATH, f"c={quote(challenge)}&w=1", "192.0.2.10", UA)
    assert status == 303 and b"Set-Cookie" in dict(headers)


def test_the_no_javascript_way_can_be_turned_off() -> None:
    challenger, clock = _challenger(noscript=False)
    _, _, body = challenger.page("/news/1", "192.0.2.10", UA)
    assert b"http-equiv" not in body and b'name="w"' not in body
    clock.now += 100
    assert challenger.answer(VERIFY_PATH, f"c={_challenge_of(body)}&w=1", "192.0.2.10", UA)[0] == 429


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "/\\evil.example", "https://evil.example/", "evil", "/a\r\nSet-Cookie: x=1", "/é", VERIFY_PATH],
)
def test_no_open_redirect(target: str) -> None:
    challenger, _ = _challenger()
    assert safe_target(target) == "/"
    cookie_page = challenger.page(target, "192.0.2.10", UA)[2]
    challenge = _challenge_of(cookie_page)
    status, headers, _ = challenger.answer(VERIFY_PATH, f"c={challenge}&n={_solve(challenge, 10)}", "192.0.2.10", UA)
    assert status == 303 and dict(headers)[b"Location"] == b"/"


@given(target=st.text(max_size=40))
def test_a_redirect_target_is_always_a_path_of_this_site(target: str) -> None:
    safe = safe_target(target)
    parts = urlsplit(safe)
    assert safe.startswith("/") and not safe.startswith("//") and not parts.scheme and not parts.netloc
    assert all(0x21 <= ord(ch) <= 0x7E for ch in safe)


def test_challenge_paths() -> None:
    assert is_challenge_path(VERIFY_PATH) and not is_challenge_path("/.well-known/floodwall/health")


# --- the secret ------------------------------------------------------------------------------------------------------


def test_the_secret_file_is_created_once_private_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    settings = ChallengeSettings(secret_file=str(path))
    with ThreadPoolExecutor(8) as pool:  # workers starting together agree on one secret
        secrets = set(pool.map(lambda _: secret_from_settings(settings), range(16)))
    assert len(secrets) == 1 and len(next(iter(secrets))) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_from_settings(settings) == path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # no temporary file left behind
    assert secret_from_settings(ChallengeSettings()) != secret_from_settings(ChallengeSettings())


def test_a_short_or_unreachable_secret_file_is_a_config_error(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"123")
    with pytest.raises(ConfigError, match=r"secret_file.*at least 16"):
        secret_from_settings(ChallengeSettings(secret_file=str(short)))
    with pytest.raises(ConfigError, match=r"secret_file.*cannot create"):
        secret_from_settings(ChallengeSettings(secret_file=str(tmp_path / "missing-dir" / "secret")))


# --- the page's own script -------------------------------------------------------------------------------------------


@pytest.mark.skipif(NODE is None, reason="node is absent")
@settings(max_examples=5, deadline=None)
@given(
    texts=st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200), min_size=20, max_size=40)
)
def test_the_script_sha256_agrees_with_hashlib(texts: list[str]) -> None:
    texts = [*texts, "", "a" * 55, "a" * 56, "a" * 63, "a" * 64, "a" * 119, "a" * 120]
    program = (
        "const src = require('fs').readFileSync(process.argv[1], 'utf8');"
        "const mod = {exports: {}}; new Function('module', 'document', src)(mod, undefined);"
        "const texts = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(texts.map(t => mod.exports.sha256(t)"
        ".map(w => w.toString(16).padStart(8, '0')).join(''))));"
    )
    run = subprocess.run(
        [str(NODE), "-e", program, str(SCRIPT)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [hashlib.sha256(t.encode()).hexdigest() for t in texts]


class SteppingClock:
    """Moves five seconds on at every reading: the no-script wait (2 s) passes without the test waiting for it
    (Chromium runs the page's refresh timer in virtual time)."""

    def __init__(self) -> None:
        self.now = 1_750_000_000.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            self.now += 5
            return self.now


@pytest.fixture
def site() -> Iterator[tuple[str, Challenger, list[str]]]:
    """A loopback site behind the challenge alone: pages need the cookie, the verify path answers."""
    settings = ChallengeSettings(difficulty_bits=12, noscript_wait_s=2)
    challenger = Challenger(settings, CONTACT, os.urandom(32), SteppingClock())
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            address, agent = self.client_address[0], self.headers.get("User-Agent", "")
            path, _, query = self.path.partition("?")
            if path.startswith("/favicon"):
                status, headers, body = 404, [], b""
            elif path == VERIFY_PATH:
                status, headers, body = challenger.answer(path, query, address, agent)
            elif challenger.verify(self.headers.get("Cookie"), address, agent):
                status, headers, body = 200, [(b"Content-Type", b"text/html")], b"<p id=article>ARTICLE TEXT</p>"
            else:
                status, headers, body = challenger.page(self.path, address, agent)
            self.send_response(status)
            for name, value in headers:
                self.send_header(name.decode(), value.decode())
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", challenger, seen
    finally:
        server.shutdown()
        server.server_close()


def _browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=30000",
            *extra,
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is absent: install the Debian package chromium")
def test_a_real_browser_solves_the_page_and_reads_the_article(
    site: tuple[str, Challenger, list[str]], tmp_path: Path
) -> None:
    base, _, seen = site
    run = _browse(f"{base}/news/2024/story?id=7", tmp_path / "profile")
    assert "ARTICLE TEXT" in run.stdout, (seen, run.stderr[-2000:])
    verify = [path for path in seen if path.startswith(VERIFY_PATH)]
    assert verify and "&n=" in verify[0]
    pages = [path for path in seen if not path.startswith("/favicon")]
    assert pages[0] == pages[-1] == "/news/2024/story?id=7"  # challenged, solved, sent back to the article


@given(path=st.text(max_size=60), query=st.one_of(st.none(), st.text(max_size=300)), cookie=st.binary(max_size=200))
def test_hostile_input_never_raises(path: str, query: str | None, cookie: bytes) -> None:
    challenger, _ = _challenger()
    status, _, _ = challenger.answer(VERIFY_PATH if path.startswith("v") else path, query, "192.0.2.10", UA)
    assert status in (303, 404, 429)
    assert challenger.verify(cookie, "192.0.2.10", UA) is False
    assert challenger.verify(b"floodwall_pass=" + cookie, "192.0.2.10", path) is False


def test_a_query_with_many_fields_gets_a_fresh_page() -> None:
    challenger, _ = _challenger()
    assert challenger.answer(VERIFY_PATH, "&".join(f"f{n}=1" for n in range(50)), "192.0.2.10", UA)[0] == 429


@given(nonce=st.text(max_size=30), wait=st.text(max_size=5))
def test_any_answer_to_a_real_challenge_gets_a_reply_not_an_exception(nonce: str, wait: str) -> None:
    challenger, _ = _challenger()
    challenge = _challenge_of(challenger.page("/", "192.0.2.10", UA)[2])
    query = f"c={challenge}&n={quote(nonce)}&w={quote(wait)}"
    assert challenger.answer(VERIFY_PATH, query, "192.0.2.10", UA)[0] in (303, 429)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is absent: install the Debian package chromium")
def test_a_browser_without_javascript_waits_and_reads_the_article(
    site: tuple[str, Challenger, list[str]], tmp_path: Path
) -> None:
    base, _, seen = site
    profile = tmp_path / "profile"
    (profile / "Default").mkdir(parents=True)  # JavaScript off in the profile (the --blink-settings switch stalls)
    preferences = {"profile": {"default_content_setting_values": {"javascript": 2}}}
    (profile / "Default" / "Preferences").write_text(json.dumps(preferences))
    run = _browse(f"{base}/news/2024/story?id=8", profile)
    assert "ARTICLE TEXT" in run.stdout, (seen, run.stderr[-2000:])
    verify = [path for path in seen if path.startswith(VERIFY_PATH)]
    assert verify and all("&w=1" in path and "&n=" not in path for path in verify)
