"""The Common Log Format family, line by line: the strict parser and the rules every path shares.

`combined` is nginx's and Apache's default:

    $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"

`common` stops after the size, `vhost_combined` (Apache) puts `host:port` first. Any of them may be followed by
extra fields, which are kept when recognised (see `classify_extra`). This module is the reference: the C scanner
`_clfscan` must give the same values for every line it accepts (a hypothesis test checks it), and this parser is
the fallback for the lines it rejects.

Values are kept as logged: nginx writes `"` and `\\` in strings as `\\x22` and `\\x5C`, Apache as `\\"` and
`\\\\`; neither is undone here, so the evidence is the log's own text. `-` and empty strings are missing values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = [
    "CACHE_STATUSES",
    "CLF_FORMATS",
    "EXTRA_KEYS",
    "EXTRA_KINDS",
    "SHAPES",
    "TOKEN_PATTERN",
    "ExtrasLayout",
    "ParsedLine",
    "classify_extra",
    "learn_layout",
    "match_format",
    "parse_clf_time",
    "parse_line",
    "split_request",
    "tokenize_extras",
]

CLF_FORMATS: Final = ("combined", "common", "vhost_combined")

# ASCII classes: `\d` must not take other scripts' digits, as int() would.
_FLAGS: Final = re.DOTALL | re.ASCII
_QUOTED: Final = r'"((?:[^"\\]|\\.)*)"'
_HEAD: Final = r"(\S+) (\S+) (\S+) \[([^\]]*)\] " + _QUOTED + r" (\d{3}|-) (\d+|-)"
_RX: Final = {
    "combined": re.compile(_HEAD + " " + _QUOTED + " " + _QUOTED + r"(.*)", _FLAGS),
    "common": re.compile(_HEAD + r"(.*)", _FLAGS),
    "vhost_combined": re.compile(r"(\S+) " + _HEAD + " " + _QUOTED + " " + _QUOTED + r"(.*)", _FLAGS),
}
_MONTHS: Final = {
    m: i for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)
}
_TIME_RX: Final = re.compile(r"(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})", re.ASCII)
_PROTOCOL_RX: Final = re.compile(r"HTTP/\d(?:\.\d)?", re.ASCII)

# Extra fields after the standard ones. Each value kind has a shape; a token that does not fit is ignored.
EXTRA_KINDS: Final = ("request_time", "upstream_time", "upstream_status", "cache_status", "forwarded_for", "host")
CACHE_STATUSES: Final = ("HIT", "MISS", "EXPIRED", "STALE", "UPDATING", "REVALIDATED", "BYPASS")
#: key=value extras (nginx's documented `rt= urt=` style and Floodwall's own log), key -> column.
EXTRA_KEYS: Final = {
    "rt": "request_time",
    "request_time": "request_time",
    "urt": "upstream_time",
    "upstream_time": "upstream_time",
    "upstream_response_time": "upstream_time",
    "us": "upstream_status",
    "upstream_status": "upstream_status",
    "ucs": "cache_status",
    "cs": "cache_status",
    "cache": "cache_status",
    "cache_status": "cache_status",
    "upstream_cache_status": "cache_status",
    "host": "host",
    "vhost": "host",
    "xff": "forwarded_for",
    "forwarded_for": "forwarded_for",
    "http_x_forwarded_for": "forwarded_for",
}
_FLOAT: Final = r"[0-9]+(?:\.[0-9]+)?"
_LIST_SEP: Final = r"(?:, | : )"
#: Shapes by kind. Lists (nginx joins upstream values with ", " and " : ") keep their last element.
SHAPES: Final = {
    "request_time": re.compile(r"[0-9]+\.[0-9]+"),
    "upstream_time": re.compile(rf"(?:(?:{_FLOAT}|-){_LIST_SEP})*{_FLOAT}"),
    "upstream_status": re.compile(r"(?:(?:[0-9]{3}|-)(?:, | : ))*[0-9]{3}"),
    "cache_status": re.compile("|".join(CACHE_STATUSES)),
    "forwarded_for": re.compile(r"[0-9A-Fa-f.:]+(?:, ?(?:[0-9A-Fa-f.:]+|unknown))*"),
    "host": re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\.?(?::[0-9]+)?"),
}
_MAX_INT64: Final = 2**63 - 1
_TOKEN_RX: Final = re.compile(r'([A-Za-z_]+="(?:[^"\\]|\\.)*")|"((?:[^"\\]|\\.)*)"|(\S+)')
#: The token pattern as text, for Polars (Rust's regex reads it the same way).
TOKEN_PATTERN: Final = _TOKEN_RX.pattern
_KV_RX: Final = re.compile(r"([A-Za-z_]+)=(.*)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ExtrasLayout:
    """What the extra fields of one log are, position by position: a column name, `key=` form, or None."""

    columns: tuple[str | None, ...]
    keyed: tuple[bool, ...]

    @property
    def empty(self) -> bool:
        return not self.columns


NO_EXTRAS: Final = ExtrasLayout((), ())


@dataclass(slots=True)
class ParsedLine:
    """One line's values, before they become a row of the Request frame."""

    ts: datetime
    client: str
    method: str | None
    path: str | None
    query: str | None
    protocol: str | None
    status: int | None
    bytes: int | None
    referer: str | None
    user_agent: str | None
    host: str | None = None
    request_time: float | None = None
    upstream_time: float | None = None
    upstream_status: int | None = None
    cache_status: str | None = None
    forwarded_for: str | None = None


