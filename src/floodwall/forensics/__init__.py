"""Incidents in depth: the forensic account of a site's logs (timeline, scope, mode, infrastructure, breach attempts,
evidence, methods and limits), built from a second, aggregating pass over the Request batches after detection.

The shareable bundle (`floodwall.forensics.bundle`) and cross-site links live beside it.
"""

from floodwall.forensics.build import Forensics, InputFacts, account_from_frames
from floodwall.forensics.bundle import build_bundle, coalition_key, read_bundle, shareable_bundle
from floodwall.forensics.fingerprints import Fingerprint, FingerprintAccumulator
from floodwall.forensics.spool import FrameSpool
from floodwall.report.account import Account, Charts, mask_addresses

__all__ = [
    "Account",
    "Charts",
    "Fingerprint",
    "FingerprintAccumulator",
    "Forensics",
    "FrameSpool",
    "InputFacts",
    "account_from_frames",
    "build_bundle",
    "coalition_key",
    "mask_addresses",
    "read_bundle",
    "shareable_bundle",
]
