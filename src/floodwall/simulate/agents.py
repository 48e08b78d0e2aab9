"""User agents as real clients sent them in late 2024: readers' browsers, benign robots, attack tools.

Readers' strings follow Chrome's reduced user agent (`Chrome/130.0.0.0`, `Android 10; K`), which every Chromium
browser has sent since 2023 (https://www.chromium.org/updates/ua-reduction/); a full build number in a desktop
Chrome string is therefore a fingerprint of old or forged clients, which the flood lists use on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "AUTOMATION",
    "DESKTOP_AGENTS",
    "MOBILE_AGENTS",
    "SCANNER_AGENTS",
    "AutomationAgent",
    "AutomationKind",
    "flood_agents",
]

_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
_IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS {v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"

#: (user agent, weight) of desktop browsers.
DESKTOP_AGENTS: Final[tuple[tuple[str, float], ...]] = (
    (f"{_WIN} Chrome/130.0.0.0 Safari/537.36", 18),
    (f"{_WIN} Chrome/131.0.0.0 Safari/537.36", 10),
    (f"{_WIN} Chrome/129.0.0.0 Safari/537.36", 3),
    (f"{_WIN} Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0", 6),
    (f"{_WIN} Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", 2),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0", 5),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0", 1),
    (f"{_MAC} Chrome/130.0.0.0 Safari/537.36", 5),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.1 Safari/605.1.15",
        3,
    ),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:132.0) Gecko/20100101 Firefox/132.0", 1),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36", 1),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0", 1),
)

#: (user agent, weight) of phones and tablets, in-app browsers included.
MOBILE_AGENTS: Final[tuple[tuple[str, float], ...]] = (
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile "
        "Safari/537.36",
        24,
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile "
        "Safari/537.36",
        6,
    ),
    (_IPHONE.format(v="18_1") + " Version/18.1 Mobile/15E148 Safari/604.1", 10),
    (_IPHONE.format(v="18_0_1") + " Version/18.0.1 Mobile/15E148 Safari/604.1", 4),
    (_IPHONE.format(v="17_6_1") + " Version/17.6 Mobile/15E148 Safari/604.1", 6),
    (_IPHONE.format(v="18_1") + " CriOS/130.0.6723.90 Mobile/15E148 Safari/604.1", 2),
    (
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        4,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-A546B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Version/4.0 Chrome/130.0.6723.102 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/487.0.0.52.79;]",
        4,
    ),
    (
        _IPHONE.format(v="18_1") + " Mobile/22B83 [FBAN/FBIOS;FBAV/488.0.0.42.108;FBBV/664128424;"
        "FBDV/iPhone15,3;FBMD/iPhone;FBSN/iOS;FBSV/18.1;FBSS/3;FBID/phone;FBOP/5;FBRV/0]",
        3,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; 2201117TY Build/TKQ1.221114.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Version/4.0 Chrome/130.0.6723.86 Mobile Safari/537.36 Instagram 355.1.0.44.103 Android",
        1,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 "
        "Mobile/15E148 Safari/604.1",
        1,
    ),
    ("Mozilla/5.0 (Android 14; Mobile; rv:132.0) Gecko/132.0 Firefox/132.0", 1),
)

#: Tools that probe for weaknesses, as they announce themselves (or hide behind an old Chrome).
SCANNER_AGENTS: Final[tuple[str, ...]] = (
    "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000603)",
    "sqlmap/1.8.11#stable (https://sqlmap.org)",
    "WPScan v3.8.27 (https://wpscan.com/wordpress-security-scanner)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Safari/537.36",
    "Fuzz Faster U Fool v2.1.0-dev",
    "Mozilla/5.0 zgrab/0.x",
    "gobuster/3.6",
)


def flood_agents(style: Literal["browser-like", "tools", "mixed"], count: int, salt: int) -> list[str]:
    """A campaign's rotating user-agent list: plausible but dated browsers with full build numbers, or tools."""
    systems = (
        "Windows NT 10.0; Win64; x64",
        "Windows NT 6.1; Win64; x64",
        "Windows NT 6.3; Win64; x64",
        "Macintosh; Intel Mac OS X 10_15_7",
        "X11; Linux x86_64",
    )
    browsers: list[str] = []
    for k in range(count):
        major = 100 + (k * 7 + salt) % 28
        build = 5000 + (k * 131 + salt * 17) % 1200
        patch = (k * 37 + salt) % 200
        system = systems[(k + salt) % len(systems)]
        browsers.append(
            f"Mozilla/5.0 ({system}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.{build}.{patch} "
            "Safari/537.36"
        )
    tools = [
        "python-requests/2.31.0",
        "Go-http-client/1.1",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.109 "
        "Safari/537.36",
        "okhttp/4.12.0",
        "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; Trident/6.0)",
        "curl/8.5.0",
    ]
    if style == "browser-like":
        return browsers
    if style == "tools":
        return tools[: max(1, min(count, len(tools)))]
    return browsers[: max(1, count - 3)] + tools[:3]


