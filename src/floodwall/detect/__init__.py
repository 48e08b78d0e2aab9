"""Detection: site-level onset, client and fleet behaviour, breach signatures, the flash-crowd guard."""

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
