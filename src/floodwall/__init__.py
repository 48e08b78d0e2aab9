"""Floodwall keeps a newsroom's website online under HTTP floods, blocks the attackers and documents the attack."""

import os

__version__ = "0.1.0"

# Polars allocates through jemalloc, which by default gives freed pages back to the kernel within seconds; `analyze`
# then faults them in again, zeroed, batch after batch (1.1M page faults and a quarter of its CPU in the kernel at
# 5M lines). Kept for 30 s in one arena, the same run takes 0.4M faults, 1.4 CPU-s and 0.7 s less, for about 40 MB
# more peak memory (5M lines, 3 runs each way). Read when Polars is first imported; a setting of the user's own wins.
# (Polars' in-memory engine for lazy queries was tried too: no less CPU than its default, 400 MB more peak memory.)
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:30000,muzzy_decay_ms:30000,narenas:1")

__all__ = ["__version__"]
