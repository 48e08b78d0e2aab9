"""Floodwall keeps a newsroom's website online under HTTP floods, blocks the attackers and documents the attack."""

import os

__version__ = "0.1.0"

# Polars allocates through jemalloc, which by default gives freed pages back to the kernel within seconds; `analyze`
# then faults them in again, zeroed, batch after batch (1.1M page faults and a quarter of its CPU in the kernel at
# 5M lines). Kept for 30 s in one arena, the same run takes 0.4M faults and about 3 CPU-s less, for about 60 MB more
# peak memory (benchmarks/bench_analyze.py). Read when Polars is first imported; a setting of the user's own wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:30000,muzzy_decay_ms:30000,narenas:1")
# Polars 2 runs `LazyFrame.collect()` on its streaming engine unless told otherwise: a small query there costs about
# ten times the CPU of the in-memory engine (320 against 35 µs), and detection and the forensic account run thousands
# of them per batch (one 50k-row batch of `Engine.feed`: 2.3G instructions streaming, 1.5G in memory, callgrind).
# Our frames are batches already in memory. Read at each collect; a setting of the user's own wins.
os.environ.setdefault("POLARS_ENGINE_AFFINITY", "in-memory")

__all__ = ["__version__"]
