"""A site's content: URL scheme, articles (with publication times and popularity), sections, assets.

Each URL scheme mimics a common newsroom stack: WordPress (`/2024/11/05/slug/`, `/wp-content/...`, the `/?p=123`
shortlink that redirects), a dated-slug CMS, a static `/article/slug-123.html` site, and a Next.js site with a
language prefix. Popularity is heavy-tailed (log-normal) and recency-weighted (new articles draw most readers for a
day, then fall back to the archive's long tail).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from floodwall.simulate.scenario import FlashCrowdSpec, SiteSpec

__all__ = ["SiteContent", "build_content"]

_WORDS = {
    "hu": "kormany valasztas budapest miniszter ellenzek tuntetes birosag korrupcio onkormanyzat parlament inflacio "
    "egeszsegugy oktatas tanarok sztrajk rendorseg europai unio kozbeszerzes alapitvany sajtoszabadsag ujsagirok "
    "megfigyeles botrany kozmedia korhaz videk forint beruhazas szerzodes titkos jelentes nyomozas hatosag",
    "sr": "vlada izbori beograd ministar opozicija protest sud korupcija skupstina policija novinari mediji studenti "
    "blokada rudnik tuzilastvo predsednik bolnica ugovor tender istraga izvestaj gradjani novi-sad nis kragujevac "
    "budzet penzije plate struja gas zakon",
    "ro": "guvern alegeri bucuresti ministru opozitie protest instanta coruptie parlament politia jurnalisti presa "
    "primarie spital contract licitatie ancheta raport cetateni buget pensii salarii energie lege dosar procuror "
    "cluj iasi timisoara",
    "be": "uriad vybary minsk represii palitviazni sud zhurnalisty militsyia pratest emihratsyia ekanomika santsyi "
    "hrodna brest homel vitsebsk mahiliou zakon vyrok turma kalonija dasledavanne spravazdacha hramadstva "
    "budzhet pensii zarobki",
    "en": "government election capital minister opposition protest court corruption parliament police journalists "
    "media students budget inflation hospital report investigation leak contract tender prosecutor pensions "
    "wages energy law verdict council mayor",
}
_SECTIONS = {
    "hu": ("belfold", "kulfold", "gazdasag", "kultura", "velemeny"),
    "sr": ("politika", "drustvo", "ekonomija", "kultura", "svet"),
    "ro": ("politic", "social", "economic", "cultura", "opinii"),
    "be": ("palityka", "hramadstva", "ekanomika", "kultura", "svet"),
    "en": ("politics", "world", "business", "culture", "opinion"),
}
_SEARCH_WORDS = _WORDS  # readers search for the same words articles are made of


@dataclass(frozen=True)
class SchemeUrls:
    feed: str
    search: str  # the prefix a search term is appended to
    login: str
    xmlrpc: str
    pagination: str  # a prefix the page number is appended to
    post_target: str


@dataclass
class SiteContent:
    """Everything a request to one site can ask for, as tables the generators gather from."""

    base_url: str
    words: tuple[str, ...]
    urls: SchemeUrls
    #: Pages readers view: home, sections, articles, then pages that do not exist (404).
    pages: pl.Series
    page_urls: pl.Series  # the same, as full URLs (what a referer holds)
    page_bytes: np.ndarray  # typical body size of each page (gzip-compressed HTML)
    page_redirect_from: pl.Series  # a URL of the same page that answers 301 toward it
    n_sections: int
    n_articles: int
    n_missing: int
    published_s: np.ndarray  # articles' publication times, epoch seconds
    intrinsic: np.ndarray  # articles' heavy-tailed appeal
    images: pl.Series  # each article's main image
    image_bytes: np.ndarray
    assets: pl.Series  # the assets a first visit loads, in load order
    asset_bytes: np.ndarray
    asset_is_font: np.ndarray  # fonts are requested by the stylesheet, which is their referer
    stylesheet: str
    breaking: dict[int, list[int]]  # flash crowd index -> its breaking articles (page indices)

    @property
    def first_article(self) -> int:
        return 1 + self.n_sections

    def article_weights(self, at_s: float) -> np.ndarray:
        """Probability of each article being read at `at_s`: appeal times recency, unpublished ones excluded."""
        age_h = (at_s - self.published_s) / 3600.0
        recency = np.where(age_h < 0, 0.0, 0.015 + np.exp(-np.clip(age_h, 0, None) / 14.0))
        weights = self.intrinsic * recency
        total = weights.sum()
        return weights / total if total > 0 else np.full(len(weights), 1.0 / len(weights))


def _slugs(words: tuple[str, ...], count: int, rng: np.random.Generator) -> list[str]:
    lengths = rng.integers(3, 8, count)
    picks = rng.integers(0, len(words), int(lengths.sum()))
    out: list[str] = []
    pos = 0
    for n in lengths.tolist():
        out.append("-".join(words[i] for i in picks[pos : pos + n].tolist()))
        pos += n
    return out


def _scheme(site: SiteSpec) -> SchemeUrls:
    lang = site.language
    match site.url_scheme:
        case "wordpress":
            return SchemeUrls("/feed/", "/?s=", "/wp-login.php", "/xmlrpc.php", "/page/", "/wp-admin/admin-ajax.php")
        case "dated-slug":
            return SchemeUrls("/rss.xml", "/search?q=", "/user/login", "/xmlrpc.php", "/?page=", "/comment/reply")
        case "article-html":
            return SchemeUrls(
                "/rss", "/search.html?q=", "/admin/login.php", "/xmlrpc.php", "/archive.html?page=", "/comments.php"
            )
        case _:
            return SchemeUrls(
                f"/{lang}/rss.xml", f"/{lang}/search?q=", "/admin", "/xmlrpc.php", f"/{lang}/archive?page=", "/api/vote"
            )


def _article_urls(site: SiteSpec, slugs: list[str], when: list[datetime], ids: list[int]) -> tuple[list[str], ...]:
    paths: list[str] = []
    redirects: list[str] = []
    images: list[str] = []
    lang = site.language
    for slug, t, pid in zip(slugs, when, ids, strict=True):
        day = f"{t:%Y/%m/%d}"
        short = "-".join(slug.split("-")[:3])
        match site.url_scheme:
            case "wordpress":
                paths.append(f"/{day}/{slug}/")
                redirects.append(f"/?p={pid}")
                images.append(f"/wp-content/uploads/{t:%Y/%m}/{short}-1024x576.jpg")
            case "dated-slug":
                paths.append(f"/{day}/{slug}")
                redirects.append(f"/{day}/{slug}/")
                images.append(f"/media/{t:%Y/%m}/{short}.webp")
            case "article-html":
                paths.append(f"/article/{slug}-{pid}.html")
                redirects.append(f"/article/{pid}")
                images.append(f"/images/articles/{pid}/main.jpg")
            case _:
                prefix = "en" if pid % 7 == 0 else lang
                paths.append(f"/{prefix}/{slug}-{pid}")
                redirects.append(f"/{prefix}/{pid}")
                images.append(f"/_next/image?url=%2Fuploads%2F{pid}.jpg&w=1080&q=75")
    return paths, redirects, images


def _assets(site: SiteSpec) -> tuple[list[str], list[int], list[bool], str]:
    match site.url_scheme:
        case "wordpress":
            theme = "/wp-content/themes/newsroom"
            files = [
                ("/wp-includes/css/dist/block-library/style.min.css?ver=6.6.2", 15_210),
                (f"{theme}/style.css?ver=2.3.1", 38_412),
                ("/wp-includes/js/jquery/jquery.min.js?ver=3.7.1", 30_394),
                ("/wp-includes/js/jquery/jquery-migrate.min.js?ver=3.4.1", 5_411),
                (f"{theme}/js/main.js?ver=2.3.1", 21_873),
                (f"{theme}/fonts/merriweather-v30-latin-ext-regular.woff2", 37_120),
                ("/wp-content/uploads/2023/02/logo.svg", 6_384),
            ]
        case "dated-slug":
            files = [
                ("/static/css/main.4f3a2b1c.css", 44_102),
                ("/static/js/runtime.8d1e07.js", 2_211),
                ("/static/js/main.c41b7e22.js", 96_530),
                ("/static/fonts/source-serif-4-latin-ext.woff2", 41_880),
                ("/static/img/logo.svg", 4_901),
            ]
        case "article-html":
            files = [
                ("/assets/app.css?v=20241102", 27_640),
                ("/assets/vendor.js?v=20241102", 88_015),
                ("/assets/app.js?v=20241102", 19_332),
                ("/assets/fonts/roboto-regular.woff2", 22_100),
                ("/assets/img/logo.png", 9_871),
            ]
        case _:
            files = [
                ("/_next/static/css/8a1f2c9d0e3b.css", 31_207),
                ("/_next/static/chunks/webpack-5c7e1a9f.js", 3_514),
                ("/_next/static/chunks/main-app-91b3c0de.js", 112_846),
                ("/_next/static/chunks/app/layout-2f8e6b10.js", 24_339),
                ("/_next/static/media/inter-latin-ext.woff2", 35_012),
            ]
    files.append(("/favicon.ico", 5_430))
    stylesheet = [p for p, _ in files if ".css" in p][-1]  # the theme's, which loads the fonts
    return [p for p, _ in files], [b for _, b in files], [".woff2" in p for p, _ in files], stylesheet


def build_content(
    site: SiteSpec, flash_crowds: list[FlashCrowdSpec], rng: np.random.Generator, start_s: float, end_s: float
) -> SiteContent:
    """Articles of the archive and of the window (a few each local day, plus each flash crowd's breaking news)."""
    words = tuple(_WORDS[site.language].split())
    n_new = int(site.articles_per_day * (end_s - start_s) / 86_400)
    archive_s = start_s - rng.exponential(120 * 86_400, site.articles)
    new_s = np.sort(rng.uniform(start_s, end_s, n_new))
    crowd_s = [f.start.timestamp() - rng.uniform(240, 900) for f in flash_crowds for _ in range(f.articles)]
    published = np.concatenate([np.sort(archive_s), new_s, np.array(crowd_s, dtype=np.float64)])
    count = len(published)
    intrinsic = rng.lognormal(0.0, 1.3, count)
    if crowd_s:
        intrinsic[-len(crowd_s) :] = np.max(intrinsic) * 2  # the breaking story is the story of the day
    ids = (1000 + np.arange(count) * 3 + rng.integers(0, 3, count)).tolist()
    zone = ZoneInfo(site.timezone)
    when = [datetime.fromtimestamp(float(s), tz=zone) for s in published]
    slugs = _slugs(words, count, rng)
    paths, redirects, images = _article_urls(site, slugs, when, ids)
    sections = [
        (f"/category/{s}/" if site.url_scheme == "wordpress" else f"/{site.language}/{s}")
        for s in _SECTIONS[site.language]
    ]
    missing = [
        "/apple-touch-icon-precomposed.png",
        "/apple-touch-icon.png",
        "/wp-content/uploads/2019/03/banner.gif" if site.url_scheme == "wordpress" else "/img/banner.gif",
        paths[0].rstrip("/") + "-2" + ("/" if paths[0].endswith("/") else ""),
        "/index.php/" + "-".join(words[:2]),
    ]
    all_pages = ["/", *sections, *paths, *missing]
    page_bytes = np.concatenate(
        [
            rng.integers(48_000, 56_000, 1),
            rng.integers(35_000, 48_000, len(sections)),
            rng.integers(18_000, 42_000, count),
            [0] * 5,
        ]
    ).astype(np.int64)
    page_bytes[-5:] = [153, 153, 153, 11_906, 11_906]
    redirect_home = "/index.php" if site.url_scheme == "wordpress" else "/index.html"
    redirect_from = [redirect_home, *[s.rstrip("/") for s in sections], *redirects, *missing]
    assets, asset_bytes, is_font, stylesheet = _assets(site)
    breaking: dict[int, list[int]] = {}
    first_crowd = 1 + len(sections) + site.articles + n_new
    k = 0
    for i, f in enumerate(flash_crowds):
        breaking[i] = [first_crowd + k + j for j in range(f.articles)]
        k += f.articles
    return SiteContent(
        base_url=f"https://{site.host}",
        words=words,
        urls=_scheme(site),
        pages=pl.Series("page", all_pages, dtype=pl.String),
        page_urls=pl.Series("page_url", [f"https://{site.host}{p}" for p in all_pages], dtype=pl.String),
        page_bytes=page_bytes,
        page_redirect_from=pl.Series("redirect", redirect_from, dtype=pl.String),
        n_sections=len(sections),
        n_articles=count,
        n_missing=len(missing),
        published_s=published,
        intrinsic=intrinsic,
        images=pl.Series("image", images, dtype=pl.String),
        image_bytes=rng.integers(48_000, 190_000, count).astype(np.int64),
        assets=pl.Series("asset", assets, dtype=pl.String),
        asset_bytes=np.array(asset_bytes, dtype=np.int64),
        asset_is_font=np.array(is_font, dtype=bool),
        stylesheet=stylesheet,
        breaking=breaking,
    )
