"""The fast path of the Common Log Format family, in C (reference: `floodwall.logs.clf.parse_line`)."""

from typing import Any, final

@final
class ScanResult:
    """The columns of one scan, one row per line, handed on through the Arrow C Data Interface.

    Columns, in order: line (int64), ok (bool), ts (int64, microseconds since the epoch, UTC), client, method,
    path, query, protocol, referer, user_agent, vhost, extras, client_net (the client's /24 or /48, as
    `frame.client_networks` gives it, for plain IPv4 and IPv6 addresses; null otherwise), raw (utf8), status (int16),
    bytes (int64).
    """

    @property
    def rows(self) -> int: ...
    @property
    def rejected(self) -> int: ...
    def __len__(self) -> int: ...
    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[Any, Any]: ...

def scan(buf: bytes, fmt: int, first_line: int) -> ScanResult:
    """One row per line of `buf`; fmt 0 is combined, 1 common, 2 vhost_combined."""

def count_lines(buf: bytes) -> int:
    """How many line breaks (b"\\n") `buf` holds; the GIL is released while counting."""
