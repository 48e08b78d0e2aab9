"""Breach-attempt signatures: the OWASP Core Rule Set's request rules (from Debian's `modsecurity-crs`) and
Floodwall's own few, compiled into hyperscan databases and matched over Request frames.

    hits = match_requests(frame)            # one row per (request, rule): rule id, field, matched text, score
    hits = match_request("GET", "/", "id=1' or '1'='1", user_agent="sqlmap/1.7")   # one request, for the edge
"""

from __future__ import annotations

from floodwall.detect.signatures.api import Hit, match_request, match_requests
from floodwall.detect.signatures.engine import HIT_SCHEMA, SignatureEngine, load_engine
from floodwall.detect.signatures.ruleset import DEFAULT_CRS_RULES

__all__ = [
    "DEFAULT_CRS_RULES",
    "HIT_SCHEMA",
    "Hit",
    "SignatureEngine",
    "load_engine",
    "match_request",
    "match_requests",
]
