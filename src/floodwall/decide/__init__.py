"""Policy: findings to decisions, allowlists for the outlet's networks, monitors and verified crawlers."""

from floodwall.decide.allowlist import VERIFIED_CRAWLERS, Allowlist
from floodwall.decide.policy import Policy, PolicySettings

__all__ = ["VERIFIED_CRAWLERS", "Allowlist", "Policy", "PolicySettings"]
