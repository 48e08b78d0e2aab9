"""Scenarios of benign traffic and attack campaigns, written as nginx access logs with their ground truth.

`load_scenario` reads a built-in scenario by name or a TOML file; `simulate` writes `<site>.access.log` per site and
`truth.json` (docs/truth.md) into a folder, streaming, with progress reported through a callback.
"""

from floodwall.simulate.builtin import BUILTIN
from floodwall.simulate.engine import SimulationProgress, SimulationSummary, simulate
from floodwall.simulate.scenario import Scenario, load_scenario, scenario_from_mapping

__all__ = [
    "BUILTIN",
    "Scenario",
    "SimulationProgress",
    "SimulationSummary",
    "load_scenario",
    "scenario_from_mapping",
    "simulate",
]
