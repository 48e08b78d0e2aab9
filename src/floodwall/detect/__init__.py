"""Detection: site-level onset, client and fleet behaviour, breach signatures, the flash-crowd guard.

The names below are imported on first use (PEP 562), not with the package: the edge's workers need only
`floodwall.detect.signatures`, and importing the engine would pull in scikit-learn, seconds of start-up per worker.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from floodwall.detect.engine import Engine, SignatureMatcher
    from floodwall.detect.result import ATTACKER_SCHEMA, TIMELINE_SCHEMA, DetectionResult, SurgeVerdict
    from floodwall.detect.settings import DetectSettings

__all__ = [
    "ATTACKER_SCHEMA",
    "TIMELINE_SCHEMA",
    "DetectSettings",
    "DetectionResult",
    "Engine",
    "SignatureMatcher",
    "SurgeVerdict",
]

_HOMES = {
    "Engine": "engine",
    "SignatureMatcher": "engine",
    "ATTACKER_SCHEMA": "result",
    "TIMELINE_SCHEMA": "result",
    "DetectionResult": "result",
    "SurgeVerdict": "result",
    "DetectSettings": "settings",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'floodwall.detect' has no attribute {name!r}")
    return getattr(importlib.import_module(f"floodwall.detect.{home}"), name)
