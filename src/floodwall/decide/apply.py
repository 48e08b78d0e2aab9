"""One batch's findings to the decisions worth storing: shared by `watch` (log follower) and the edge's live loop.

Both jobs do the same after `Engine.feed`: look up each convicted client's user agent in the batch (so the policy
can exempt verified crawlers), let `Policy.decide` pick the action, reasons and TTL, and keep only what changes
something: an `observe` changes nothing, and a target already held at the same or a stronger action is no news.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

import polars as pl

from floodwall.decide.policy import Policy
from floodwall.model import Action, Decision, Finding

__all__ = ["SEVERITY", "new_decisions"]

#: How strong each action is, for "held at the same or a stronger action".
SEVERITY: Final = {Action.OBSERVE: 0, Action.CHALLENGE: 1, Action.BAN: 2}


def new_decisions(
    policy: Policy,
    frame: pl.DataFrame,
    findings: list[Finding],
    now: datetime,
    *,
    site: str,
    held: Callable[[str], Action | None],
) -> list[Decision]:
    """The decisions to store for `findings` of `frame`; `held(target)` is the action already in force, or None."""
    if not findings:
        return []
    targets = {f.target for f in findings}
    agents = dict(
        frame.filter(pl.col("client").is_in(targets)).group_by("client").agg(pl.col("user_agent").last()).iter_rows()
    )
    decided = policy.decide(findings, now, site=site, user_agents=agents)
    fresh = []
    for decision in decided:
        if decision.action is Action.OBSERVE:
            continue
        current = held(decision.target)
        if current is not None and SEVERITY[current] >= SEVERITY[decision.action]:
            continue
        fresh.append(decision)
    return fresh
