"""Benign traffic, one time slice at a time: readers, flash crowds and benign robots, as columnar event frames.

Every generator returns an *event frame* (`EVENT_SCHEMA`): one row per logged request, in no particular order; the
engine merges and sorts a slice's frames before writing them. Nothing here loops per request: counts come from
Poisson draws per minute, choices from NumPy, strings from Polars gathers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import polars as pl

from floodwall.simulate.agents import AUTOMATION, DESKTOP_AGENTS, MOBILE_AGENTS, AutomationAgent
from floodwall.simulate.networks import Network, draw_addresses, networks_for
from floodwall.simulate.scenario import SiteSpec
from floodwall.simulate.sites import SiteContent

__all__ = [
    "EVENT_SCHEMA",
    "AutomationClient",
    "ClientPool",
    "automation_events",
    "build_automation",
    "build_pool",
    "events",
    "page_views",
    "sample_pages",
    "visits",
]

#: One row per logged request. `ts` is UTC epoch microseconds.
EVENT_SCHEMA: Final[dict[str, pl.DataType]] = {
    "ts": pl.Int64(),
    "client": pl.String(),
    "method": pl.String(),
    "target": pl.String(),
    "status": pl.Int16(),
    "bytes": pl.Int64(),
    "referer": pl.String(),
    "user_agent": pl.String(),
}

_ORGANIC_REFERERS: Final = (
    ("-", 0.38),
    ("https://www.google.com/", 0.28),
    ("android-app://com.google.android.googlequicksearchbox/", 0.04),
    ("https://news.google.com/", 0.02),
    ("https://m.facebook.com/", 0.06),
    ("https://l.facebook.com/", 0.04),
    ("https://t.co/", 0.02),
    ("https://www.bing.com/", 0.01),
    ("", 0.12),  # internal: the home page or another article, opened in a new tab
)
_SOCIAL_REFERERS: Final = (
    ("https://m.facebook.com/", 0.24),
    ("https://l.facebook.com/", 0.12),
    ("https://t.co/", 0.15),
    ("android-app://org.telegram.messenger/", 0.08),
    ("https://l.instagram.com/", 0.05),
    ("-", 0.16),
    ("https://www.google.com/", 0.07),
    ("android-app://com.google.android.googlequicksearchbox/", 0.08),
    ("", 0.05),
)


def events(
    ts_us: np.ndarray,
    client: pl.Series,
    method: str | pl.Series,
    target: pl.Series,
    status: np.ndarray,
    body_bytes: np.ndarray,
    referer: pl.Series,
    user_agent: pl.Series,
) -> pl.DataFrame:
    """An event frame from its columns (a single method is broadcast)."""
    n = len(ts_us)
    methods = pl.Series("method", [method], dtype=pl.String).new_from_index(0, n) if isinstance(method, str) else method
    return pl.DataFrame(
        {
            "ts": pl.Series("ts", ts_us, dtype=pl.Int64),
            "client": client.alias("client"),
            "method": methods.alias("method"),
            "target": target.alias("target"),
            "status": pl.Series("status", status, dtype=pl.Int16),
            "bytes": pl.Series("bytes", body_bytes, dtype=pl.Int64),
            "referer": referer.alias("referer"),
            "user_agent": user_agent.alias("user_agent"),
        }
    )


@dataclass
class ClientPool:
    """People who read a site: an address and a browser each, and how often they come back."""

    addresses: pl.Series
    agents: pl.Series
    weights: np.ndarray
    seen: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.seen = np.zeros(len(self.addresses), dtype=bool)

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        picks = rng.choice(len(self.weights), count, p=self.weights)
        self.seen[picks] = True
        return picks


def build_pool(
    site: SiteSpec, size: int, rng: np.random.Generator, exclude: set[str], mobile_boost: float = 0.0
) -> ClientPool:
    """Readers from the site's country (residential and mobile networks) and its diaspora, IPv6 included."""
    mobile_share = min(0.95, site.mobile_share + mobile_boost)
    home = networks_for([site.country], ("residential", "mobile"))
    abroad = networks_for(site.diaspora, ("residential", "mobile"))
    n_abroad = int(size * site.diaspora_share) if abroad else 0
    addresses: list[str] = []
    mobile: list[bool] = []
    for nets, n in ((home, size - n_abroad), (abroad, n_abroad)):
        got, origin = draw_addresses(nets, n, rng, site.ipv6_share, exclude)
        exclude.update(got)
        addresses.extend(got)
        mobile.extend(_is_mobile(nets, origin, mobile_share, rng))
    is_mobile = np.array(mobile, dtype=bool)
    agents = _agents_for(is_mobile, rng)
    # Heavy-tailed loyalty: a few readers come back many times a day, most come once.
    weights = rng.pareto(1.2, len(addresses)) + 0.2
    return ClientPool(pl.Series(addresses, dtype=pl.String), agents, weights / weights.sum())


