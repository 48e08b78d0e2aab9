"""The edge's own access log: nginx `combined` plus the `key=value` extras `floodwall analyze` reads.

One line per answered request, in the same shape as the `log_format floodwall` that `floodwall nginx-config`
prints (see `floodwall.enforce.nginx_config` and `floodwall.logs.clf.EXTRA_KEYS`):

    $remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
    rt=$request_time urt="$upstream_response_time" us="$upstream_status" ucs="$cache_status" host="$host"
    xff="$http_x_forwarded_for"

`$remote_addr` is the client's address as the pipeline resolved it (behind trusted proxies, from X-Forwarded-For),
so analysis sees readers, not the CDN. Like any web server's access log it holds readers' addresses: it is the
outlet's evidence, kept where nginx's would be, and never leaves the outlet in clear (`bundle.json` hashes them).

Strings are escaped the way nginx does (`"`, `\\`, control and non-ASCII bytes as `\\xHH`), so a hostile
user agent cannot forge a field. Lines are buffered and written once a second (or when 64 KiB are waiting) with
one `write` on a file opened with O_APPEND: workers sharing the file never interleave inside a line. A rotated
file (moved away by logrotate) is noticed at the next flush and a new one opened.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final

from floodwall.edge.gate import refused_fields
from floodwall.edge.http import Request

__all__ = ["AccessLog", "escape"]

_FLUSH_BYTES: Final = 64 * 1024
#: Escaped field values remembered before the memory is cleared (a flood of random user agents only refills it).
_REMEMBERED_TEXTS: Final = 4096
_ESCAPES: Final = {c: f"\\x{c:02X}" for c in (*range(0x20), 0x22, 0x5C, *range(0x7F, 0x100))}
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def escape(value: str) -> str:
    """nginx's escaping of logged strings (latin-1 text, one character per byte)."""
    # Most values (paths, user agents) need nothing: two scans in C instead of a dict lookup per character.
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return value.translate(_ESCAPES)


def _field_text(value: bytes | None) -> str:
    return "-" if not value else escape(value.decode("latin-1"))


class AccessLog:
    """Buffered writer of the access log at `path`; `record` per request, `flush` at least once a second."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd = -1
        self._inode: tuple[int, int] | None = None
        self._buffer: list[str] = []
        self._size = 0
        self._second = -1
        self._time_local = ""
        self._texts: dict[bytes, str] = {}
        self._parts: dict[tuple[object, ...], tuple[str, str]] = {}
        self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        stat = os.fstat(fd)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._inode = fd, (stat.st_dev, stat.st_ino)

    def _now(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._set_time(now)
        return self._time_local

    def _set_time(self, now: int) -> None:
        """`$time_local` for the second `now`, made once per second."""
        t = time.gmtime(now)
        self._second = now
        self._time_local = time.strftime("%d/", t) + _MONTHS[t.tm_mon - 1] + time.strftime("/%Y:%H:%M:%S +0000", t)

    def record(
        self, request: Request, status: int, body_bytes: int, duration_s: float, wall_s: float | None = None
    ) -> None:
        """One line for an answered request; `wall_s` is the time now (epoch seconds) when the caller has it."""
        now = int(time.time() if wall_s is None else wall_s)
        if now != self._second:
            self._set_time(now)
        # Readers repeat their requests (the same page, agent and referer; the same origin status and host): the
        # line's text between the time and `rt=`, and after `urt=`, is remembered per those values, so a hit's
        # line is one lookup and one format instead of escaping and formatting ten fields.
        key = (
            request.method,
            request.target,
            request.version,
            status,
            body_bytes,
            request.referer,
            request.user_agent,
            request.upstream_status,
            request.cache_status,
            request.host,
            request.forwarded_for,
        )
        parts = self._parts.get(key)
        if parts is None:
            if len(self._parts) >= _REMEMBERED_TEXTS:
                self._parts.clear()
            parts = self._parts[key] = (self._middle(request, status, body_bytes), self._end(request))
        upstream_s = request.upstream_s
        text = (
            f"{request.client or '-'} - - [{self._time_local}] {parts[0]} rt={duration_s:.3f} "
            f'urt="{"-" if upstream_s is None else f"{upstream_s:.3f}"}" {parts[1]}'
        )
        self._buffer.append(text)
        self._size += len(text)
        if self._size >= _FLUSH_BYTES:
            self.flush()

    def _middle(self, request: Request, status: int, body_bytes: int) -> str:
        """`"$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`."""
        # A request we could not read (400, 413, 431) has no request line to quote. The target is ASCII (the
        # connection refuses others) and the method an HTTP token: most lines need no escaping, checked in C.
        method = request.method
        if method == "-":
            line = "-"
        else:
            target = request.target
            line = f"{method} {target} HTTP/{request.version}"
            if not target.isprintable() or '"' in target or "\\" in target:
                line = escape(line)
        return f'"{line}" {status} {body_bytes} "{self._text(request.referer)}" "{self._text(request.user_agent)}"'

    def _end(self, request: Request) -> str:
        """What follows `urt=`: `us= ucs= host= xff=` and the line's end."""
        upstream_status = request.upstream_status
        host = request.host
        return (
            f'us="{"-" if upstream_status is None else upstream_status}" ucs="{request.cache_status or "-"}" '
            f'host="{(escape(host) or "-") if host else "-"}" xff="{self._text(request.forwarded_for)}"\n'
        )

    def _text(self, value: bytes | None) -> str:
        """A logged field's text, escaped; remembered per value (readers send the same user agent and referer
        again and again, and decoding and checking them was a tenth of a cache hit's cost)."""
        if not value:
            return "-"
        text = self._texts.get(value)
        if text is None:
            if len(self._texts) >= _REMEMBERED_TEXTS:
                self._texts.clear()
            text = self._texts[value] = escape(value.decode("latin-1"))
        return text

    def record_refused(self, client: str, data: bytes, body_bytes: int) -> None:
        """One line for a connection refused at accept (`floodwall.edge.gate`), from the client's first bytes: its
        request line, `Host` and `User-Agent` as far as they came, status 403. Made without a `Request`: under a
        flood of banned sources this runs once per connection."""
        line, host, agent = refused_fields(data)
        text = (
            f'{client} - - [{self._now()}] "{escape(line) if line else "-"}" 403 {body_bytes} "-" '
            f'"{escape(agent) if agent else "-"}" rt=0.000 urt="-" us="-" ucs="-" '
            f'host="{escape(host) if host else "-"}" xff="-"\n'
        )
        self._append(text)

    def _append(self, text: str) -> None:
        self._buffer.append(text)
        self._size += len(text)
        if self._size >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered in one call; reopen the file first when it was rotated away."""
        try:
            stat = self.path.stat()
            if (stat.st_dev, stat.st_ino) != self._inode:
                self._open()
        except FileNotFoundError:
            self._open()
        if not self._buffer:
            return
        data = "".join(self._buffer).encode("latin-1", "replace")
        self._buffer.clear()
        self._size = 0
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
