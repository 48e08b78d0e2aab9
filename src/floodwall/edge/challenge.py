"""The challenge: a proof-of-work page whose solution buys a signed, expiring cookie. No server state.

How it goes. A challenged request gets `page()`: a small self-contained HTML page (inline script and style, no
request to anywhere) carrying a *challenge*, a signed token that holds its expiry, a random salt, the difficulty
and the page the reader asked for, bound by its signature to the reader's prefix and user agent. The page's script
finds a nonce such that SHA-256(`challenge:nonce`) begins with `difficulty_bits` zero bits (about
2**difficulty_bits hashes: at 16 bits, a fraction of a second on a desktop, about a second on a modest phone) and
goes to `/.well-known/floodwall/challenge/verify?c=...&n=...`. `answer()` checks the signature, the expiry, the
binding and the work, then sets the cookie and redirects back to the page (a path of this site only: the target is
inside the signed challenge, so no one can make us redirect elsewhere).

The cookie (`verify()`) is `expiry.signature`, the signature an HMAC-SHA256 over the expiry, the client's prefix
(/24 or /48, so a reader whose phone changes address inside its operator's range keeps its pass) and a hash of its
user agent, compared in constant time. A cookie copied to another network or another client is worth nothing; one
that expired is worth nothing; nothing is stored on our side, so any worker or node with the same secret verifies.

Without JavaScript. Readers who turn scripts off (Tor Browser's safest level) must still get through. The page then
asks for time instead of work: a `<noscript>` refresh (and a button) goes to the verify URL with `w=1` after
`noscript_wait_s` seconds, and `answer()` accepts it only once that long has passed since the challenge was made.
The trade-off, stated plainly: waiting costs a bot nothing but time, and a bot that parses HTML can wait as well
as a browser. It still caps each (prefix, user agent) pair to one pass per few seconds and keeps the floods that
do not read pages out, the rate limits still apply to whoever holds a pass, and an operator facing a bot that does
wait turns it off (`noscript = false`). A question ("what is two plus three?") would cost real readers more
(languages, accessibility) and a bot writer one line.

Verified crawlers and allowlisted networks are exempted before this part is reached (the pipeline's business).
The clock is the wall clock in seconds: expiries live in cookies and must hold across restarts and nodes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import html
import logging
import os
import secrets
import time
from collections.abc import Callable
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, quote

from floodwall.edge.limits import prefix_of
from floodwall.edge.settings import ChallengeSettings
from floodwall.errors import ConfigError

__all__ = ["CHALLENGE_PATH", "VERIFY_PATH", "Challenger", "Reply", "is_challenge_path", "secret_from_settings"]

CHALLENGE_PATH: Final = "/.well-known/floodwall/challenge/"
VERIFY_PATH: Final = CHALLENGE_PATH + "verify"
SECRET_BYTES: Final = 32
_MAX_NONCE_DIGITS: Final = 20
_MAX_TARGET: Final = 2048
_VERIFIED_ENTRIES: Final = 100_000
#: Where the challenge goes in a rendered page: letters only, so escaping and URL quoting leave it as it is.
_MARK: Final = b"FLOODWALLCHALLENGEGOESHERE"

_log = logging.getLogger(__name__)

#: status, headers, body: what the server writes back.
Reply = tuple[int, list[tuple[bytes, bytes]], bytes]


def is_challenge_path(path: str) -> bool:
    """True for the paths `answer()` handles (the pipeline routes them there before any other part)."""
    return path.startswith(CHALLENGE_PATH)


def secret_from_settings(settings: ChallengeSettings) -> bytes:
    """The signing secret: read from `secret_file`, created there with 32 random bytes (mode 0600) when missing.

    Creation is atomic and first-writer-wins (written to a private temporary file, then hard-linked into place), so
    workers starting together all end up with the same secret. Without `secret_file`, a random secret: the caller
    must make it once and hand it to every worker, or each would refuse the others' cookies.
    """
    if settings.secret_file is None:
        return os.urandom(SECRET_BYTES)
    path = Path(settings.secret_file)
    if not path.exists():
        _create_secret(path)
    try:
        secret = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"key 'edge.challenge.secret_file' = {str(path)!r}: cannot read it ({exc.strerror})"
        ) from None
    if len(secret) < 16:
        raise ConfigError(
            f"key 'edge.challenge.secret_file' = {str(path)!r}: holds {len(secret)} bytes, at least 16 are needed"
        )
    if path.stat().st_mode & 0o077:
        _log.warning("the challenge secret file %s is readable by other users; chmod 600 it", path)
    return secret


def _create_secret(path: Path) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(os.urandom(SECRET_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another worker was first: its secret is the one
            os.link(temporary, path)
    except OSError as exc:
        raise ConfigError(
            f"key 'edge.challenge.secret_file' = {str(path)!r}: cannot create it ({exc.strerror})"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)


@lru_cache(maxsize=4096)
def _agent_hash(user_agent: str) -> str:
    """A user agent's short hash (what the cookie is bound to; readers' browsers share a few hundred strings)."""
    return hashlib.sha256(user_agent.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _digits(text: str) -> bool:
    """ASCII digits only (`str.isdigit` also takes "٣" and "３")."""
    return text.isascii() and text.isdigit()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None


def _leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def safe_target(target: str) -> str:
    """`target` when it is a path of this site (`/...`, not `//host` nor `/\\host`, no control characters), else `/`."""
    if (
        not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or len(target) > _MAX_TARGET
        or any(ord(ch) < 0x21 or ord(ch) > 0x7E for ch in target)
        or is_challenge_path(target)
    ):
        return "/"
    return target


@cache
def _assets() -> tuple[str, str, bytes]:
    """The page template, the solver script, and the script's CSP hash (the script text never changes: the values
    it needs are in data attributes, so one hash allows it)."""
    folder = resources.files("floodwall.edge") / "templates"
    template = (folder / "challenge.html").read_text(encoding="utf-8")
    script = (folder / "challenge.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest())
    return template, script, digest


class Challenger:
    """Makes challenge pages, checks their answers, and verifies the cookies they earn."""

    def __init__(
        self,
        settings: ChallengeSettings,
        contact: str,
        secret: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the challenge secret needs at least 16 bytes")
        self.settings = settings
        self.contact = contact
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)
        #: While True, new puzzles ask `under_attack_difficulty_bits` (the switch the limiter has too); puzzles
        #: already handed out keep the difficulty they were signed with.
        self.under_attack = False
        self._verified: set[tuple[str, str, str]] = set()  # (cookie value, prefix, agent hash) seen valid; expiry
        # is still checked on every request, since it is part of the value
        self._clock = clock
        self._cookie_prefix = settings.cookie_name + "="
        template, self._script, digest = _assets()
        self._template = template
        self._csp = (
            b"default-src 'none'; script-src 'sha256-" + digest + b"'; style-src 'unsafe-inline'; "
            b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )
        self._pages: dict[int, bytes] = {}  # difficulty -> the page with `_MARK` where the challenge goes
        self._page_headers = (
            (b"Content-Type", b"text/html; charset=utf-8"),
            (b"Cache-Control", b"no-store"),
            (b"Content-Security-Policy", self._csp),
            (b"X-Robots-Tag", b"noindex"),
        )

    @property
    def difficulty_bits(self) -> int:
        """The difficulty of the puzzles made now."""
        return self.settings.under_attack_difficulty_bits if self.under_attack else self.settings.difficulty_bits

    # --- signatures -----------------------------------------------------------------------------------------------

    def _mac(self, *parts: str) -> bytes:
        mac = self._keyed.copy()  # the key's pads hashed once, at start
        mac.update("\x00".join(parts).encode("utf-8", "surrogateescape"))
        return mac.digest()

    @staticmethod
    def _agent(user_agent: str) -> str:
        return _agent_hash(user_agent)

    def cookie_value(self, address: str, user_agent: str, expiry: int | None = None) -> str:
        """A valid cookie value for this client (what a solved challenge earns)."""
        if expiry is None:
            expiry = int(self._clock()) + self.settings.cookie_ttl_s
        mac = self._mac("cookie", str(expiry), prefix_of(address), self._agent(user_agent))
        return f"{expiry}.{_b64(mac)}"

    def verify(self, cookie_header: bytes | str | None, address: str, user_agent: str) -> bool:
        """True when the request's Cookie header holds an unexpired pass for this client's prefix and user agent."""
        if not cookie_header:
            return False
        text = cookie_header.decode("latin-1") if isinstance(cookie_header, bytes) else cookie_header
        if self._cookie_prefix not in text:
            return False
        now = self._clock()
        for pair in text.split(";"):
            pair = pair.strip()  # noqa: PLW2901 (the pair as parsed)
            if pair.startswith(self._cookie_prefix) and self._valid_cookie(
                pair[len(self._cookie_prefix) :], now, address, user_agent
            ):
                return True
        return False

    def _valid_cookie(self, value: str, now: float, address: str, user_agent: str) -> bool:
        expiry_text, dot, mac_text = value.partition(".")
        if not dot or not _digits(expiry_text) or len(expiry_text) > 12:
            return False
        expiry = int(expiry_text)
        if expiry <= now or expiry > now + self.settings.cookie_ttl_s + 60:
            return False
        prefix, agent = prefix_of(address), self._agent(user_agent)
        remembered = (value, prefix, agent)
        if remembered in self._verified:
            return True
        expected = _b64(self._mac("cookie", expiry_text, prefix, agent))
        if not hmac.compare_digest(mac_text.encode("latin-1", "replace"), expected.encode("ascii")):
            return False
        if len(self._verified) >= _VERIFIED_ENTRIES:
            self._verified.clear()
        self._verified.add(remembered)  # only good cookies, so a flood of forged ones cannot fill it
        return True

    def make_challenge(self, target: str, address: str, user_agent: str) -> str:
        """A signed challenge for this client, to solve within `puzzle_ttl_s`."""
        issued = int(self._clock())
        payload = "|".join(
            (
                str(issued + self.settings.puzzle_ttl_s),
                str(issued),
                str(self.difficulty_bits),
                secrets.token_hex(8),
                safe_target(target),
            )
        )
        mac = self._mac("challenge", payload, prefix_of(address), self._agent(user_agent))
        return f"{_b64(payload.encode('utf-8', 'surrogateescape'))}.{_b64(mac)}"

    def _open_challenge(self, challenge: str, address: str, user_agent: str) -> tuple[int, int, int, str] | None:
        """(expiry, issued, difficulty, target) of a challenge signed for this client, or None."""
        payload_text, dot, mac_text = challenge.partition(".")
        payload = _unb64(payload_text)
        mac = _unb64(mac_text)
        if not dot or payload is None or mac is None:
            return None
        text = payload.decode("utf-8", "surrogateescape")
        expected = self._mac("challenge", text, prefix_of(address), self._agent(user_agent))
        if not hmac.compare_digest(mac, expected):
            return None
        expiry, issued, bits, _, target = text.split("|", 4)
        return int(expiry), int(issued), int(bits), target

    # --- the page and its answer ----------------------------------------------------------------------------------

    def page(self, target: str, address: str, user_agent: str) -> Reply:
        """The challenge page for a request to `target` (its path and query): status 429, never cached.

        Under a flood this is what most bots get, so the page is rendered once per difficulty and only the challenge
        is put in per request (it is base64url and dots: the same text in an attribute, a URL and a form field)."""
        challenge = self.make_challenge(target, address, user_agent)
        body = self._rendered(self.difficulty_bits).replace(_MARK, challenge.encode("ascii"))
        return 429, list(self._page_headers), body

    def _rendered(self, bits: int) -> bytes:
        page = self._pages.get(bits)
        if page is None:
            marker = _MARK.decode("ascii")
            page = self._pages[bits] = self._template.format(
                challenge=marker,
                bits=bits,
                verify_path=VERIFY_PATH,
                noscript_head=self._noscript_head(marker),
                noscript_body=self._noscript_body(marker),
                contact=html.escape(self.contact),
                script=self._script,
            ).encode("utf-8")
        return page

    def _noscript_head(self, challenge: str) -> str:
        if not self.settings.noscript:
            return ""
        url = html.escape(f"{VERIFY_PATH}?c={quote(challenge, safe='')}&w=1")
        return f'<noscript><meta http-equiv="refresh" content="{self._wait_text};url={url}"></noscript>'

    def _noscript_body(self, challenge: str) -> str:
        if not self.settings.noscript:
            return "<noscript><p>This page needs JavaScript for now; please turn it on for this site.</p></noscript>"
        return (
            f"<noscript><p>JavaScript is off, so this takes a few seconds longer: the page will move on by itself "
            f"after {self._wait_text} seconds, or you can continue with the button once they have passed.</p>"
            f'<form method="get" action="{VERIFY_PATH}"><input type="hidden" name="c" value="{html.escape(challenge)}">'
            f'<input type="hidden" name="w" value="1"><button type="submit">Continue</button></form></noscript>'
        )

    @property
    def _wait_text(self) -> str:
        return f"{self.settings.noscript_wait_s:g}"

    def answer(self, path: str, query: str | None, address: str, user_agent: str) -> Reply:
        """The verify endpoint: a right answer sets the cookie and sends the reader back to its page (303); a wrong
        or stale one gets a fresh challenge page for the same page where it can be told, else for `/`."""
        if path != VERIFY_PATH:
            return self._text(404, "Not found.")
        try:
            fields = parse_qs(query or "", max_num_fields=8)
        except ValueError:  # more fields than an answer has: not one of ours
            return self.page("/", address, user_agent)
        challenge = (fields.get("c") or [""])[0]
        opened = self._open_challenge(challenge, address, user_agent) if challenge else None
        if opened is None:
            return self.page("/", address, user_agent)
        expiry, issued, bits, target = opened
        now = self._clock()
        if now >= expiry:
            return self.page(target, address, user_agent)
        nonce = (fields.get("n") or [""])[0]
        if nonce:
            solved = _digits(nonce) and len(nonce) <= _MAX_NONCE_DIGITS and self._worked(challenge, nonce, bits)
        else:
            waited = self.settings.noscript and (fields.get("w") or [""])[0] == "1"
            solved = waited and now >= issued + self.settings.noscript_wait_s
        if not solved:
            return self.page(target, address, user_agent)
        value = self.cookie_value(address, user_agent)
        cookie = (
            f"{self.settings.cookie_name}={value}; Max-Age={self.settings.cookie_ttl_s}; Path=/; HttpOnly; SameSite=Lax"
        )
        if self.settings.cookie_secure:
            cookie += "; Secure"
        headers = [
            (b"Location", safe_target(target).encode("latin-1", "replace")),
            (b"Set-Cookie", cookie.encode("latin-1")),
            (b"Cache-Control", b"no-store"),
            (b"Content-Type", b"text/plain; charset=utf-8"),
        ]
        return 303, headers, b"Thank you, loading the page.\n"

    @staticmethod
    def _worked(challenge: str, nonce: str, bits: int) -> bool:
        digest = hashlib.sha256(f"{challenge}:{nonce}".encode("ascii")).digest()
        return _leading_zero_bits(digest) >= bits

    def _text(self, status: int, text: str) -> Reply:
        body = f"{text}\n{self.contact}\n".encode()
        return status, [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Cache-Control", b"no-store")], body
