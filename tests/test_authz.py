"""The decision endpoint behind the real nginx's `auth_request`, wired by `floodwall nginx-config --auth-request`:
a banned address gets 403, a challenged one the challenge page, and after solving it (the proof of work computed
here) the page it asked for; a reader gets 200 throughout. Decisions change in memory, never through nginx."""

from __future__ import annotations

import hashlib
import http.client
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from floodwall.authz import DecisionEndpoint
from floodwall.edge.challenge import VERIFY_PATH, Challenger
from floodwall.edge.settings import ChallengeSettings
from floodwall.enforce.nginx_config import NginxSite, render_site
from floodwall.errors import ConfigError
from floodwall.model import Action
from floodwall.store import DecisionCache
from floodwall.testing import make_decision
from nginx_run import NginxUnderTest, free_port

AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"
READER, BANNED, CHALLENGED = "198.51.100.23", "203.0.113.7", "203.0.113.8"


def get(port: int, path: str, client: str, cookie: str | None = None) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of one GET through nginx, redirects not followed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"X-Forwarded-For": client, "User-Agent": AGENT, "Host": "www.example-news.test"}
    if cookie is not None:
        headers["Cookie"] = cookie
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        connection.close()


def solve(challenge: str, bits: int) -> int:
    """The nonce a browser's script finds: SHA-256(challenge:nonce) starting with `bits` zero bits."""
    for nonce in range(1 << (bits + 8)):
        digest = hashlib.sha256(f"{challenge}:{nonce}".encode()).digest()
        if int.from_bytes(digest, "big") >> (256 - bits) == 0:
            return nonce
    raise AssertionError("no nonce found")


@pytest.fixture
def endpoint() -> DecisionEndpoint:
    now = datetime.now(UTC)
    cache = DecisionCache()
    cache.apply([make_decision(BANNED, now), make_decision(CHALLENGED, now, action=Action.CHALLENGE)])
    challenger = Challenger(ChallengeSettings(difficulty_bits=8), "Write to desk@example-news.test", b"k" * 32)
    running = DecisionEndpoint(f"127.0.0.1:{free_port()}", cache, challenger)
    running.start()
    yield running
    running.stop()


def test_nginx_with_auth_request_bans_challenges_and_lets_readers_through(
    tmp_path: Path, endpoint: DecisionEndpoint
) -> None:
    origin, port = free_port(), free_port()
    include = tmp_path / "banned.conf"
    include.write_text("")
    site = NginxSite(
        origin=f"http://127.0.0.1:{origin}",
        server_name="www.example-news.test",
        deny_include=str(include),
        cache_path=str(tmp_path / "cache"),
        log_path=str(tmp_path / "access.log"),
        listen=f"127.0.0.1:{port}",
        auth_request=f"127.0.0.1:{endpoint.port}",
    )
    (tmp_path / "floodwall.conf").write_text(render_site(site))
    body = f"""
    include {tmp_path}/floodwall.conf;
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    server {{ listen 127.0.0.1:{origin}; access_log off; location / {{ return 200 "page $request_uri\\n"; }} }}
"""
    with NginxUnderTest(tmp_path, body, port) as nginx:
        done = subprocess.run(nginx.test_command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr

        assert get(port, "/2024/story/", READER)[::2] == (200, "page /2024/story/\n")
        assert get(port, "/2024/story/", BANNED)[0] == 403

        status, headers, page = get(port, "/2024/other-story/?utm_source=x", CHALLENGED)
        assert status == 429 and headers["cache-control"] == "no-store" and "desk@example-news.test" in page
        found = re.search(r'data-challenge="([^"]+)" data-bits="(\d+)"', page)
        assert found is not None, page
        challenge, bits = found.group(1), int(found.group(2))
        # A wrong answer is a fresh challenge, not a pass.
        wrong = get(port, f"{VERIFY_PATH}?c={quote(challenge)}&n=x", CHALLENGED)
        assert wrong[0] == 429 and "set-cookie" not in wrong[1]

        answered = get(port, f"{VERIFY_PATH}?c={quote(challenge)}&n={solve(challenge, bits)}", CHALLENGED)
        assert answered[0] == 303 and answered[1]["location"] == "/2024/other-story/?utm_source=x"
        cookie = answered[1]["set-cookie"].split(";", 1)[0]
        passed = get(port, answered[1]["location"], CHALLENGED, cookie)
        assert passed[::2] == (200, "page /2024/other-story/?utm_source=x\n")
        # The pass is bound to the client's network: the same cookie from elsewhere is challenged again.
        assert get(port, "/2024/story/", "192.0.2.50", cookie)[0] == 200  # undecided: no challenge at all
        endpoint.cache.apply([make_decision("192.0.2.0/24", datetime.now(UTC), action=Action.CHALLENGE)])
        assert get(port, "/2024/story/", "192.0.2.50", cookie)[0] == 429

        # A ban made now takes effect at the next request: nginx is not reloaded.
        endpoint.cache.apply([make_decision(READER, datetime.now(UTC))])
        assert get(port, "/", READER)[0] == 403
        endpoint.cache.revoke([READER])
        assert get(port, "/", READER)[0] == 200
    assert endpoint.answers[204] >= 3 and endpoint.answers[403] >= 2 and endpoint.answers[401] >= 2


def test_the_endpoint_listens_on_loopback_only() -> None:
    challenger = Challenger(ChallengeSettings(), "contact", b"k" * 32)
    with pytest.raises(ConfigError, match="loopback"):
        DecisionEndpoint("0.0.0.0:9181", DecisionCache(), challenger)


def test_a_request_without_an_address_is_refused(endpoint: DecisionEndpoint) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=5)
    connection.request("GET", "/.well-known/floodwall/auth")
    response = connection.getresponse()
    assert response.status == 400 and b"X-Real-IP" in response.read()
    connection.close()
