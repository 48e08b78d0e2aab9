"""JSON-lines access logs: nginx `escape=json` templates, Caddy's access log, CDN log pushes.

Field names are looked up in a small table of the common spellings (dotted paths reach into nested objects, as in
Caddy's `request.headers.User-Agent`), after any names the config gives (`[logs] json_fields`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Final

from floodwall.logs import clf

__all__ = ["DEFAULT_JSON_FIELDS", "JsonParser"]

DEFAULT_JSON_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "client": ("remote_addr", "request.client_ip", "request.remote_ip", "client_ip", "remote_ip", "ip", "ClientIP"),
    "ts": ("time_iso8601", "time_local", "msec", "ts", "timestamp", "@timestamp", "time", "EdgeStartTimestamp"),
    "request": ("request",),
    "method": ("request_method", "request.method", "method", "ClientRequestMethod"),
    "uri": ("request_uri", "request.uri", "uri", "ClientRequestURI"),
    "protocol": ("server_protocol", "request.proto", "protocol", "ClientRequestProtocol"),
    "status": ("status", "EdgeResponseStatus"),
    "bytes": ("body_bytes_sent", "size", "bytes_sent", "EdgeResponseBytes"),
    "referer": ("http_referer", "request.headers.Referer", "referer", "ClientRequestReferer"),
    "user_agent": ("http_user_agent", "request.headers.User-Agent", "user_agent", "ClientRequestUserAgent"),
    "host": ("host", "http_host", "request.host", "server_name", "ClientRequestHost"),
    "request_time": ("request_time", "duration"),
    "upstream_time": ("upstream_response_time",),
    "upstream_status": ("upstream_status",),
    "cache_status": ("upstream_cache_status", "cache_status", "CacheCacheStatus"),
    "forwarded_for": ("http_x_forwarded_for", "request.headers.X-Forwarded-For", "ClientXRequestedWith"),
}
_EPOCH_MS_THRESHOLD: Final = 100_000_000_000  # above this an epoch number is in milliseconds


def _get(record: Mapping[str, object], path: str) -> object:
    if path in record:
        return record[path]
    node: object = record
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _text(value: object) -> str | None:
    if isinstance(value, list):  # Caddy logs header values as lists
        value = ", ".join(str(v) for v in value) if value else None
    if value is None or isinstance(value, Mapping) or value in ("", "-"):
        return None
    return str(value)


def _number(value: object, kind: type[int] | type[float]) -> int | float | None:
    text = _text(value)
    if text is None:
        return None
    text = text.rsplit(", ", 1)[-1].rsplit(" : ", 1)[-1]
    try:
        number = float(text)
    except ValueError:
        return None
    if kind is int:
        return int(number) if number.is_integer() and abs(number) < 2**63 else None
    return number


class JsonParser:
    """Parses one JSON line into `clf.ParsedLine`, or says why it cannot."""

    def __init__(self, extra_fields: Mapping[str, str] | None = None, tz: tzinfo | None = None) -> None:
        self.fields: dict[str, tuple[str, ...]] = dict(DEFAULT_JSON_FIELDS)
        for column, name in (extra_fields or {}).items():
            self.fields[column] = (name, *self.fields.get(column, ()))
        self.tz = tz
        self.naive_times = 0  # times that carried no zone and were read in `tz` (or UTC)

    def _first(self, record: Mapping[str, object], column: str) -> object:
        for name in self.fields.get(column, ()):
            value = _get(record, name)
            if value is not None:
                return value
        return None

    def _time(self, value: object) -> datetime | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            seconds = value / 1000 if value > _EPOCH_MS_THRESHOLD else value
            try:
                return datetime.fromtimestamp(seconds, UTC)
            except (OverflowError, OSError, ValueError):
                return None
        if not isinstance(value, str):
            return None
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except ValueError:
            pass
        parsed = clf.parse_clf_time(value)
        if parsed is not None:
            return parsed
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is None:
            self.naive_times += 1
            moment = moment.replace(tzinfo=self.tz or UTC)
        return moment.astimezone(UTC)

    def parse(self, line: str) -> clf.ParsedLine | str:
        """The parsed line, or a short reason it could not be parsed."""
        try:
            record = json.loads(line)
        except ValueError:
            return "not JSON"
        if not isinstance(record, dict):
            return "not a JSON object"
        ts = self._time(self._first(record, "ts"))
        if ts is None:
            return "no readable time"
        client = _text(self._first(record, "client"))
        if client is None:
            return "no client address"
        request = _text(self._first(record, "request"))
        if request is not None and " " in request:
            method, path, query, protocol = clf.split_request(request)
        else:
            uri = _text(self._first(record, "uri")) or request
            method = _text(self._first(record, "method"))
            protocol = _text(self._first(record, "protocol"))
            path, query = None, None
            if uri is not None:
                path, sep, rest = uri.partition("?")
                query = rest if sep else None
        status = _number(self._first(record, "status"), int)
        size = _number(self._first(record, "bytes"), int)
        upstream_status = _number(self._first(record, "upstream_status"), int)
        host = _text(self._first(record, "host"))
        return clf.ParsedLine(
            ts=ts,
            client=client,
            method=method,
            path=path,
            query=query,
            protocol=protocol,
            status=int(status) if status is not None and 0 <= status < 1000 else None,
            bytes=int(size) if size is not None else None,
            referer=_text(self._first(record, "referer")),
            user_agent=_text(self._first(record, "user_agent")),
            host=host.rsplit(":", 1)[0].lower() if host is not None else None,
            request_time=_number(self._first(record, "request_time"), float),
            upstream_time=_number(self._first(record, "upstream_time"), float),
            upstream_status=int(upstream_status)
            if upstream_status is not None and 0 <= upstream_status < 1000
            else None,
            cache_status=_text(self._first(record, "cache_status")),
            forwarded_for=_text(self._first(record, "forwarded_for")),
        )
