"""The built-in scenarios, as the mappings a scenario TOML file would hold (validated by the same code).

- `hano-like`: one actor, three outlets weeks apart, the pattern Deflect and IPI documented against Hungarian and
  Balkan independent media in 2023: a three-day, outage-class flood first, then milder floods with breach attempts,
  a marker word and a message left in the traffic.
- `residential-proxies`: one flood from thousands of residential addresses, each as slow as a reader, then
  credential stuffing from the same kind of pool.
- `flash-crowd`: breaking news on two outlets and no attack at all; everything in it must stay unblocked.
- `scanner`: vulnerability scanners and a credential stuffer against one outlet, no flood.
- `coalition`: two actors, four outlets, incidents overlapping in time, and a flash crowd in between.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["BUILTIN"]

Mapping = dict[str, Any]


def _site(
    name: str, host: str, scheme: str, language: str, zone: str, country: str, start: str, end: str, **more: Any
) -> Mapping:
    return {
        "name": name,
        "host": host,
        "url_scheme": scheme,
        "language": language,
        "timezone": zone,
        "country": country,
        "start": start,
        "end": end,
        **more,
    }


def hano_like() -> Mapping:
    return {
        "name": "hano-like",
        "description": "One actor, three outlets weeks apart: a three-day flood, then milder floods, breach attempts.",
        "sites": [
            _site(
                "szabad-hang",
                "szabadhang.hu",
                "wordpress",
                "hu",
                "Europe/Budapest",
                "HU",
                "2024-10-28T00:00:00Z",
                "2024-11-02T00:00:00Z",
                page_views_per_day=60_000,
                capacity_rps=18,
            ),
            _site(
                "istina-danas",
                "istinadanas.rs",
                "dated-slug",
                "sr",
                "Europe/Belgrade",
                "RS",
                "2024-11-18T00:00:00Z",
                "2024-11-20T00:00:00Z",
                page_views_per_day=35_000,
                diaspora=["DE", "AT", "US"],
            ),
            _site(
                "delta-press",
                "deltapress.ro",
                "article-html",
                "ro",
                "Europe/Bucharest",
                "RO",
                "2024-12-02T00:00:00Z",
                "2024-12-04T00:00:00Z",
                page_views_per_day=30_000,
                diaspora=["DE", "GB"],
            ),
        ],
        "campaigns": [
            {
                "id": "hano",
                "actor": "the Hano actor",
                "pool": "mixed",
                "countries": ["BR", "VN", "ID", "IN", "TR", "RU"],
                "user_agents": "mixed",
                "user_agent_count": 24,
                "marker": "hano",
                "message": "Stop spreading lies. Hano was here",
                "incidents": [
                    {
                        "site": "szabad-hang",
                        "start": "2024-10-29T06:40:00Z",
                        "duration_minutes": 3 * 1440,
                        "vectors": ["get-flood", "cache-bust", "random-path"],
                        "peak_rps": 40,
                        "addresses": 600,
                        "waves": 5,
                        "tail_share": 0.12,
                        "reuse": 0.6,
                    },
                    {
                        "site": "istina-danas",
                        "start": "2024-11-18T17:05:00Z",
                        "duration_minutes": 190,
                        "vectors": ["get-flood", "search-flood"],
                        "peak_rps": 25,
                        "addresses": 300,
                        "reuse": 0.5,
                    },
                    {
                        "site": "istina-danas",
                        "kind": "scan",
                        "start": "2024-11-19T09:12:00Z",
                        "duration_minutes": 42,
                        "vectors": ["scan", "sqli", "xss"],
                        "peak_rps": 3,
                        "addresses": 2,
                        "reuse": 1.0,
                        "marker_share": 0,
                    },
                    {
                        "site": "delta-press",
                        "start": "2024-12-02T15:30:00Z",
                        "duration_minutes": 130,
                        "vectors": ["heavy-page", "cache-bust"],
                        "peak_rps": 20,
                        "addresses": 250,
                        "reuse": 0.5,
                    },
                    {
                        "site": "delta-press",
                        "kind": "bruteforce",
                        "start": "2024-12-03T02:10:00Z",
                        "duration_minutes": 95,
                        "vectors": ["login-bruteforce"],
                        "peak_rps": 1.5,
                        "addresses": 40,
                        "reuse": 0.5,
                        "marker_share": 0,
                    },
                    {
                        "site": "delta-press",
                        "kind": "exploit",
                        "start": "2024-12-03T03:55:00Z",
                        "duration_minutes": 18,
                        "vectors": ["path-traversal", "rce"],
                        "peak_rps": 1.2,
                        "addresses": 3,
                        "reuse": 1.0,
                        "marker_share": 0,
                    },
                ],
            }
        ],
    }


def residential_proxies() -> Mapping:
    return {
        "name": "residential-proxies",
        "description": "Thousands of residential proxies, each no faster than a reader; then credential stuffing.",
        "sites": [
            _site(
                "kapu-hirek",
                "kapuhirek.hu",
                "wordpress",
                "hu",
                "Europe/Budapest",
                "HU",
                "2024-11-04T00:00:00Z",
                "2024-11-06T00:00:00Z",
                page_views_per_day=50_000,
            ),
        ],
        "campaigns": [
            {
                "id": "proxy-flood",
                "actor": "a proxy-network renter",
                "pool": "residential",
                "user_agents": "browser-like",
                "user_agent_count": 40,
                "marker": "zeus",
                "message": "Free Palestine from fake news",
                "incidents": [
                    {
                        "site": "kapu-hirek",
                        "start": "2024-11-04T18:20:00Z",
                        "duration_minutes": 360,
                        "vectors": ["get-flood", "cache-bust", "search-flood"],
                        "peak_rps": 50,
                        "per_address_rps": 0.03,
                        "rotation_minutes": 30,
                        "marker_share": 0.005,
                    },
                    {
                        "site": "kapu-hirek",
                        "kind": "bruteforce",
                        "start": "2024-11-05T07:00:00Z",
                        "duration_minutes": 240,
                        "vectors": ["login-bruteforce", "xmlrpc-abuse"],
                        "peak_rps": 1.5,
                        "per_address_rps": 0.005,
                        "rotation_minutes": 20,
                        "reuse": 0.2,
                        "marker_share": 0,
                    },
                ],
            }
        ],
    }


def flash_crowd() -> Mapping:
    return {
        "name": "flash-crowd",
        "description": "Breaking news on two outlets and no attack: nothing here may be blocked.",
        "sites": [
            _site(
                "szabad-hang",
                "szabadhang.hu",
                "wordpress",
                "hu",
                "Europe/Budapest",
                "HU",
                "2024-11-06T00:00:00Z",
                "2024-11-08T00:00:00Z",
                page_views_per_day=45_000,
            ),
            _site(
                "istina-danas",
                "istinadanas.rs",
                "dated-slug",
                "sr",
                "Europe/Belgrade",
                "RS",
                "2024-11-06T00:00:00Z",
                "2024-11-08T00:00:00Z",
                page_views_per_day=30_000,
            ),
        ],
        "flash_crowds": [
            {
                "site": "szabad-hang",
                "start": "2024-11-06T19:42:00Z",
                "multiplier": 12,
                "rise_minutes": 6,
                "duration_minutes": 200,
                "articles": 2,
            },
            {
                "site": "istina-danas",
                "start": "2024-11-07T10:15:00Z",
                "multiplier": 18,
                "rise_minutes": 10,
                "duration_minutes": 240,
                "articles": 1,
            },
        ],
    }


def scanner() -> Mapping:
    return {
        "name": "scanner",
        "description": "Vulnerability scanners and a credential stuffer against one outlet; no flood.",
        "sites": [
            _site(
                "nasha-pravda",
                "nashapravda.org",
                "lang-prefix",
                "be",
                "Europe/Vilnius",
                "BY",
                "2024-11-12T00:00:00Z",
                "2024-11-13T00:00:00Z",
                page_views_per_day=25_000,
                diaspora=["DE", "GB", "US", "PL"],
                diaspora_share=0.45,
            ),
        ],
        "campaigns": [
            {
                "id": "scanners",
                "actor": "a scanning operator",
                "pool": "hosting",
                "user_agents": "tools",
                "incidents": [
                    {
                        "site": "nasha-pravda",
                        "kind": "scan",
                        "start": "2024-11-12T01:14:00Z",
                        "duration_minutes": 31,
                        "vectors": ["scan"],
                        "peak_rps": 4,
                        "addresses": 1,
                    },
                    {
                        "site": "nasha-pravda",
                        "kind": "exploit",
                        "start": "2024-11-12T09:40:00Z",
                        "duration_minutes": 22,
                        "vectors": ["sqli", "xss"],
                        "peak_rps": 2,
                        "addresses": 2,
                    },
                    {
                        "site": "nasha-pravda",
                        "kind": "exploit",
                        "start": "2024-11-12T16:03:00Z",
                        "duration_minutes": 14,
                        "vectors": ["path-traversal", "rce"],
                        "peak_rps": 1,
                        "addresses": 1,
                        "reuse": 1.0,
                    },
                ],
            },
            {
                "id": "stuffers",
                "actor": "a credential stuffer",
                "pool": "residential",
                "incidents": [
                    {
                        "site": "nasha-pravda",
                        "kind": "bruteforce",
                        "start": "2024-11-12T20:30:00Z",
                        "duration_minutes": 75,
                        "vectors": ["login-bruteforce"],
                        "peak_rps": 1.0,
                        "per_address_rps": 0.01,
                        "rotation_minutes": 15,
                    },
                ],
            },
        ],
    }


def coalition() -> Mapping:
    sites = [
        _site(
            "szabad-hang",
            "szabadhang.hu",
            "wordpress",
            "hu",
            "Europe/Budapest",
            "HU",
            "2024-11-11T00:00:00Z",
            "2024-11-14T00:00:00Z",
            page_views_per_day=40_000,
            capacity_rps=20,
        ),
        _site(
            "istina-danas",
            "istinadanas.rs",
            "dated-slug",
            "sr",
            "Europe/Belgrade",
            "RS",
            "2024-11-11T00:00:00Z",
            "2024-11-14T00:00:00Z",
            page_views_per_day=30_000,
        ),
        _site(
            "delta-press",
            "deltapress.ro",
            "article-html",
            "ro",
            "Europe/Bucharest",
            "RO",
            "2024-11-11T00:00:00Z",
            "2024-11-14T00:00:00Z",
            page_views_per_day=25_000,
        ),
        _site(
            "nasha-pravda",
            "nashapravda.org",
            "lang-prefix",
            "be",
            "Europe/Vilnius",
            "BY",
            "2024-11-11T00:00:00Z",
            "2024-11-14T00:00:00Z",
            page_views_per_day=20_000,
            diaspora_share=0.45,
            diaspora=["DE", "GB", "US", "PL"],
        ),
    ]
    return {
        "name": "coalition",
        "description": "Two actors, four outlets, incidents overlapping in time, a flash crowd in between.",
        "sites": sites,
        "flash_crowds": [
            {"site": "szabad-hang", "start": "2024-11-12T16:20:00Z", "multiplier": 8, "duration_minutes": 150},
        ],
        "campaigns": [
            {
                "id": "zastava",
                "actor": "actor A (rented servers)",
                "pool": "hosting",
                "user_agents": "mixed",
                "marker": "zastava",
                "message": "Traitors will pay",
                "incidents": [
                    {
                        "site": "szabad-hang",
                        "start": "2024-11-11T08:00:00Z",
                        "duration_minutes": 240,
                        "vectors": ["get-flood", "cache-bust"],
                        "peak_rps": 30,
                        "addresses": 150,
                        "reuse": 0.7,
                    },
                    {
                        "site": "istina-danas",
                        "start": "2024-11-11T10:30:00Z",
                        "duration_minutes": 180,
                        "vectors": ["get-flood", "random-path"],
                        "peak_rps": 25,
                        "addresses": 150,
                        "reuse": 0.7,
                    },
                    {
                        "site": "delta-press",
                        "start": "2024-11-12T07:45:00Z",
                        "duration_minutes": 120,
                        "vectors": ["cache-bust", "heavy-page"],
                        "peak_rps": 20,
                        "addresses": 120,
                        "reuse": 0.7,
                    },
                ],
            },
            {
                "id": "nemesis",
                "actor": "actor B (residential proxies)",
                "pool": "residential",
                "user_agents": "browser-like",
                "user_agent_count": 30,
                "marker": "nemesis",
                "incidents": [
                    {
                        "site": "nasha-pravda",
                        "start": "2024-11-11T09:00:00Z",
                        "duration_minutes": 180,
                        "vectors": ["get-flood", "search-flood"],
                        "peak_rps": 20,
                        "per_address_rps": 0.05,
                        "rotation_minutes": 40,
                    },
                    {
                        "site": "istina-danas",
                        "start": "2024-11-12T13:00:00Z",
                        "duration_minutes": 120,
                        "vectors": ["get-flood", "cache-bust"],
                        "peak_rps": 20,
                        "per_address_rps": 0.05,
                        "rotation_minutes": 40,
                    },
                    {
                        "site": "delta-press",
                        "kind": "bruteforce",
                        "start": "2024-11-13T03:00:00Z",
                        "duration_minutes": 60,
                        "vectors": ["login-bruteforce"],
                        "peak_rps": 1,
                        "per_address_rps": 0.01,
                        "rotation_minutes": 20,
                        "marker_share": 0,
                    },
                ],
            },
        ],
    }


BUILTIN: dict[str, Callable[[], Mapping]] = {
    "hano-like": hano_like,
    "residential-proxies": residential_proxies,
    "flash-crowd": flash_crowd,
    "scanner": scanner,
    "coalition": coalition,
}