def parse_clf_time(text: str) -> datetime | None:
    """`10/Oct/2000:13:55:36 -0700` to an aware UTC datetime; None when it is not such a time."""
    m = _TIME_RX.fullmatch(text)
    if m is None:
        return None
    day, mon, year, hour, minute, second, sign, off_h, off_m = m.groups()
    month = _MONTHS.get(mon)
    if month is None:
        return None
    try:
        local = datetime(int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=UTC)
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        return local - offset if sign == "+" else local + offset
    except (ValueError, OverflowError):
        return None


def split_request(request: str) -> tuple[str | None, str | None, str | None, str | None]:
    """`GET /a?b=1 HTTP/1.1` to (method, path, query, protocol).

    A request line that is not `METHOD TARGET [PROTOCOL]` (junk, a TLS handshake sent to port 80) keeps its text
    as the path, with no method; `-` and an empty request are missing.
    """
    if request in ("", "-"):
        return None, None, None, None
    tokens = request.split(" ")
    if len(tokens) >= 3 and _PROTOCOL_RX.fullmatch(tokens[-1]):
        method, target, protocol = tokens[0], " ".join(tokens[1:-1]), tokens[-1]
    elif len(tokens) == 2:
        method, target, protocol = tokens[0], tokens[1], None
    else:
        return None, request, None, None
    path, sep, query = target.partition("?")
    return method, path, (query if sep else None), protocol


def _missing(value: str) -> str | None:
    return None if value in ("", "-") else value


def tokenize_extras(extras: str) -> list[str]:
    """The extra fields after the standard ones, quoted or bare, as text (quotes removed)."""
    return [keyed or bare or quoted for keyed, quoted, bare in _TOKEN_RX.findall(extras)]


def _last(value: str) -> str:
    for sep in (", ", " : "):
        if sep in value:
            value = value.rsplit(sep, 1)[1]
    return value


def convert_extra(column: str, value: str) -> str | float | int | None:
    """A token's value for `column` when it has the column's shape, else None."""
    if value in ("", "-") or SHAPES[column].fullmatch(value) is None:
        return None
    if column in ("request_time", "upstream_time"):
        return float(_last(value))
    if column == "upstream_status":
        return int(_last(value))
    if column == "host":
        return value.rstrip(".").rsplit(":", 1)[0].rstrip(".").lower() if ":" in value else value.rstrip(".").lower()
    return value


def classify_extra(token: str, taken: set[str]) -> tuple[str | None, bool]:
    """Which column a lone extra token belongs to, by its key or its shape; (None, False) when unknown."""
    kv = _KV_RX.fullmatch(token)
    if kv is not None and kv.group(1).lower() in EXTRA_KEYS:
        return EXTRA_KEYS[kv.group(1).lower()], True
    for column in ("request_time", "upstream_time", "upstream_status", "cache_status", "forwarded_for", "host"):
        if column in taken or SHAPES[column].fullmatch(token) is None:
            continue
        if column == "upstream_time" and "request_time" not in taken and SHAPES["request_time"].fullmatch(token):
            continue
        return column, False
    return None, False


