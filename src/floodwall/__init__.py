"""Floodwall keeps a newsroom's website online under HTTP floods, blocks the attackers and documents the attack."""

__version__ = "0.1.0"

__all__ = ["__version__"]