def _is_mobile(nets: list[Network], origin: list[int], share: float, rng: np.random.Generator) -> list[bool]:
    on_mobile_net = np.array([nets[i].kind == "mobile" for i in origin], dtype=bool)
    # Phones on home Wi-Fi use residential lines too.
    mobile: list[bool] = (on_mobile_net | (rng.random(len(origin)) < share * 0.6)).tolist()
    return mobile


def _agents_for(is_mobile: np.ndarray, rng: np.random.Generator) -> pl.Series:
    desk = np.array([w for _, w in DESKTOP_AGENTS], dtype=np.float64)
    mob = np.array([w for _, w in MOBILE_AGENTS], dtype=np.float64)
    table = pl.Series([a for a, _ in DESKTOP_AGENTS] + [a for a, _ in MOBILE_AGENTS], dtype=pl.String)
    pick = np.where(
        is_mobile,
        len(desk) + rng.choice(len(mob), len(is_mobile), p=mob / mob.sum()),
        rng.choice(len(desk), len(is_mobile), p=desk / desk.sum()),
    )
    return table.gather(pick)


def sample_pages(content: SiteContent, count: int, at_s: float, rng: np.random.Generator) -> np.ndarray:
    """Page indices readers ask for: home, sections, articles by popularity, now and then a missing page."""
    u = rng.random(count)
    articles = content.first_article + rng.choice(content.n_articles, count, p=content.article_weights(at_s))
    sections = 1 + rng.integers(0, content.n_sections, count)
    missing = content.first_article + content.n_articles + rng.integers(0, content.n_missing, count)
    return np.where(u < 0.2, 0, np.where(u < 0.26, sections, np.where(u < 0.96, articles, missing)))


def _referers(
    content: SiteContent, table: tuple[tuple[str, float], ...], count: int, rng: np.random.Generator
) -> pl.Series:
    probs = np.array([p for _, p in table])
    kind = rng.choice(len(table), count, p=probs / probs.sum())
    external = pl.Series([r for r, _ in table], dtype=pl.String).gather(kind)
    inner_page = np.where(
        rng.random(count) < 0.5, 0, content.first_article + rng.integers(0, content.n_articles, count)
    )
    internal = content.page_urls.gather(inner_page)
    return pl.select(pl.when(external == "").then(internal).otherwise(external)).to_series()


