"""Live judgement as a watcher runs it: batches cut by the clock as a log is written, a flood found within its first
second, readers of a breaking story left alone, the profile rebuilt beside the batch loop."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from detect.conftest import START, flood, readers
from floodwall.detect import DetectSettings, Engine
from floodwall.model import Finding
from floodwall.testing import FakeClock

SETTINGS = DetectSettings(signatures=False, live_confirm_requests=200)
QUIET_S = 60
ONSET = START + timedelta(seconds=QUIET_S)


def live_log(seed: int = 1) -> tuple[pl.DataFrame, set[str]]:
    """A minute of readers (about 400 lines a second), then a flood that brings it to 2.6 times that, at a second's
    start."""
    rng = np.random.default_rng(seed)
    quiet = readers(rng, START, QUIET_S + 10, 100.0)
    attack = flood(rng, ONSET, 10, 650.0, 10)
    frame = pl.concat([quiet, attack]).sort("ts", maintain_order=True)
    # Logs stamp whole seconds (nginx's $time_local): the part of a second gone is not in the line.
    frame = frame.with_columns(pl.col("ts").dt.truncate("1s"), pl.int_range(1, frame.height + 1).alias("line"))
    return frame, set(attack.get_column("client").unique().to_list())


def cut(frame: pl.DataFrame, written: pl.Series, phase_s: float) -> Iterator[tuple[datetime, pl.DataFrame]]:
    """Batches as a follower cuts them: every second at `phase_s` past the second, the lines written by then."""
    end = START + timedelta(seconds=phase_s)
    last = written.max()
    assert isinstance(last, datetime)
    while end <= last:
        begin = end - timedelta(seconds=1)
        yield end, frame.filter((written >= begin) & (written < end))
        end += timedelta(seconds=1)


def first_findings(engine: Engine, clock: FakeClock, batches: Iterator[tuple[datetime, pl.DataFrame]], lag_s: float):
    """(when the batch was read, findings) for the first batch with findings; the clock reads `lag_s` after the cut."""
    for read_at, batch in batches:
        clock.set(read_at + timedelta(seconds=lag_s))
        found: list[Finding] = engine.feed(batch)
        if found:
            return read_at, found
    return None, []


def written_times(frame: pl.DataFrame, seed: int = 2) -> pl.Series:
    """When each line was written: within its stamped second, uniformly (a log written as requests end)."""
    rng = np.random.default_rng(seed)
    offsets = pl.Series((rng.random(frame.height) * 1_000_000).astype(np.int64)).cast(pl.Duration("us"))
    return (frame.get_column("ts") + offsets).alias("written")


def live_flood_read_at_half_seconds(lag_s: float) -> tuple[set[str], datetime | None, list[Finding]]:
    """The live log cut half a second into each second, the clock `lag_s` after each cut: (attackers, when the
    first batch with findings was read, its findings)."""
    frame, attackers = live_log()
    clock = FakeClock(START)
    engine = Engine("example-news", SETTINGS, clock, history=False)
    read_at, found = first_findings(engine, clock, cut(frame, written_times(frame), 0.5), lag_s=lag_s)
    return attackers, read_at, found


def test_a_live_flood_is_found_half_a_second_into_its_first_second() -> None:
    attackers, read_at, found = live_flood_read_at_half_seconds(lag_s=0.0)
    # The batch read half a second into the flood holds half of its first second: projected, that is 2.6 times
    # the readers' rate, and the flood's addresses are judged on what they sent in that half second.
    assert read_at == ONSET + timedelta(seconds=0.5)
    assert found and {f.target for f in found} <= attackers


def test_a_log_replayed_later_waits_for_whole_seconds() -> None:
    # The same log fed a day later: the second being written is not the clock's, so its count so far is only a
    # lower bound, and the onset waits until enough of the flood's seconds have arrived.
    attackers, read_at, found = live_flood_read_at_half_seconds(lag_s=86_400.0)
    assert read_at is not None and read_at > ONSET + timedelta(seconds=0.5)
    assert found and {f.target for f in found} <= attackers


def test_a_log_stamped_by_a_clock_ahead_of_ours_is_not_projected() -> None:
    # Lines stamped up to 0.7 s in the watcher's future (another machine's clock): a line from the future turns
    # the projection off, so no partial second is ever taken for more than it holds.
    attackers, read_at, found = live_flood_read_at_half_seconds(lag_s=-0.7)
    assert read_at is not None and read_at > ONSET + timedelta(seconds=0.5)
    assert {f.target for f in found} <= attackers


def test_quiet_seconds_read_early_never_start_a_surge() -> None:
    # Readers only, each batch read a quarter of a second into its newest second: projections of noisy partial
    # seconds must not make a surge of them.
    rng = np.random.default_rng(3)
    frame = readers(rng, START, 240, 100.0).with_columns(pl.col("ts").dt.truncate("1s"))
    written = written_times(frame, seed=4)
    clock = FakeClock(START)
    engine = Engine("example-news", SETTINGS, clock, history=False)
    for read_at, batch in cut(frame, written, 0.25):
        clock.set(read_at)
        assert engine.feed(batch) == []
        assert engine._live is not None and engine._live.surge_start is None


def profile_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("floodwall-profile-")]


def test_a_breaking_story_fed_live_with_background_profiles_convicts_no_reader(crowd_site) -> None:
    frame = crowd_site.frame.filter(
        pl.col("ts").is_between(crowd_site.onset - timedelta(minutes=20), crowd_site.onset + timedelta(minutes=3))
    )
    engine = Engine("example-news", DetectSettings(signatures=False), history=False, background_profile=True)
    found: list[Finding] = []
    for _, part in frame.group_by_dynamic("ts", every="2s", start_by="datapoint"):
        found += engine.feed(part)
    engine.close()
    assert not profile_threads(), "close() joins the profile builder"
    assert engine._live is not None and engine._live.surge_start is not None, "the crowd is a surge"
    assert found == [], "no reader of the breaking story is found hostile"


def test_a_flood_fed_live_with_background_profiles_is_found(flood_site) -> None:
    frame = flood_site.frame.filter(
        pl.col("ts").is_between(flood_site.onset - timedelta(minutes=20), flood_site.onset + timedelta(minutes=1))
    )
    engine = Engine("example-news", DetectSettings(signatures=False), history=False, background_profile=True)
    first = None
    for (second,), part in frame.group_by_dynamic("ts", every="1s", start_by="datapoint"):
        found = engine.feed(part)
        if found and first is None:
            first = second
            assert {f.target for f in found} <= flood_site.attackers
    engine.close()
    assert not profile_threads()
    assert first is not None and (first - flood_site.onset).total_seconds() <= 10


def test_a_batch_holding_the_quiet_minute_and_the_flood_profiles_only_the_quiet() -> None:
    # A watcher that fell behind, or a log written in bulk, hands the engine quiet seconds and a flood in one batch:
    # the windows closed in it that overlap the flood must not be learnt as quiet (the flood would look normal).
    frame, attackers = live_log()
    engine = Engine("example-news", SETTINGS, FakeClock(START + timedelta(days=1)), history=False)
    found = engine.feed(frame)
    assert {f.target for f in found} == attackers
    live = engine._live
    assert live is not None and live.surge_start is not None
    learnt = pl.concat(live._quiet).get_column("window").max()
    assert isinstance(learnt, datetime)
    assert learnt + timedelta(seconds=SETTINGS.window_s) <= live.surge_start, "no window of the flood is learnt"


def test_clients_of_the_last_seconds_are_judged_when_a_window_has_just_opened() -> None:
    # The flood's last lines fall a third of a second into a new ten-second window. Every client with a request in
    # the last seconds is judged, not only those that sent in that third of a second (most of a hundred).
    rng = np.random.default_rng(5)
    quiet = readers(rng, START, QUIET_S + 10, 100.0)
    attack = flood(rng, ONSET, 11, 650.0, 100).filter(pl.col("ts") < ONSET + timedelta(seconds=10.3))
    frame = pl.concat([quiet, attack]).sort("ts", maintain_order=True).with_columns(pl.col("ts").dt.truncate("1s"))
    engine = Engine("example-news", SETTINGS, FakeClock(START + timedelta(days=1)), history=False)
    found = engine.feed(frame)
    assert {f.target for f in found} == set(attack.get_column("client").unique().to_list())


def test_a_live_judge_starts_importing_scikit_learn_before_its_first_profile() -> None:
    # The first profile fits an isolation forest; importing scikit-learn then would hold the first judgement of a
    # flood found at once (a watcher started on a log written in bulk) for a second or more.
    code = (
        "import sys, time\n"
        "from floodwall.detect import Engine\n"
        "engine = Engine('example-news', live=True, history=False)\n"
        "deadline = time.monotonic() + 30\n"
        "while 'sklearn.ensemble' not in sys.modules and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "print('sklearn.ensemble' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "True"