AutomationKind = Literal["crawler", "feed-reader", "monitor", "link-expander"]


@dataclass(frozen=True, slots=True)
class AutomationAgent:
    """A benign robot: its user agent, where it comes from, how often it calls, and what it asks for."""

    name: str
    kind: AutomationKind
    user_agent: str
    cidrs: tuple[str, ...]
    addresses: int  # how many distinct addresses one site sees it from
    rps: float  # crawlers: mean requests per second at scale 1
    period_s: float  # feed readers and monitors: seconds between polls per address
    method: str = "GET"


_GOOGLE = "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

#: The benign robots every simulated site sees.
AUTOMATION: Final[tuple[AutomationAgent, ...]] = (
    AutomationAgent(
        "Googlebot",
        "crawler",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/130.0.6723.116 Mobile Safari/537.36 {_GOOGLE}",
        ("66.249.64.0/19",),
        6,
        0.10,
        0,
    ),
    AutomationAgent(
        "Googlebot",
        "crawler",
        f"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; {_GOOGLE[1:-1]}) Chrome/130.0.6723.116 Safari/537.36",
        ("66.249.64.0/19",),
        3,
        0.03,
        0,
    ),
    AutomationAgent(
        "bingbot",
        "crawler",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) "
        "Chrome/116.0.1938.76 Safari/537.36",
        ("157.55.39.0/24", "40.77.167.0/24", "207.46.13.0/24"),
        4,
        0.04,
        0,
    ),
    AutomationAgent(
        "YandexBot",
        "crawler",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        ("5.255.231.0/24", "213.180.203.0/24"),
        2,
        0.01,
        0,
    ),
    AutomationAgent(
        "Applebot",
        "crawler",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 "
        "Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
        ("17.241.219.0/24", "17.241.227.0/24"),
        2,
        0.01,
        0,
    ),
    AutomationAgent(
        "AhrefsBot",
        "crawler",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        ("54.36.148.0/23",),
        3,
        0.02,
        0,
    ),
    AutomationAgent(
        "SemrushBot",
        "crawler",
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        ("185.191.171.0/24",),
        2,
        0.01,
        0,
    ),
    AutomationAgent(
        "GPTBot",
        "crawler",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        ("20.171.207.0/24",),
        2,
        0.02,
        0,
    ),
    AutomationAgent(
        "Feedly",
        "feed-reader",
        "Feedly/1.0 (+https://feedly.com/poller.html; 214 subscribers; )",
        ("34.73.0.0/16",),
        1,
        0,
        900,
    ),
    AutomationAgent(
        "Inoreader",
        "feed-reader",
        "Mozilla/5.0 (compatible; inoreader.com; 38 subscribers)",
        ("144.76.0.0/16",),
        1,
        0,
        1800,
    ),
    AutomationAgent(
        "NewsBlur",
        "feed-reader",
        "NewsBlur Feed Fetcher - 12 subscribers - https://www.newsblur.com/ (Mozilla/5.0 (Macintosh; Intel Mac OS X "
        "10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15)",
        ("167.71.0.0/16",),
        1,
        0,
        3600,
    ),
    AutomationAgent(
        "Tiny Tiny RSS", "feed-reader", "Tiny Tiny RSS/24.09 (https://tt-rss.org/)", ("88.64.0.0/12",), 2, 0, 1800
    ),
    AutomationAgent(
        "UptimeRobot",
        "monitor",
        "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
        ("216.144.248.0/24", "69.162.124.0/24"),
        3,
        0,
        300,
        "HEAD",
    ),
    AutomationAgent(
        "Pingdom",
        "monitor",
        "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
        ("178.255.152.0/24",),
        1,
        0,
        60,
    ),
    AutomationAgent(
        "facebookexternalhit",
        "link-expander",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        ("69.171.249.0/24", "173.252.83.0/24"),
        4,
        0,
        0,
    ),
    AutomationAgent("Twitterbot", "link-expander", "Twitterbot/1.0", ("199.16.157.0/24",), 2, 0, 0),
    AutomationAgent("TelegramBot", "link-expander", "TelegramBot (like TwitterBot)", ("149.154.161.0/24",), 2, 0, 0),
    AutomationAgent(
        "LinkedInBot",
        "link-expander",
        "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
        ("108.174.2.0/24",),
        1,
        0,
        0,
    ),
)
