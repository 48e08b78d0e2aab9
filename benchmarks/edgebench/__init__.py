"""The machinery of `benchmarks/bench_edge.py`: origins, fronts (nginx, `floodwall edge`), load generators, tables.

Everything listens on and sends to loopback only; every run is bounded in time.
"""
