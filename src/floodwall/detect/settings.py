"""The detection engine's settings: one frozen, validated object with documented, newsroom-safe defaults.

`config.Settings` hangs this in as its `[detect]` section; nothing in `floodwall.detect` reads anything else.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DetectSettings"]


class DetectSettings(BaseModel):
    """Thresholds of the four layers. Defaults were tuned on simulated seeds 1-3 and hold on unseen seeds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- windows -------------------------------------------------------------------------------------------------
    #: Seconds per client window (the "request set" of one client over a window, in Baskerville's words).
    window_s: int = Field(default=10, ge=1, le=600)

    # --- site level: rate against the baseline -------------------------------------------------------------------
    #: A minute is anomalous when its rate exceeds both `surge_ratio` x the baseline and baseline + `surge_mads` MADs.
    surge_ratio: float = Field(default=2.0, gt=1.0)
    surge_mads: float = Field(default=6.0, gt=0)
    #: Below this many requests per second nothing is a flood, whatever the ratio (a quiet site at night).
    min_flood_rps: float = Field(default=0.5, ge=0)
    #: Anomalous stretches closer than this are one incident (a test flood, a pause, the waves).
    merge_gap_s: int = Field(default=3600, ge=0)
    #: Stretches shorter than this are ignored (a burst of a few seconds is not an incident).
    min_surge_s: int = Field(default=20, ge=1)
    #: Trailing minutes of the rolling baseline, used while the log holds under `seasonal_days` of history.
    rolling_minutes: int = Field(default=180, ge=5)
    #: Days of history needed for a baseline by hour of day (and 14 for hour of week).
    seasonal_days: int = Field(default=3, ge=2)

    # --- client level --------------------------------------------------------------------------------------------
    #: Score (0..1) from which a client is an attacker; the policy challenges from 0.6 and bans from 0.85.
    attacker_score: float = Field(default=0.6, gt=0, le=1)
    #: An isolation forest is trained only with at least this many quiet client summaries; else rules alone.
    forest_min_quiet: int = Field(default=200, ge=10)
    forest_trees: int = Field(default=100, ge=10, le=1000)
    #: During a surge, a user agent or query scheme is *unknown* when its share of the surge's requests is
    #: `novelty_lift` times its share of quiet requests or more (quiet shares below `known_share` count as that).
    novelty_lift: float = Field(default=20.0, gt=1)
    known_share: float = Field(default=1e-4, gt=0, lt=1)
    #: A client is new when first seen at most this many seconds before the onset (or later).
    new_client_s: int = Field(default=300, ge=0)

    # --- fleet level ---------------------------------------------------------------------------------------------
    #: Fewest clients sharing a request shape that can make a fleet.
    min_fleet: int = Field(default=5, ge=2)
    #: A shape is over-represented when its share during the incident is this many times its quiet share.
    fleet_lift: float = Field(default=8.0, gt=1)

    # --- streaming -----------------------------------------------------------------------------------------------
    #: Seconds of raw rows kept for live judgement of the clients of a running surge.
    live_horizon_s: int = Field(default=60, ge=5, le=600)
    #: Consecutive seconds above the live threshold before a surge is declared.
    live_confirm_s: int = Field(default=3, ge=1, le=30)

    # --- breach attempts -----------------------------------------------------------------------------------------
    #: Run the CRS signatures (needs hyperscan and the rules); off, breach incidents are not reported.
    signatures: bool = True
    #: Hits of one client closer than this belong to one breach incident.
    breach_gap_s: int = Field(default=1800, ge=1)
    #: Fewest POSTs to a login form (or xmlrpc.php) by one client that make a brute force.
    bruteforce_min: int = Field(default=6, ge=2)