def learn_layout(extras_samples: list[str]) -> ExtrasLayout:
    """The most common layout of extra fields among sample lines (the sniffer's view of one log's format)."""
    counts: dict[ExtrasLayout, int] = {}
    for extras in extras_samples:
        taken: set[str] = set()
        columns: list[str | None] = []
        keyed: list[bool] = []
        for token in tokenize_extras(extras):
            column, is_keyed = classify_extra(token, taken)
            if column is not None:
                taken.add(column)
            columns.append(column)
            keyed.append(is_keyed)
        layout = ExtrasLayout(tuple(columns), tuple(keyed))
        counts[layout] = counts.get(layout, 0) + 1
    if not counts:
        return NO_EXTRAS
    return max(counts.items(), key=lambda item: (item[1], -len(item[0].columns)))[0]


def apply_extras(parsed: ParsedLine, extras: str, layout: ExtrasLayout) -> None:
    """Fill the extra columns of `parsed` from its extra fields, by position when they fit the log's layout."""
    tokens = tokenize_extras(extras)
    if not tokens:
        return
    columns: list[tuple[str | None, bool]]
    if len(tokens) == len(layout.columns):
        columns = list(zip(layout.columns, layout.keyed, strict=True))
    else:
        taken: set[str] = set()
        columns = []
        for token in tokens:
            column, is_keyed = classify_extra(token, taken)
            if column is not None:
                taken.add(column)
            columns.append((column, is_keyed))
    for token, (column, is_keyed) in zip(tokens, columns, strict=True):
        if column is None:
            continue
        value = token
        if is_keyed:
            kv = _KV_RX.fullmatch(token)
            if kv is None or EXTRA_KEYS.get(kv.group(1).lower()) != column:
                continue
            value = kv.group(2)
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
        setattr(parsed, column, convert_extra(column, value))


def match_format(line: str, fmt: str) -> str | None:
    """The extra fields' text when `line` is a line of `fmt` with a valid time, else None."""
    m = _RX[fmt].fullmatch(line)
    if m is None:
        return None
    time_text = m.group(5 if fmt == "vhost_combined" else 4)
    return m.groups()[-1] if parse_clf_time(time_text) is not None else None


def parse_line(line: str, fmt: str, layout: ExtrasLayout = NO_EXTRAS) -> ParsedLine | None:
    """Parse one line of `fmt`, or of another format of the family when it fits better; None when none fits."""
    # A line with a referer and a user agent is `combined` even in a log declared `common`.
    order = (
        ("combined", "common", "vhost_combined")
        if fmt not in ("combined", "vhost_combined")
        else (
            fmt,
            *(other for other in CLF_FORMATS if other != fmt),
        )
    )
    for name in order:
        m = _RX[name].fullmatch(line)
        if m is None:
            continue
        groups = m.groups()
        vhost = None
        if name == "vhost_combined":
            vhost, groups = groups[0], groups[1:]
        client, _ident, _user, time_text, request, status, size = groups[:7]
        ts = parse_clf_time(time_text)
        if ts is None:
            continue
        referer = user_agent = None
        if name == "common":
            extras = groups[7]
        else:
            referer, user_agent, extras = _missing(groups[7]), _missing(groups[8]), groups[9]
        size_value = None if size == "-" else int(size)
        if size_value is not None and size_value > _MAX_INT64:
            continue
        method, path, query, protocol = split_request(request)
        parsed = ParsedLine(
            ts=ts,
            client=client,
            method=method,
            path=path,
            query=query,
            protocol=protocol,
            status=None if status == "-" else int(status),
            bytes=size_value,
            referer=referer,
            user_agent=user_agent,
        )
        if vhost is not None:
            parsed.host = vhost.rsplit(":", 1)[0].lower() or None
        if extras.strip():
            apply_extras(parsed, extras, layout if name == fmt else NO_EXTRAS)
        return parsed
    return None
