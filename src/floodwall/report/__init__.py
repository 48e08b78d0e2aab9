"""Writers of Floodwall's outputs: report.json, blocklist.txt, evidence.json (and, as they land, HTML, Markdown,
STIX and the shareable bundle). Every file is written to a temporary name and renamed: never half-written."""

from floodwall.report.atomic import atomic_path, write_atomic, write_json

__all__ = ["atomic_path", "write_atomic", "write_json"]
