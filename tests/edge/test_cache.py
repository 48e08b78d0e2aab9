"""The edge's cache: what gets a key, what is stored and for how long, stale pages, coalescing, eviction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from email.utils import formatdate

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from floodwall.edge.cache import CachedResponse, CacheStatus, EdgeCache, Freshness, Origin, RawHeaders
from floodwall.edge.settings import CacheSettings

HTML: RawHeaders = [(b"Content-Type", b"text/html; charset=utf-8")]


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def _cache(**settings: object) -> tuple[EdgeCache, Clock]:
    clock = Clock()
    return EdgeCache(CacheSettings.model_validate(settings), clock, wall_clock=lambda: 1_700_000_000.0), clock


# --- the key ---------------------------------------------------------------------------------------------------------


def test_only_anonymous_gets_and_heads_have_a_key() -> None:
    cache, _ = _cache()
    assert cache.key("GET", "news.example", "/", []) is not None
    assert cache.key("HEAD", "news.example", "/", []) == cache.key("GET", "news.example", "/", [])
    assert cache.key("POST", "news.example", "/", []) is None
    assert cache.key("GET", "news.example", "/", [(b"Authorization", b"Basic eDp5")]) is None
    assert cache.key("GET", "news.example", "/", [(b"Cookie", b"wordpress_logged_in=abc")]) is None
    assert cache.key("GET", "news.example", "/", [(b"Range", b"bytes=0-10")]) is None
    assert cache.key("GET", "news.example", "/", [(b"Cache-Control", b"no-store")]) is None
    # the challenge's own cookie says nothing about the page
    assert cache.key("GET", "news.example", "/", [(b"Cookie", b"floodwall_pass=1.abc")]) == cache.key(
        "GET", "news.example", "/", []
    )
    assert cache.key("GET", "news.example", "/", [(b"Cookie", b"floodwall_pass=1.abc; sid=2")]) is None


def test_the_key_separates_hosts_paths_and_accepted_codings() -> None:
    cache, _ = _cache()
    base = cache.key("GET", "news.example", "/a", [])
    assert base == cache.key("GET", "NEWS.example", "/a", [])
    assert base != cache.key("GET", "other.example", "/a", [])
    assert base != cache.key("GET", "news.example", "/b", [])
    gzip = cache.key("GET", "news.example", "/a", [(b"Accept-Encoding", b"gzip, deflate, br")])
    assert gzip != base
    assert gzip == cache.key("GET", "news.example", "/a", [(b"accept-encoding", b"br;q=1.0, gzip;q=0.8, deflate")])
    # a refused coding and unknown ones do not make a variant
    assert base == cache.key("GET", "news.example", "/a", [(b"Accept-Encoding", b"gzip;q=0, x-random-123")])


params = st.lists(
    st.tuples(st.text("abcdefgh_", min_size=1, max_size=6), st.text("xyz019 %&=+/\u00e9", max_size=8)),
    max_size=6,
    unique_by=lambda pair: pair[0],
)


def _query(pairs: list[tuple[str, str]]) -> str:
    from urllib.parse import quote

    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


@given(pairs=params, data=st.data())
def test_parameter_order_does_not_change_the_key(pairs: list[tuple[str, str]], data: st.DataObject) -> None:
    cache, _ = _cache()
    shuffled = data.draw(st.permutations(pairs))
    assert cache.key("GET", "h", "/p?" + _query(pairs), []) == cache.key("GET", "h", "/p?" + _query(shuffled), [])


values = st.text("xyz019 %&=+/\u00e9", max_size=8)
used_params = st.lists(st.tuples(st.sampled_from("abc"), values), max_size=3, unique_by=lambda pair: pair[0])


@given(used=used_params, unknown=params, data=st.data())
def test_parameters_the_site_does_not_use_do_not_change_the_key(
    used: list[tuple[str, str]], unknown: list[tuple[str, str]], data: st.DataObject
) -> None:
    cache, _ = _cache(query_keep=["a", "b", "c"])
    noise = [(f"zz{k}", v) for k, v in unknown]  # cache busters: names the site never reads
    mixed = data.draw(st.permutations(used + noise))
    assert cache.key("GET", "h", "/p?" + _query(used), []) == cache.key("GET", "h", "/p?" + _query(mixed), [])


def test_kept_parameters_still_tell_pages_apart() -> None:
    cache, _ = _cache(query_keep=["page"])
    one = cache.key("GET", "h", "/list?page=1&_=123", [])
    assert one == cache.key("GET", "h", "/list?_=999&page=1", [])
    assert one != cache.key("GET", "h", "/list?page=2", [])
    assert cache.key("GET", "h", "/list?page=a+b", []) == cache.key("GET", "h", "/list?page=a%20b", [])


def test_parameters_listed_to_drop_leave_the_key() -> None:
    cache, _ = _cache(query_drop=["fbclid", "utm_*", "_"])
    plain = cache.key("GET", "h", "/story?id=4", [])
    assert plain == cache.key("GET", "h", "/story?utm_source=x&id=4&fbclid=abc&_=1700000000&utm_medium=y", [])
    assert plain != cache.key("GET", "h", "/story?id=4&utm=1", [])  # only names starting with "utm_"
    assert plain != cache.key("GET", "h", "/story?id=5", [])


# --- what is stored, for how long ------------------------------------------------------------------------------------


def test_html_without_cache_headers_lives_the_micro_cache_ttl() -> None:
    cache, clock = _cache(html_ttl_s=5, stale_while_revalidate_s=10, stale_if_error_s=100)
    assert cache.put("k", 200, HTML, b"<p>hi</p>")
    entry = cache.get("k")
    assert entry is not None
    assert entry.state(clock.now + 4.9) is Freshness.FRESH
    assert entry.state(clock.now + 5.1) is Freshness.STALE_REVALIDATE
    assert entry.state(clock.now + 15.1) is Freshness.STALE_IF_ERROR
    assert entry.state(clock.now + 105.1) is Freshness.EXPIRED
    clock.now += 106
    assert cache.get("k") is None and len(cache) == 0


def test_what_the_origin_forbids_is_not_stored() -> None:
    cache, _ = _cache()
    for control in (b"no-store", b"private, max-age=60", b"no-cache", b"max-age=60, no-store"):
        assert not cache.put("k", 200, [*HTML, (b"Cache-Control", control)], b"x"), control
    assert not cache.put("k", 200, [*HTML, (b"Set-Cookie", b"sid=1; HttpOnly")], b"x")
    assert not cache.put("k", 200, [*HTML, (b"Vary", b"Cookie")], b"x")
    assert not cache.put("k", 200, [*HTML, (b"Vary", b"*")], b"x")
    assert cache.put("k", 200, [*HTML, (b"Vary", b"Accept-Encoding")], b"x")
    assert not cache.put("k", 206, [*HTML, (b"Cache-Control", b"max-age=60")], b"x")
    assert not cache.put("k", 200, [*HTML, (b"Cache-Control", b"max-age=60")], b"x", [(b"Cache-Control", b"no-store")])
    assert not cache.put("k", 200, HTML, b"", request_method="HEAD")
    assert not cache.put("k", 500, HTML, b"oops")  # not cacheable by default, and the origin said nothing
    assert len(cache) == 1


def test_lifetimes_from_s_maxage_max_age_and_expires() -> None:
    cache, clock = _cache(stale_while_revalidate_s=0, stale_if_error_s=0)
    cache.put("s", 200, [(b"Cache-Control", b"max-age=10, s-maxage=100")], b"x")
    cache.put("m", 200, [(b"Cache-Control", b"max-age=10")], b"x")
    cache.put("aged", 200, [(b"Cache-Control", b"max-age=10"), (b"Age", b"7")], b"x")
    date = formatdate(1_700_000_000, usegmt=True).encode()
    expires = formatdate(1_700_000_060, usegmt=True).encode()
    cache.put("e", 200, [(b"Date", date), (b"Expires", expires)], b"x")
    assert not cache.put("bad", 200, [(b"Expires", b"0")], b"x")  # an invalid date means already expired
    lifetimes = {key: entry.fresh_until - clock.now for key in ["s", "m", "aged", "e"] if (entry := cache.get(key))}
    assert lifetimes == {"s": 100, "m": 10, "aged": 3, "e": 60}
    assert not cache.put("plain", 200, [(b"Content-Type", b"image/png")], b"x")  # no lifetime, not HTML


def test_stale_windows_follow_the_origin_and_must_revalidate() -> None:
    cache, _ = _cache(stale_while_revalidate_s=30, stale_if_error_s=3600)
    cache.put("own", 200, [(b"Cache-Control", b"max-age=10, stale-while-revalidate=5, stale-if-error=50")], b"x")
    cache.put("strict", 200, [(b"Cache-Control", b"max-age=10, must-revalidate")], b"x")
    own, strict = cache.get("own"), cache.get("strict")
    assert own is not None and strict is not None
    assert (own.revalidate_until - own.fresh_until, own.error_until - own.fresh_until) == (5, 50)
    assert strict.revalidate_until == strict.fresh_until == strict.error_until


def test_a_hit_is_written_as_stored_with_its_age_and_cache_status() -> None:
    cache, clock = _cache()
    headers = [*HTML, (b"Connection", b"keep-alive"), (b"Transfer-Encoding", b"chunked"), (b"ETag", b'"v1"')]
    cache.put("k", 200, headers, b"<p>hello</p>")
    entry = cache.get("k")
    assert entry is not None
    wire = entry.wire(clock.now + 3, CacheStatus.HIT)
    head, _, body = wire.partition(b"\r\n\r\n")
    assert body == b"<p>hello</p>"
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert set(lines[1:]) == {
        b"Content-Type: text/html; charset=utf-8",
        b'ETag: "v1"',
        b"Content-Length: 12",
        b"Age: 3",
        b"X-Floodwall-Cache: HIT",
    }
    assert entry.wire(clock.now, CacheStatus.HIT, include_body=False).endswith(b"\r\n\r\n")


def test_a_reader_holding_the_same_copy_gets_a_304() -> None:
    cache, clock = _cache()
    modified = formatdate(1_699_999_000, usegmt=True).encode()
    cache.put("k", 200, [*HTML, (b"ETag", b'W/"v7"'), (b"Last-Modified", modified)], b"<p>page</p>")
    entry = cache.get("k")
    assert entry is not None
    assert entry.not_modified([(b"If-None-Match", b'"v6", "v7"')])
    assert entry.not_modified([(b"if-none-match", b"*")])
    assert not entry.not_modified([(b"If-None-Match", b'"v6"'), (b"If-Modified-Since", modified)])  # ETag wins
    assert entry.not_modified([(b"If-Modified-Since", modified)])
    assert not entry.not_modified([(b"If-Modified-Since", formatdate(1_699_998_000, usegmt=True).encode())])
    assert not entry.not_modified([(b"If-Modified-Since", b"yesterday")])
    assert not entry.not_modified([])
    wire = entry.wire_not_modified(clock.now + 2, CacheStatus.HIT)
    head, _, body = wire.partition(b"\r\n\r\n")
    assert body == b""
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 304 Not Modified"
    assert b'ETag: W/"v7"' in head and b"Age: 2" in head and b"Content-Type" not in head


def test_memory_is_bounded_least_recently_used_out() -> None:
    cache, _ = _cache(max_bytes=10_000, max_object_bytes=5000)
    assert not cache.put("huge", 200, HTML, b"x" * 5001)
    for n in range(5):
        assert cache.put(f"p{n}", 200, HTML, b"x" * 2000)
        cache.get("p0")  # the front page is read all the time
    assert cache.bytes_used <= 10_000
    assert cache.get("p0") is not None and cache.get("p1") is None
    assert cache.stats["evicted"] >= 1


# --- serving: coalescing and stale pages -----------------------------------------------------------------------------


def _origin(
    answers: list[Origin | Exception], delay_s: float = 0.01
) -> tuple[Callable[[], Awaitable[Origin]], list[int]]:
    calls = [0]

    async def fetch() -> Origin:
        calls[0] += 1
        await asyncio.sleep(delay_s)
        answer = answers[min(calls[0], len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return fetch, calls


def test_a_thousand_concurrent_misses_make_one_fetch() -> None:
    cache, _ = _cache()
    fetch, calls = _origin([(200, [*HTML, (b"Cache-Control", b"max-age=60")], b"front page")])

    async def scenario() -> list[tuple[CachedResponse, CacheStatus]]:
        return await asyncio.gather(*(cache.serve("k", fetch) for _ in range(1000)))

    results = asyncio.run(scenario())
    assert calls[0] == 1
    assert all(entry.body == b"front page" and status is CacheStatus.MISS for entry, status in results)
    _, status = asyncio.run(cache.serve("k", fetch))
    assert status is CacheStatus.HIT and calls[0] == 1


def test_a_failed_fetch_reaches_every_waiter() -> None:
    cache, _ = _cache()
    fetch, calls = _origin([ConnectionError("origin down")])

    async def scenario() -> list[object]:
        return await asyncio.gather(*(cache.serve("k", fetch) for _ in range(50)), return_exceptions=True)

    results = asyncio.run(scenario())
    assert calls[0] == 1 and all(isinstance(result, ConnectionError) for result in results)
    assert not cache.fetching("k")


def test_an_answer_for_one_reader_is_never_handed_to_the_others() -> None:
    cache, _ = _cache()
    fetch, calls = _origin([(200, [*HTML, (b"Set-Cookie", b"sid=secret")], b"yours")])

    async def scenario() -> list[tuple[CachedResponse, CacheStatus]]:
        return await asyncio.gather(*(cache.serve("k", fetch) for _ in range(10)))

    results = asyncio.run(scenario())
    assert calls[0] == 10 and len(cache) == 0  # each waiter fetched its own
    assert all((b"Set-Cookie", b"sid=secret") in entry.headers for entry, _ in results)


def test_stale_while_revalidate_serves_stale_and_refreshes_once() -> None:
    cache, clock = _cache(stale_while_revalidate_s=30)
    fetch, calls = _origin(
        [
            (200, [*HTML, (b"Cache-Control", b"max-age=10")], b"v1"),
            (200, [*HTML, (b"Cache-Control", b"max-age=10")], b"v2"),
        ]
    )

    async def scenario() -> None:
        entry, status = await cache.serve("k", fetch)
        assert (entry.body, status) == (b"v1", CacheStatus.MISS)
        clock.now += 15  # past max-age, inside stale-while-revalidate
        served = await asyncio.gather(*(cache.serve("k", fetch) for _ in range(100)))
        assert {(entry.body, status) for entry, status in served} == {(b"v1", CacheStatus.STALE)}
        await cache.drain()
        assert calls[0] == 2  # one refresh for the hundred stale answers
        entry, status = await cache.serve("k", fetch)
        assert (entry.body, status) == (b"v2", CacheStatus.HIT)

    asyncio.run(scenario())


def test_stale_if_error_serves_the_last_good_page_when_the_origin_fails() -> None:
    cache, clock = _cache(stale_while_revalidate_s=0, stale_if_error_s=600)
    fetch, calls = _origin([(200, [*HTML, (b"Cache-Control", b"max-age=10")], b"last good"), TimeoutError()])

    async def scenario() -> None:
        await cache.serve("k", fetch)
        clock.now += 100
        entry, status = await cache.serve("k", fetch)
        assert (entry.body, status) == (b"last good", CacheStatus.STALE)
        clock.now += 600  # past stale-if-error: the failure shows
        with pytest.raises(TimeoutError):
            await cache.serve("k", fetch)

    asyncio.run(scenario())
    assert calls[0] == 3


def test_while_one_request_waits_on_a_slow_origin_the_others_get_the_last_good_page() -> None:
    cache, clock = _cache(stale_while_revalidate_s=0, stale_if_error_s=600)
    ten = [*HTML, (b"Cache-Control", b"max-age=10")]
    answers = iter([b"v1", b"v2"])
    origin_slow = asyncio.Event()

    async def fetch() -> Origin:
        body = next(answers)
        if body == b"v2":
            await origin_slow.wait()  # the origin answers only when the test says so
        return 200, ten, body

    async def scenario() -> None:
        await cache.serve("k", fetch)
        clock.now += 100
        first = asyncio.create_task(cache.serve("k", fetch))
        while not cache.fetching("k"):
            await asyncio.sleep(0)
        others = await asyncio.gather(*(cache.serve("k", fetch) for _ in range(20)))
        assert {(entry.body, status) for entry, status in others} == {(b"v1", CacheStatus.STALE)}
        assert not first.done()
        origin_slow.set()
        entry, status = await first
        assert (entry.body, status) == (b"v2", CacheStatus.MISS)

    asyncio.run(scenario())


def test_a_refresh_that_fails_keeps_the_stale_page_and_is_counted() -> None:
    cache, clock = _cache(stale_while_revalidate_s=30)
    fetch, calls = _origin([(200, [*HTML, (b"Cache-Control", b"max-age=10")], b"v1"), ConnectionResetError()])

    async def scenario() -> None:
        await cache.serve("k", fetch)
        clock.now += 12
        entry, status = await cache.serve("k", fetch)
        assert (entry.body, status) == (b"v1", CacheStatus.STALE)
        await cache.drain()

    asyncio.run(scenario())
    assert calls[0] == 2 and cache.stats["refresh_errors"] == 1 and cache.get("k") is not None


def test_a_waiter_that_goes_away_does_not_cancel_the_fetch_for_the_others() -> None:
    cache, _ = _cache()
    fetch, calls = _origin([(200, [*HTML, (b"Cache-Control", b"max-age=60")], b"page")], delay_s=0.05)

    async def scenario() -> None:
        first = asyncio.create_task(cache.serve("k", fetch))
        second = asyncio.create_task(cache.serve("k", fetch))
        await asyncio.sleep(0.01)
        first.cancel()
        entry, status = await second
        assert entry.body == b"page" and status is CacheStatus.MISS

    asyncio.run(scenario())
    assert calls[0] == 1 and cache.get("k") is not None


header_lists = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from([b"Cache-Control", b"Expires", b"Date", b"Age", b"Vary", b"Cookie"]), st.binary(max_size=12)
        ),
        st.binary(max_size=60),
    ),
    max_size=8,
)


@given(method=st.sampled_from(["GET", "HEAD", "POST"]), target=st.text(max_size=80), headers=header_lists)
@example(method="GET", target="", headers=[(b"Age", b"\xb9")])  # a superscript one: isdigit() but not a number
def test_hostile_requests_and_answers_never_raise(method: str, target: str, headers: RawHeaders) -> None:
    cache, _ = _cache()
    key = cache.key(method, "news.example", target, headers)
    assert key is None or isinstance(key, str)
    stored = cache.put(key or "k", 200, headers, b"body", headers)
    entry = cache.get(key or "k")
    assert stored == (entry is not None)
    if entry is not None:
        assert entry.wire(0, CacheStatus.HIT).endswith(b"\r\n\r\nbody")
