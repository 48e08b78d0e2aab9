"""Wiring of the edge: settings in, a serving worker out. Used by the supervisor (`workers.py`), the CLI and tests.

`build_server` assembles one worker's pipeline from its parts (the order itself is `pipeline.default_parts`);
`serve_worker` runs it on a bound socket until told to stop, with the once-a-second chores beside it: flush the
access log, ship the live detector's rows, follow the shared "under attack" switch, publish the decision count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from floodwall.config import Settings
from floodwall.decide.allowlist import Allowlist
from floodwall.edge.accesslog import AccessLog
from floodwall.edge.admin import parse_listen
from floodwall.edge.challenge import Challenger, secret_from_settings
from floodwall.edge.clientaddr import ClientAddress
from floodwall.edge.forward import Forwarder
from floodwall.edge.gate import AcceptGate, Spared
from floodwall.edge.limits import Limiter
from floodwall.edge.live import LiveRecorder
from floodwall.edge.metrics import Metrics
from floodwall.edge.pipeline import Guard, Pipeline, default_parts
from floodwall.edge.priority import ReaderPriority
from floodwall.edge.server import EdgeServer
from floodwall.edge.upstream import OriginPool, parse_origin
from floodwall.errors import ConfigError
from floodwall.store.cache import DecisionCache

__all__ = [
    "WorkerParts",
    "bind_listener",
    "build_server",
    "parse_listen",
    "serve_worker",
    "with_overrides",
]

log = logging.getLogger("floodwall.edge")


def bind_listener(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound with SO_REUSEPORT, so every worker binds the same port and the kernel spreads
    connections among them (and a new generation of workers can bind while the old one drains)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class WorkerParts:
    """What one worker holds besides its server, for the chores and for shutting down."""

    server: EdgeServer
    limiter: Limiter
    decisions: DecisionCache | None
    metrics: Metrics | None
    access_log: AccessLog | None
    chores: list[Callable[[], object]] = field(default_factory=list)
    closers: list[Callable[[], object]] = field(default_factory=list)


def build_server(
    settings: Settings,
    *,
    decisions: DecisionCache | None = None,
    metrics: Metrics | None = None,
    access_log: AccessLog | None = None,
    recorder: LiveRecorder | None = None,
    challenge_secret: bytes | None = None,
    guard: Guard | None = None,
    under_attack: Callable[[], bool] | None = None,
) -> WorkerParts:
    """One worker's server from the settings (`settings.edge.origin` must be set).

    `decisions` is the ban and challenge list (none: no decision part); `challenge_secret` signs the challenge's
    cookies and must be the same in every worker (default: read or created from `edge.challenge.secret_file`, else
    random, which only suits a single worker); `guard` runs the inline signatures (none: no signature part).
    """
    edge = settings.edge
    if not edge.origin:
        raise ConfigError("key 'edge.origin': the origin is required (--origin http://HOST:PORT)")
    origin = parse_origin(edge.origin)
    contact = settings.site.contact
    limiter = Limiter(edge.limits)
    limiter.under_attack = edge.under_attack
    switch = under_attack if under_attack is not None else (lambda: limiter.under_attack)
    cache = None
    if edge.cache.enabled:
        from floodwall.edge.cache import EdgeCache

        cache = EdgeCache(edge.cache, challenge_cookie=edge.challenge.cookie_name)
    pool = OriginPool(
        origin, concurrency=edge.limits.origin_concurrency, timeout_s=edge.limits.origin_timeout_s, metrics=metrics
    )
    challenger = None
    if decisions is not None:
        secret = challenge_secret if challenge_secret is not None else secret_from_settings(edge.challenge)
        challenger = Challenger(edge.challenge, contact, secret)
    resolver = ClientAddress(edge.trusted_proxies)
    allowlist = Allowlist(own_networks=tuple(settings.site.own_networks))
    spared = Spared(resolver, allowlist)
    gate = AcceptGate(decisions, spared, contact) if decisions is not None else None
    priority = None
    if edge.limits.new_client_wait_s > 0:
        priority = ReaderPriority(
            time.monotonic,
            spared=spared,
            known_after_s=edge.limits.known_after_s,
            defer_s=edge.limits.new_client_wait_s,
        )
    parts, before_origin = default_parts(
        contact=contact,
        resolver=resolver,
        allowlist=allowlist,
        decisions=decisions,
        limiter=limiter,
        challenger=challenger,
        guard=guard,
        under_attack=switch,
        gate=gate,
    )
    forwarder = Forwarder(pool, cache, contact=contact, resolver=resolver)
    server = EdgeServer(
        Pipeline(parts, forwarder, contact, before_origin),
        edge.limits,
        contact=contact,
        access_log=access_log,
        metrics=metrics,
        recorder=recorder,
        gate=gate,
        priority=priority,
    )
    worker = WorkerParts(server, limiter, decisions, metrics, access_log)
    worker.closers.append(pool.close)
    if under_attack is not None:  # the shared switch (the admin API flips it): the limits follow it once a second

        def follow_switch() -> None:
            if under_attack() != limiter.under_attack:
                limiter.under_attack = under_attack()

        worker.chores.append(follow_switch)
    if access_log is not None:
        worker.chores.append(access_log.flush)
        worker.closers.append(access_log.close)
    return worker


async def serve_worker(
    worker: WorkerParts,
    sock: socket.socket,
    stop: asyncio.Event,
    *,
    ready: Callable[[], None] | None = None,
    grace_s: float = 10.0,
) -> None:
    """Serve on `sock` until `stop` is set, then drain for at most `grace_s` and close everything."""
    await worker.server.start(sock)
    if ready is not None:
        ready()
    chores = asyncio.create_task(_chores(worker))
    try:
        await stop.wait()
    finally:
        await worker.server.drain(grace_s)
        chores.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await chores
        for chore in worker.chores:  # a last flush of the access log and of the live rows
            _run_chore(chore)
        for close in worker.closers:
            close()


async def _chores(worker: WorkerParts) -> None:
    while True:
        await asyncio.sleep(1.0)
        for chore in worker.chores:
            _run_chore(chore)


def _run_chore(chore: Callable[[], object]) -> None:
    try:
        chore()
    except Exception:  # a full disk must not stop the serving: say so, keep going
        log.exception("edge chore %s failed", getattr(chore, "__qualname__", chore))


def with_overrides(settings: Settings, **options: object) -> Settings:
    """`settings` with the command line's `--origin`, `--listen`, `--admin` (as `admin`), `--workers`,
    `--access-log`, `--store` put over `[edge]` (None leaves a key alone), validated again; the origin and the
    listening address are checked here, so a typo is reported before anything starts."""
    edge = settings.edge.model_dump()
    for key, value in options.items():
        if value is None:
            continue
        if key == "admin":
            edge["admin"] = {**edge["admin"], "listen": value}
        else:
            edge[key] = value
    data = settings.model_dump()
    data["edge"] = edge
    try:
        merged = Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"edge options: {problems}") from None
    if not merged.edge.origin:
        raise ConfigError("the origin is required: --origin http://HOST:PORT (or origin in [edge])")
    parse_origin(merged.edge.origin)
    parse_listen(merged.edge.listen, "edge.listen")
    parse_listen(merged.edge.admin.listen, "edge.admin.listen")
    return merged
