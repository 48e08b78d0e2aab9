"""The built-in scenarios: TOML files shipped in `floodwall/simulate/scenarios/`, read by the same code as users' files.

- `hano-like`: one actor, three outlets weeks apart, the pattern issue 3 calls IPI's: a three-day, outage-class
  flood first, then milder floods with breach attempts, a marker word and a message left in the traffic.
- `residential-proxies`: one flood from thousands of residential addresses, each as slow as a reader, then
  credential stuffing from the same kind of pool.
- `flash-crowd`: breaking news on two outlets and no attack at all; everything in it must stay unblocked.
- `scanner`: vulnerability scanners and a credential stuffer against one outlet, no flood.
- `coalition`: two actors, four outlets, incidents overlapping in time, and a flash crowd in between.

Each file is also a worked example for people writing their own scenario.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any, Final

__all__ = ["BUILTIN", "builtin_mapping", "builtin_text"]

#: The built-in scenarios' names, each the stem of a file in `floodwall/simulate/scenarios/`.
BUILTIN: Final = ("coalition", "flash-crowd", "hano-like", "residential-proxies", "scanner")


def builtin_text(name: str) -> str:
    """The TOML text of a built-in scenario."""
    return resources.files("floodwall.simulate").joinpath("scenarios", f"{name}.toml").read_text(encoding="utf-8")


def builtin_mapping(name: str) -> dict[str, Any]:
    """A built-in scenario, parsed but not yet validated."""
    return tomllib.loads(builtin_text(name))
