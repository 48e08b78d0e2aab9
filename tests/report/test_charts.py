"""The report's SVG charts: what a reader sees (and a screen reader says) for known series."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import polars as pl

from floodwall.report.account import Charts
from floodwall.report.charts import chart_fragments
from floodwall.report.svg import nice_ticks, time_ticks

_UTC = pl.Datetime("us", "UTC")
T0 = datetime(2024, 10, 29, 6, 0, tzinfo=UTC)


def _charts(traffic: pl.DataFrame, networks: pl.DataFrame | None = None) -> Charts:
    minutes = [T0 + timedelta(minutes=m) for m in range(10)]
    status = pl.DataFrame(
        {"bucket": minutes, "s2xx": [1.0] * 10, "s3xx": [0.0] * 10, "s4xx": [0.5] * 10, "s5xx": [0.0] * 10}
        | {"s499": [0.0] * 10, "cache_hit": [0.0] * 10, "cache_miss": [0.0] * 10, "rt_mean": [None] * 5 + [0.25] * 5},
        schema_overrides={"bucket": _UTC, "rt_mean": pl.Float64},
    )
    vectors = pl.DataFrame(
        {"bucket": minutes * 2, "vector": ["get-flood"] * 10 + ["cache-bust"] * 10, "rps": [2.0] * 20},
        schema_overrides={"bucket": _UTC},
    )
    empty_networks = pl.DataFrame(
        schema={"label": pl.String, "country": pl.String, "asn": pl.Int64, "addresses": pl.Int64, "requests": pl.Int64}
    )
    return Charts(
        traffic=traffic,
        bucket_s=60,
        vectors=vectors,
        status=status,
        networks=networks if networks is not None else empty_networks,
        countries=pl.DataFrame(schema={"country": pl.String, "addresses": pl.Int64, "requests": pl.Int64}),
        shading=[
            {"start": "2024-10-29T06:02:00Z", "end": "2024-10-29T06:06:00Z", "label": "wave-1", "kind": "phase"},
            {"start": "2024-10-29T06:06:00Z", "end": "2024-10-29T06:09:00Z", "label": "tail", "kind": "phase"},
        ],
    )


def _traffic(minutes: list[int], attack: list[float], benign: list[float]) -> pl.DataFrame:
    return pl.DataFrame(
        {"bucket": [T0 + timedelta(minutes=m) for m in minutes], "benign_rps": benign, "attack_rps": attack},
        schema_overrides={"bucket": _UTC},
    )


def _area_ys(svg: str, name: str) -> list[float]:
    path = re.search(r'<path class="area" fill="[^"]+" d="M([^"]+) L[^"]+ Z"><title>' + name + "</title>", svg)
    assert path is not None, name
    return [float(point.split(",")[1]) for point in path.group(1).split()]


def test_the_traffic_chart_says_when_the_busiest_moment_was_and_names_the_phases() -> None:
    traffic = _traffic(list(range(10)), [0, 0, 5, 40, 8, 8, 3, 3, 0, 0], [1.0] * 10)
    svg = chart_fragments(_charts(traffic))["traffic"]
    description = svg.split('<desc id="chart-traffic-desc">')[1].split("</desc>")[0]
    assert "41 requests/s at 2024-10-29 06:03 UTC, of which 40 attack" in description
    assert "wave-1 (2024-10-29T06:02:00Z to 2024-10-29T06:06:00Z)" in description and "tail (" in description
    assert svg.count('<g class="band">') == 2


def test_attack_is_stacked_on_top_of_other_traffic() -> None:
    traffic = _traffic(list(range(4)), [2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0])
    svg = chart_fragments(_charts(traffic))["traffic"]
    benign, attack = _area_ys(svg, "other traffic"), _area_ys(svg, "attack")
    assert all(a < b for a, b in zip(attack, benign, strict=True))  # SVG's y grows downwards: attack sits higher


def test_a_silence_in_the_log_drops_to_zero_instead_of_being_bridged() -> None:
    traffic = _traffic([0, 1, 8, 9], [5.0, 5.0, 5.0, 5.0], [0.0] * 4)
    svg = chart_fragments(_charts(traffic))["traffic"]
    attack = _area_ys(svg, "attack")
    assert len(attack) == 10  # one point per minute, the six silent ones included
    assert attack[4] == max(attack)  # y of a zero rate is the axis, the lowest point on the page


def test_a_missing_request_time_breaks_the_line() -> None:
    traffic = _traffic(list(range(10)), [1.0] * 10, [1.0] * 10)
    svg = chart_fragments(_charts(traffic))["status"]
    line = re.search(r'd="([^"]+)"><title>mean request time \(s\)</title>', svg)
    assert line is not None
    assert line.group(1).count("M") == 1 and len(line.group(1).split()) == 5  # the five timed minutes only


def test_network_names_are_escaped_and_long_ones_shortened() -> None:
    networks = pl.DataFrame(
        {
            "label": ["AS64500 <script>alert(1)</script> & Co (NL)", "AS64501 " + "x" * 80 + " (DE)"],
            "country": ["NL", "DE"],
            "asn": [64500, 64501],
            "addresses": [12, 3],
            "requests": [900, 40],
        }
    )
    traffic = _traffic([0], [1.0], [1.0])
    svg = chart_fragments(_charts(traffic, networks))["networks"]
    assert "<script>" not in svg and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in svg
    drawn = re.search(r">(AS64501 [^<]*)</text>", svg)
    assert drawn is not None and drawn.group(1).endswith("…") and len(drawn.group(1)) <= 44
    assert "x" * 80 + " (DE): 3 addresses" in svg  # the hover title keeps it whole
    assert "12 addresses, 900 requests" in svg


def test_an_empty_log_gets_a_chart_that_says_so() -> None:
    traffic = _traffic([], [], [])
    fragments = chart_fragments(_charts(traffic))
    assert "No request was read" in fragments["traffic"]
    assert fragments["status"] == fragments["vectors"] == fragments["networks"] == ""


def test_axis_ticks_are_round_numbers_and_times() -> None:
    assert nice_ticks(7.3) == [0, 2, 4, 6, 8]
    assert nice_ticks(0.03) == [0, 0.01, 0.02, 0.03]
    assert nice_ticks(0) == [0, 1]
    start = datetime(2024, 10, 28, tzinfo=UTC).timestamp()
    days = time_ticks(start, start + 5 * 86400)
    assert [label for _, label in days] == [
        f"2024-{day}" for day in ("10-28", "10-29", "10-30", "10-31", "11-01", "11-02")
    ]
    two_days = time_ticks(start, start + 2 * 86400)
    assert [label for _, label in two_days][:2] == ["10-28 00:00", "10-28 06:00"]
    hours = time_ticks(start + 3600 * 6 + 17, start + 3600 * 9)
    assert [label for _, label in hours] == ["06:30", "07:00", "07:30", "08:00", "08:30", "09:00"]
