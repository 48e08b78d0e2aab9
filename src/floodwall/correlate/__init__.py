"""Correlate: link incidents of several outlets into campaigns, from their pseudonymised bundles.

    result = correlate([Path("a/bundle.json"), Path("b/bundle.json")], Path("campaigns/"), key=None)
    result.document["campaigns"]      # CONTRACT.md's campaigns, each link with the evidence that made it

`inputs` reads and checks the files, `evidence` scores every pair and applies the linking rule, `campaigns` groups
links into campaigns, `html` and `stix` write the page and the STIX 2.1 export, `job` ties them together.
"""

from floodwall.correlate.evidence import LINK_THRESHOLD, WEIGHTS, Pairwise, pairwise
from floodwall.correlate.inputs import Source, load_sources
from floodwall.correlate.job import CorrelationResult, correlate

__all__ = [
    "LINK_THRESHOLD",
    "WEIGHTS",
    "CorrelationResult",
    "Pairwise",
    "Source",
    "correlate",
    "load_sources",
    "pairwise",
]
