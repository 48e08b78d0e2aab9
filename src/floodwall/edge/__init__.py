"""The edge: a protective reverse proxy in front of one origin (`floodwall edge`).

Its per-request steps are separate, ordered parts listed in one place (`pipeline.py`): client address, allowlist,
ban, limits, challenge, inline signatures, cache, origin. Everything that thinks runs on one-second batches off the
request path (`live.py`). This package imports nothing at import time so that `floodwall.config` can read
`floodwall.edge.settings` without pulling in the server.
"""
