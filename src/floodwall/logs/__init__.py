"""Reading access logs: formats and their detection, the chunked reader with its fast path and strict fallback,
and the follower of a live log. Everything here yields Request frames (`floodwall.model.REQUEST_SCHEMA`)."""

from floodwall.logs.follow import Follower, LineBatch, follow_requests
from floodwall.logs.formats import FORMATS, FormatGuess, sniff_format
from floodwall.logs.parse import BadLine, ChunkParser, ParseStats, fast_path_available
from floodwall.logs.reader import InputStats, LogReader, ProgressCallback, parse_bytes, read_ahead

__all__ = [
    "FORMATS",
    "BadLine",
    "ChunkParser",
    "Follower",
    "FormatGuess",
    "InputStats",
    "LineBatch",
    "LogReader",
    "ParseStats",
    "ProgressCallback",
    "fast_path_available",
    "follow_requests",
    "parse_bytes",
    "read_ahead",
    "sniff_format",
]
