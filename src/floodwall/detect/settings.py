"""The detection engine's settings live in `floodwall.config` as its `[detect]` section (validated once, at load,
with every other section); this module hands the name on to `floodwall.detect`."""

from floodwall.config import DetectSettings

__all__ = ["DetectSettings"]