def visits(
    content: SiteContent,
    ts_s: np.ndarray,
    clients: pl.Series,
    agents: pl.Series,
    entry_pages: np.ndarray,
    social: bool,
    at_s: float,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """Visits: an entry page reached from outside, then now and then a few more, each with the previous as referer."""
    n = len(ts_s)
    views = rng.geometric(0.75 if social else 0.6, n)  # pages per visit: 1.3 from social media, 1.7 otherwise
    visit = np.repeat(np.arange(n), views)
    first = np.cumsum(views) - views
    position = np.arange(len(visit)) - first[visit]
    gaps = np.cumsum(np.where(position > 0, 8.0 + rng.exponential(50.0, len(visit)), 0.0))
    view_ts = ts_s[visit] + gaps - gaps[first][visit]
    pages = np.where(position == 0, entry_pages[visit], sample_pages(content, len(visit), at_s, rng))
    entry = _referers(content, _SOCIAL_REFERERS if social else _ORGANIC_REFERERS, n, rng)
    # Only Android apps hand over android-app:// referers; elsewhere the same visit arrives without one.
    from_app = entry.str.starts_with("android-app://") & ~agents.str.contains("Android", literal=True)
    entry = pl.select(pl.when(from_app).then(pl.lit("-")).otherwise(entry)).to_series()
    previous = content.page_urls.gather(np.roll(pages, 1))
    referer = pl.select(pl.when(pl.Series(position == 0)).then(entry.gather(visit)).otherwise(previous)).to_series()
    return page_views(
        content, view_ts, clients.gather(visit), agents.gather(visit), pages, referer, rng, cached=position > 0
    )


def page_views(
    content: SiteContent,
    ts_s: np.ndarray,
    clients: pl.Series,
    agents: pl.Series,
    pages: np.ndarray,
    referer: pl.Series,
    rng: np.random.Generator,
    cached: np.ndarray | None = None,
) -> pl.DataFrame:
    """Page views and what a browser fetches with them: a redirect first now and then, assets after the page.

    `cached` marks views whose browser already holds the site's assets (a visit's second page and later).
    """
    n = len(ts_s)
    missing = pages >= content.first_article + content.n_articles
    published = content.published_s[np.clip(pages - content.first_article, 0, content.n_articles - 1)]
    is_article = (pages >= content.first_article) & ~missing
    pages = np.where(is_article & (published > ts_s), 0, pages)  # nobody reads an article before it is out
    is_article &= pages != 0
    status = np.where(missing, 404, np.where(rng.random(n) < 0.035, 304, 200))
    size = content.page_bytes[pages]
    body = np.where(status == 200, size * rng.lognormal(0, 0.04, n), np.where(status == 404, size, 0)).astype(np.int64)
    ts_us = (ts_s * 1e6).astype(np.int64)
    target = content.pages.gather(pages)
    parts = [events(ts_us, clients, "GET", target, status, body, referer, agents)]

    redirected = np.flatnonzero(~missing & (rng.random(n) < 0.045))
    if len(redirected):
        parts.append(
            events(
                ts_us[redirected] - rng.integers(60_000, 220_000, len(redirected)),
                clients.gather(redirected),
                "GET",
                content.page_redirect_from.gather(pages[redirected]),
                np.full(len(redirected), 301),
                np.full(len(redirected), 169),
                referer.gather(redirected),
                agents.gather(redirected),
            )
        )
    page_url = content.page_urls.gather(pages)
    ok = status == 200
    cold = np.flatnonzero(ok & (rng.random(n) < 0.35) & (True if cached is None else ~cached))
    n_assets = len(content.assets)
    if len(cold):
        rep = np.repeat(cold, n_assets)
        pos = np.tile(np.arange(n_assets), len(cold))
        revalidated = rng.random(len(rep)) < 0.15
        css_url = content.base_url + content.stylesheet
        refs = pl.select(
            pl.when(pl.Series(content.asset_is_font[pos])).then(pl.lit(css_url)).otherwise(page_url.gather(rep))
        ).to_series()
        parts.append(
            events(
                ts_us[rep] + 40_000 + pos * 25_000 + rng.exponential(60_000, len(rep)).astype(np.int64),
                clients.gather(rep),
                "GET",
                content.assets.gather(pos),
                np.where(revalidated, 304, 200),
                np.where(revalidated, 0, content.asset_bytes[pos]),
                refs,
                agents.gather(rep),
            )
        )
    with_image = np.flatnonzero(ok & is_article & (rng.random(n) < 0.75))
    if len(with_image):
        article = pages[with_image] - content.first_article
        parts.append(
            events(
                ts_us[with_image] + 250_000 + rng.exponential(200_000, len(with_image)).astype(np.int64),
                clients.gather(with_image),
                "GET",
                content.images.gather(article),
                np.full(len(with_image), 200),
                content.image_bytes[article],
                page_url.gather(with_image),
                agents.gather(with_image),
            )
        )
    warm_css = np.setdiff1d(np.flatnonzero(ok & (rng.random(n) < 0.45)), cold, assume_unique=True)
    if len(warm_css):
        parts.append(
            events(
                ts_us[warm_css] + 30_000 + rng.exponential(40_000, len(warm_css)).astype(np.int64),
                clients.gather(warm_css),
                "GET",
                pl.Series([content.stylesheet], dtype=pl.String).new_from_index(0, len(warm_css)),
                np.full(len(warm_css), 304),
                np.zeros(len(warm_css), dtype=np.int64),
                page_url.gather(warm_css),
                agents.gather(warm_css),
            )
        )
    return pl.concat(parts)


@dataclass
class AutomationClient:
    """One benign robot at one site: the agent and the addresses it calls from."""

    agent: AutomationAgent
    addresses: list[str]
    phase_s: float
    seen: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.seen = np.zeros(len(self.addresses), dtype=bool)


def build_automation(rng: np.random.Generator, exclude: set[str]) -> list[AutomationClient]:
    """Every benign robot of AUTOMATION, with its addresses for this site."""
    clients: list[AutomationClient] = []
    for agent in AUTOMATION:
        nets = [Network(c, agent.name, "", "hosting") for c in agent.cidrs]
        addresses, _ = draw_addresses(nets, agent.addresses, rng, 0.0, exclude)
        exclude.update(addresses)
        clients.append(AutomationClient(agent, addresses, float(rng.uniform(0, max(agent.period_s, 1.0)))))
    return clients


def automation_events(
    content: SiteContent,
    robots: list[AutomationClient],
    start_s: float,
    end_s: float,
    scale: float,
    rng: np.random.Generator,
    link_rng_seed: list[int],
) -> pl.DataFrame:
    """Crawlers (Poisson), feed readers and monitors (periodic), link expanders (after each publication)."""
    # Targets index one table: the site's pages, then robots.txt, the sitemap, the feed and the home page.
    n_pages = len(content.pages)
    robots_txt, sitemap, feed_path, home = n_pages, n_pages + 1, n_pages + 2, n_pages + 3
    columns: dict[str, list[np.ndarray]] = {k: [] for k in ("ts", "robot", "address", "target", "status", "bytes")}
    offsets = np.cumsum([0] + [len(r.addresses) for r in robots])
    for r_i, robot in enumerate(robots):
        agent = robot.agent
        if agent.kind == "crawler":
            count = int(rng.poisson(agent.rps * scale * (end_s - start_s)))
            ts = rng.uniform(start_s, end_s, count)
            u = rng.random(count)
            pages = np.where(u < 0.08, 0, content.first_article + rng.integers(0, content.n_articles, count))
            target = np.where(u > 0.97, np.where(u > 0.985, robots_txt, sitemap), pages)
            v = rng.random(count)  # crawlers follow old links: redirects and pages since removed
            status = np.where(u > 0.97, 200, np.where(v < 0.04, 301, np.where(v < 0.07, 404, 200)))
            body = np.where(u > 0.97, 2_381, np.where(status == 200, content.page_bytes[pages], 169))
            body = np.where(status == 404, 11_906, body * rng.lognormal(0, 0.03, count))  # pages change a little
        elif agent.kind in ("feed-reader", "monitor"):
            first = robot.phase_s + np.ceil((start_s - robot.phase_s) / agent.period_s) * agent.period_s
            ts = np.arange(first, end_s, agent.period_s) + rng.uniform(0, 0.8, 1)
            ts = ts[ts < end_s]
            count = len(ts)
            feed = agent.kind == "feed-reader"
            target = np.full(count, feed_path if feed else home)
            status = np.where(feed & (rng.random(count) < 0.7), 304, 200)
            full = 48_211 if feed else content.page_bytes[0]
            body = np.where((status == 304) | (agent.method == "HEAD"), 0, full * rng.lognormal(0, 0.02, count))
        else:
            continue
        who = rng.integers(0, len(robot.addresses), count)
        robot.seen[who] = True
        for key, values in (
            ("ts", ts),
            ("robot", np.full(count, r_i)),
            ("address", offsets[r_i] + who),
            ("target", target),
            ("status", status),
            ("bytes", body),
        ):
            columns[key].append(np.asarray(values))
    link = _link_expanders(content, robots, start_s, end_s, link_rng_seed)
    if not columns["ts"]:
        return link
    joined = {k: np.concatenate(v) for k, v in columns.items()}
    n = len(joined["ts"])
    addresses = pl.Series([a for r in robots for a in r.addresses], dtype=pl.String)
    targets = pl.concat([content.pages, pl.Series(["/robots.txt", "/sitemap.xml", content.urls.feed, "/"])])
    robot_of_row = joined["robot"]
    frame = events(
        (joined["ts"] * 1e6).astype(np.int64),
        addresses.gather(joined["address"]),
        pl.Series([r.agent.method for r in robots], dtype=pl.String).gather(robot_of_row),
        targets.gather(joined["target"]),
        joined["status"],
        joined["bytes"].astype(np.int64),
        pl.Series(["-"], dtype=pl.String).new_from_index(0, n),
        pl.Series([r.agent.user_agent for r in robots], dtype=pl.String).gather(robot_of_row),
    )
    return pl.concat([frame, link]) if link.height else frame


def _link_expanders(
    content: SiteContent, robots: list[AutomationClient], start_s: float, end_s: float, seed: list[int]
) -> pl.DataFrame:
    expanders = [r for r in robots if r.agent.kind == "link-expander"]
    first = content.first_article
    fresh = np.flatnonzero((content.published_s >= start_s - 6 * 3600) & (content.published_s < end_s))
    breaking = {p - first for pages in content.breaking.values() for p in pages}
    rows: list[tuple[int, str, str, str, int]] = []
    for article in fresh.tolist():
        # Seeded per article, so the fetches do not depend on where slices begin and end.
        article_rng = np.random.default_rng([*seed, article])
        hot = article in breaking
        n = 4 + int(article_rng.poisson(25 if hot else 3))
        delays = article_rng.exponential(1800 if hot else 240, n)
        who = article_rng.integers(0, len(expanders), n)
        addr = article_rng.integers(0, 1000, n)
        path = content.pages[first + article]
        for delay, w, a in zip(delays.tolist(), who.tolist(), addr.tolist(), strict=True):
            at = content.published_s[article] + 20 + delay
            if start_s <= at < end_s:
                robot = expanders[w]
                k = a % len(robot.addresses)
                robot.seen[k] = True
                rows.append(
                    (
                        int(at * 1e6),
                        robot.addresses[k],
                        path,
                        robot.agent.user_agent,
                        int(content.page_bytes[first + article]),
                    )
                )
    if not rows:
        return pl.DataFrame(schema=EVENT_SCHEMA)
    ts, client, target, ua, size = zip(*rows, strict=True)
    n = len(rows)
    return events(
        np.array(ts, dtype=np.int64),
        pl.Series(client, dtype=pl.String),
        "GET",
        pl.Series(target, dtype=pl.String),
        np.full(n, 200),
        np.array(size, dtype=np.int64),
        pl.Series(["-"], dtype=pl.String).new_from_index(0, n),
        pl.Series(ua, dtype=pl.String),
    )
