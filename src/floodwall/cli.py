"""The `floodwall` command: the only module that prints, and the only one that turns errors into exit codes.

Exit status: 0 on success, 2 on bad usage or bad input (one line naming the file, line or key at fault), 1 on an
internal error or a failing service. Long work shows a progress bar on a terminal and stays quiet elsewhere.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from floodwall import __version__
from floodwall.config import Settings, load_settings
from floodwall.errors import FloodwallError, InputError

__all__ = ["app", "main"]

app = typer.Typer(
    name="floodwall",
    help="Keep a newsroom's website online under HTTP floods, block the attackers, document the attack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


# Options shared by the commands that read logs (CONTRACT.md, "Common options").
class LogFormatChoice(StrEnum):
    auto = "auto"
    combined = "combined"
    common = "common"
    vhost_combined = "vhost_combined"
    json = "json"


FormatOption = Annotated[LogFormatChoice, typer.Option("--format", help="Log format of the inputs.")]
TzOption = Annotated[
    str | None,
    typer.Option("--tz", help="Time zone for timestamps that carry none, e.g. Europe/Budapest."),
]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="Settings file (TOML).", dir_okay=False)]
StateDirOption = Annotated[Path, typer.Option("--state-dir", help="Folder of the default store.", file_okay=False)]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Print more, and tracebacks on errors.")]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="The outlets' shared coalition key (default: $FLOODWALL_COALITION_KEY); addresses are hashed with it.",
        dir_okay=False,
    ),
]


class _State:
    verbose = False
    # Set once `analyze` has written and closed its outputs: `run` may then skip the interpreter's teardown.
    skip_teardown = False


def _setup(config: Path | None, quiet: bool, verbose: bool) -> Settings:
    _State.verbose = verbose
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="floodwall: %(message)s", stream=sys.stderr, force=True)
    return _settings(config)


def _settings(config: Path | None) -> Settings:
    """The config file's settings, with `$XDG_CACHE_HOME` for the signature cache when the file names none (the
    only place that reads the variable: STYLE.md item 5)."""
    settings = load_settings(config)
    xdg_cache = os.environ.get("XDG_CACHE_HOME")
    if settings.detect.signatures_cache is None and xdg_cache:
        detect = settings.detect.model_copy(update={"signatures_cache": str(Path(xdg_cache) / "floodwall")})
        settings = settings.model_copy(update={"detect": detect})
    return settings


def _coalition_key(key_file: Path | None) -> bytes | None:
    """The coalition key from --key-file, else from FLOODWALL_COALITION_KEY, else None (the only place that reads
    the variable: STYLE.md item 5)."""
    from floodwall.forensics.bundle import coalition_key

    if key_file is not None:
        try:
            return coalition_key(key_file.read_bytes(), str(key_file))
        except OSError as exc:
            raise InputError(f"{key_file}: cannot read the coalition key: {exc.strerror}") from None
    value = os.environ.get("FLOODWALL_COALITION_KEY")
    return coalition_key(value.encode("utf-8"), "FLOODWALL_COALITION_KEY") if value else None


def _show_progress(quiet: bool) -> bool:
    return not quiet and sys.stdout.isatty()


@contextmanager
def _byte_progress(enabled: bool, description: str) -> Iterator[tuple[Progress | None, TaskID | None]]:
    if not enabled:
        yield None, None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    with progress:
        yield progress, progress.add_task(description, total=None)


@app.callback()
def _root() -> None:
    """Keep a newsroom's website online under HTTP floods, block the attackers, document the attack."""


@app.command()
def version() -> None:
    """Print Floodwall's version."""
    out.print(f"floodwall {__version__}")


@app.command()
def read(
    logs: Annotated[list[str], typer.Argument(help="Access logs: plain, .gz, or - for stdin.")],
    site: Annotated[str, typer.Option("--site", help="The site's name, kept in every row.")] = "site",
    fmt: FormatOption = LogFormatChoice.auto,
    tz: TzOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Read access logs and say what is in them: format, lines, unreadable lines, time span.

    Example: floodwall read /var/log/nginx/access.log.2.gz /var/log/nginx/access.log.1
    """
    from floodwall.logs import LogReader

    settings = _setup(config, quiet, verbose)
    chosen = settings.logs.format if fmt is LogFormatChoice.auto else fmt.value
    rows = 0
    with _byte_progress(_show_progress(quiet), "reading") as (progress, task):

        def report(done: int, total: int | None) -> None:
            if progress is not None and task is not None:
                progress.update(task, completed=done, total=total)

        reader = LogReader(
            logs,
            site=site,
            fmt=chosen,
            tz=tz or settings.logs.tz,
            json_fields=settings.logs.json_fields,
            batch_rows=settings.logs.batch_rows,
            progress=report,
        )
        for frame in reader:
            rows += frame.height
    if quiet:
        return
    for stats in reader.inputs:
        span = "no readable time"
        if stats.first_ts is not None and stats.last_ts is not None:
            span = f"{stats.first_ts:%Y-%m-%dT%H:%M:%SZ} to {stats.last_ts:%Y-%m-%dT%H:%M:%SZ}"
        out.print(f"{stats.path}: {stats.format_reason}", markup=False)
        out.print(
            f"  {stats.lines:,} lines, {stats.parsed:,} read, {stats.bad_lines:,} unreadable; {span}", markup=False
        )
        for bad in stats.bad_samples[:5]:
            out.print(f"  line {bad.line}: {bad.reason}: {bad.text[:100]!r}", markup=False)
    out.print(f"{rows:,} requests", markup=False)


@app.command()
def analyze(
    logs: Annotated[list[str], typer.Argument(help="Access logs of one site: plain, .gz, or - for stdin.")],
    site: Annotated[str, typer.Option("--site", help="The site's name (used in incident ids).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.json, blocklist.txt, evidence.json.")],
    fmt: FormatOption = LogFormatChoice.auto,
    tz: TzOption = None,
    config: ConfigOption = None,
    key_file: KeyFileOption = None,
    public: Annotated[
        bool,
        typer.Option(
            "--public", help="Also write report.public.html and report.public.md: aggregates only, no addresses."
        ),
    ] = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Find incidents, attackers and breach attempts in access logs, and write the account into --out.

    Example: floodwall analyze /var/log/nginx/access.log.1 /var/log/nginx/access.log --site example-news --out out/
    """
    from floodwall.analyze import analyze as run_analysis

    settings = _setup(config, quiet, verbose)
    key = _coalition_key(key_file)
    chosen = None if fmt is LogFormatChoice.auto else fmt.value
    # The run allocates Python objects by the million but few cycles: the modules' objects are set aside and the
    # young generation collected less often (at 1M lines: about 450 collections and 0.4 s, then 200 and 0.16 s).
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)
    try:
        with _byte_progress(_show_progress(quiet), "reading") as (progress, task):

            def report(phase: str, done: int, total: int | None) -> None:
                if progress is not None and task is not None:
                    progress.update(task, description=phase, completed=done, total=total)

            result = run_analysis(
                logs,
                site=site,
                out_dir=out_dir,
                settings=settings,
                fmt=chosen,
                tz=tz,
                progress=report,
                command_line=["floodwall", *sys.argv[1:]],
                coalition_key=key,
                public=public,
            )
    finally:  # as it was for whatever runs next in this process (tests call the command in theirs)
        gc.set_threshold(*thresholds)
        gc.unfreeze()
    _State.skip_teardown = True
    if quiet:
        return
    lines = sum(stats.lines for stats in result.inputs)
    bad = sum(stats.bad_lines for stats in result.inputs)
    out.print(f"{site}: {lines:,} lines read ({bad:,} unreadable)", markup=False)
    if not result.incidents:
        out.print("  no incident found", markup=False)
    for incident in result.incidents:
        vectors = ", ".join(v.value for v in incident.vectors) or "-"
        end_format = "%H:%M:%S" if incident.end.date() == incident.start.date() else "%Y-%m-%d %H:%M:%S"
        out.print(
            f"  {incident.id}: {incident.kind.value} {incident.start:%Y-%m-%d %H:%M:%S}"
            f" to {incident.end.strftime(end_format)} UTC, peak {incident.peak_rps:,.0f} req/s,"
            f" {len(incident.attackers):,} attackers, vectors: {vectors}",
            markup=False,
        )
    for name in ("report.html", "report.json"):
        if name in result.files:
            out.print(f"{name}: {result.files[name].resolve()}", markup=False)


@app.command()
def correlate(
    inputs: Annotated[
        list[Path], typer.Argument(help="Sites' bundle.json or report.json files, or folders holding one.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for campaigns.json, campaigns.html, campaigns.stix.json.")
    ],
    key_file: KeyFileOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Link incidents of several outlets into campaigns, from their bundles, and write them into --out.

    Example: floodwall correlate a/bundle.json b/bundle.json c/bundle.json --out campaigns/ --key-file coalition.key
    """
    from floodwall.correlate import correlate as run_correlation

    _setup(None, quiet, verbose)
    result = run_correlation(inputs, out_dir, key=_coalition_key(key_file))
    if quiet:
        return
    campaigns = result.document["campaigns"]
    several = [c for c in campaigns if len(c["incidents"]) > 1]
    out.print(
        f"{len(result.incidents)} incidents of {len({i.site for i in result.incidents})} sites: "
        f"{len(campaigns)} campaigns ({len(several)} of several incidents), {len(result.document['links'])} links",
        markup=False,
    )
    for c in several:
        out.print(
            f"  {c['id']} (confidence {c['confidence']:.2f}): {len(c['incidents'])} incidents on "
            f"{', '.join(c['sites'])}, {c['first_seen']} to {c['last_seen']}",
            markup=False,
        )
    out.print(f"campaigns: {result.files['campaigns.json'].resolve()}", markup=False)


@app.command()
def simulate(
    scenario: Annotated[
        str,
        typer.Option(
            "--scenario",
            help="A built-in scenario (hano-like, residential-proxies, flash-crowd, "
            "scanner, coalition) or a scenario TOML file.",
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for <site>.access.log files and truth.json.")],
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: the scenario's).")] = None,
    scale: Annotated[float, typer.Option("--scale", help="Multiplies traffic volume (0.01 for a quick run).")] = 1.0,
    gzip: Annotated[bool, typer.Option("--gzip", help="Write .access.log.gz files.")] = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Write realistic, labelled access logs of sites under attack, and their ground truth (truth.json).

    Example: floodwall simulate --scenario hano-like --out sim/ --scale 0.1
    """
    from rich.progress import MofNCompleteColumn

    from floodwall.simulate import SimulationProgress, load_scenario
    from floodwall.simulate import simulate as run_simulation

    _setup(None, quiet, verbose)
    chosen = load_scenario(scenario)
    progress: Progress | None = None
    if _show_progress(quiet):
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
    with progress or nullcontext():
        task = progress.add_task(f"simulating {chosen.name}", total=None) if progress else None

        def report(state: SimulationProgress) -> None:
            if progress is not None and task is not None:
                progress.update(
                    task,
                    completed=state.lines_written,
                    total=state.lines_expected,
                    description=f"simulating {state.site}",
                )

        summary = run_simulation(chosen, out_dir, seed=seed, scale=scale, compress=gzip, progress=report)
    if not quiet:
        out.print(
            f"{summary.scenario}: {summary.lines:,} lines in {len(summary.logs)} log(s), "
            f"{summary.incidents} incidents, seed {summary.seed}, scale {summary.scale:g}; truth in {summary.truth}",
            markup=False,
        )


@app.command()
def score(
    truth_dir: Annotated[Path, typer.Option("--truth", help="The folder simulate wrote (with truth.json).")],
    results_dir: Annotated[
        Path, typer.Option("--results", help="One folder per site with report.json, and campaigns/campaigns.json.")
    ],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Where to write the scores as JSON (default RESULTS/score.json).")
    ] = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Score analyze's and correlate's results against simulate's ground truth.

    Example: floodwall score --truth sim/ --results results/
    """
    import json

    from floodwall.score import score as run_score

    _setup(None, quiet, verbose)
    document = run_score(truth_dir, results_dir)
    target = out_file or results_dir / "score.json"
    try:
        target.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{target}: cannot write the scores: {exc.strerror}") from None
    if quiet:
        return
    overall = document["overall"]
    rows = [(name, site) for name, site in document["sites"].items()] + [("overall", overall)]
    for name, part in rows:
        a, i = part["attackers"], part["incidents"]
        fp = part["false_positives"]
        out.print(
            f"{name}: attackers P {a['precision']:.3f} R {a['recall']:.3f} F1 {a['f1']:.3f}; "
            f"incidents P {i['precision']:.3f} R {i['recall']:.3f}; vectors {part['vector_agreement']:.3f}; "
            f"markers {part['markers_found']:.3f}; false positives: {fp['readers']} readers, "
            f"{fp['flash_crowd']} flash-crowd, {fp['crawlers']} crawlers, {fp['monitors']} monitors",
            markup=False,
        )
    c = overall["campaigns"]
    out.print(
        f"campaigns: pairwise P {c['pairwise_precision']:.3f} R {c['pairwise_recall']:.3f}, "
        f"ARI {c['adjusted_rand_index']:.3f}; scores in {target}",
        markup=False,
    )


@app.command()
def watch(
    log: Annotated[Path, typer.Argument(help="The access log to follow (like tail -F: survives rotation).")],
    site: Annotated[str, typer.Option("--site", help="The site's name.")],
    enforce: Annotated[
        list[str] | None,
        typer.Option(
            "--enforce",
            help="Where decisions take effect, repeatable: nginx-map:PATH (a geo include; `nginx -t`, then "
            "`nginx -s reload` at most every --reload-min-interval seconds) or nftables:FAMILY/TABLE/SET (sets with "
            "timeouts, e.g. inet/floodwall/banned). Replaces [watch] enforce. Without any, decisions are only "
            "stored and printed.",
        ),
    ] = None,
    store_url: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Where decisions live: sqlite:///PATH, redis://HOST, memory:// "
            "(default: [watch] store, else sqlite in --state-dir, STATE_DIR/floodwall-state.db).",
        ),
    ] = None,
    state_dir: StateDirOption = Path(),
    reload_min_interval: Annotated[
        float | None,
        typer.Option(
            "--reload-min-interval",
            help="Fewest seconds between nginx reloads (default: [watch] reload_min_interval_s, 5).",
            min=0,
        ),
    ] = None,
    decision_endpoint: Annotated[
        str | None,
        typer.Option(
            "--decision-endpoint",
            help="Serve nginx's auth_request decision endpoint (ban 403, challenge 401 and the challenge page, "
            "allow 204; from memory) on this loopback HOST:PORT, or `on` for [watch] decision_endpoint_listen "
            "(127.0.0.1:9181); `off` turns off [watch] decision_endpoint.",
        ),
    ] = None,
    fmt: FormatOption = LogFormatChoice.auto,
    tz: TzOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Follow a live access log, detect floods as they start, and enforce bans until Ctrl-C.

    Decisions are kept in the store, so a restart re-applies them; they expire on time. Prints one line per new
    decision and a summary on exit. Options override the config file's [watch] section.

    Example: floodwall watch /var/log/nginx/access.log --site example-news
    --enforce nginx-map:/etc/nginx/floodwall/banned.conf --enforce nftables:inet/floodwall/banned
    --decision-endpoint 127.0.0.1:9181
    """
    import signal

    from floodwall.authz import DecisionEndpoint, parse_listen
    from floodwall.edge.challenge import Challenger, secret_from_settings
    from floodwall.enforce import enforcer_from_target
    from floodwall.store import DecisionCache, store_from_url
    from floodwall.types import Enforcer
    from floodwall.watch import Watcher, WatchEvent

    settings = _setup(config, quiet, verbose)
    options = settings.watch
    interval = options.reload_min_interval_s if reload_min_interval is None else reload_min_interval
    targets = enforce if enforce else options.enforce
    enforcers: list[Enforcer] = [enforcer_from_target(target, min_interval_s=interval) for target in targets]
    listen: str | None = options.decision_endpoint_listen if options.decision_endpoint else None
    if decision_endpoint is not None:
        choice = decision_endpoint.strip().lower()
        listen = None if choice == "off" else options.decision_endpoint_listen if choice == "on" else decision_endpoint
    endpoint: DecisionEndpoint | None = None
    if listen is not None:
        parse_listen(listen, "--decision-endpoint")  # a bad address is bad usage, before anything starts
        cache = DecisionCache()
        challenge = settings.edge.challenge
        challenger = Challenger(challenge, settings.site.contact, secret_from_settings(challenge))
        endpoint = DecisionEndpoint(listen, cache, challenger)
        enforcers.append(cache)  # kept current by the watcher like every enforcer: restored, decided, expired
    store_url = store_url or options.store
    if store_url is None:
        state_dir.mkdir(parents=True, exist_ok=True)
        store_url = f"sqlite:///{state_dir / 'floodwall-state.db'}"
    store = store_from_url(store_url)

    def show(event: WatchEvent) -> None:
        if quiet:
            return
        if event.kind == "error":
            err.print(f"floodwall: error: {event.message}", markup=False)
        elif event.kind == "restored" and event.decisions:
            out.print(f"{len(event.decisions):,} active decisions restored from {store.url}", markup=False)
        elif event.kind == "decision":
            for d in event.decisions:
                reason = d.reasons[0] if d.reasons else "-"
                out.print(
                    f"{d.action.value} {d.target} until {d.expires:%Y-%m-%d %H:%M:%S} UTC: {reason}", markup=False
                )
        elif event.kind in ("expired", "revoked"):
            out.print(f"{event.kind}: {', '.join(event.targets)}", markup=False)

    watcher = Watcher(
        log,
        site=site,
        store=store,
        enforcers=enforcers,
        settings=settings,
        fmt=None if fmt is LogFormatChoice.auto else fmt.value,
        tz=tz,
        on_event=show,
    )
    previous = {sig: signal.signal(sig, lambda *_: watcher.stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if endpoint is not None:
            endpoint.start()
        if not quiet:
            out.print(f"watching {log} for {site}; decisions in {store.url}; Ctrl-C to stop", markup=False)
            if endpoint is not None:
                out.print(f"decision endpoint for nginx auth_request on {endpoint.host}:{endpoint.port}", markup=False)
        summary = watcher.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if endpoint is not None:
            endpoint.stop()
        store.close()
    if not quiet:
        made = ", ".join(f"{count:,} {action}" for action, count in sorted(summary.decisions.items())) or "none"
        out.print(
            f"{site}: {summary.lines:,} lines in {summary.batches:,} batches; decisions: {made}; "
            f"{summary.restored:,} restored, {summary.expired:,} expired, {summary.revoked:,} revoked, "
            f"{summary.errors:,} enforcer errors",
            markup=False,
        )


@app.command("nginx-config")
def nginx_config(
    origin: Annotated[str, typer.Option("--origin", help="The origin server, e.g. http://127.0.0.1:8080.")],
    server_name: Annotated[str, typer.Option("--server-name", help="The site's host name.")],
    deny_include: Annotated[
        Path,
        typer.Option("--deny-include", help="The geo include `watch --enforce nginx-map:PATH` writes (created empty)."),
    ] = Path("/etc/nginx/floodwall/banned.conf"),
    cache_path: Annotated[Path, typer.Option("--cache-path", help="The proxy cache folder.")] = Path(
        "/var/cache/nginx/floodwall"
    ),
    log_path: Annotated[
        Path, typer.Option("--log-path", help="The access log, in the format `watch` reads best.")
    ] = Path("/var/log/nginx/floodwall-access.log"),
    listen: Annotated[str, typer.Option("--listen", help="nginx `listen` value, e.g. 80 or 127.0.0.1:8081.")] = "80",
    auth_request: Annotated[
        str | None,
        typer.Option(
            "--auth-request",
            help="Put every request to `watch --decision-endpoint HOST:PORT` first (auth_request): bans refused, "
            "challenged clients sent to the challenge page it serves.",
        ),
    ] = None,
) -> None:
    """Print nginx configuration for the http {} context: log format, cache, limits, the deny include, a server.

    The cache key leaves the query string out for anonymous GETs of HTML pages, so cache-busting floods hit the
    cache; the trade-off: a page that depends on another query parameter than search or pagination (s, q, page,
    paged, p, preview) is served as if it had none. The deny include is created, empty, if missing.

    Example: floodwall nginx-config --origin http://127.0.0.1:8080 --server-name www.example-news.org
    > /etc/nginx/conf.d/floodwall.conf
    """
    from floodwall.enforce.nginx_config import NginxSite, render_site

    site = NginxSite(
        origin=origin,
        server_name=server_name,
        deny_include=str(deny_include),
        cache_path=str(cache_path),
        log_path=str(log_path),
        listen=listen,
        auth_request=auth_request,
    )
    text = render_site(site)
    if not deny_include.exists():
        try:
            deny_include.parent.mkdir(parents=True, exist_ok=True)
            deny_include.write_text("# addresses banned by floodwall watch\n", encoding="ascii")
        except OSError as exc:
            raise InputError(f"{deny_include}: cannot create the deny include: {exc.strerror}") from None
    out.print(text, markup=False, end="")


@app.command()
def edge(
    origin: Annotated[
        str | None, typer.Option("--origin", help="The origin server, e.g. http://127.0.0.1:8080 (or in the config).")
    ] = None,
    listen: Annotated[
        str | None, typer.Option("--listen", help="Where readers connect, HOST:PORT (default 127.0.0.1:8080).")
    ] = None,
    admin: Annotated[
        str | None,
        typer.Option("--admin", help="Admin listener HOST:PORT: health, metrics, decisions (default 127.0.0.1:9180)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Worker processes (default: one per core).", min=1, max=256)
    ] = None,
    access_log: Annotated[
        str | None,
        typer.Option("--access-log", help="The edge's access log (combined plus extras; floodwall analyze reads it)."),
    ] = None,
    store_url: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Where decisions live: sqlite:///PATH, redis://HOST, memory:// (default: sqlite beside the "
            "access log, else in --state-dir).",
        ),
    ] = None,
    state_dir: StateDirOption = Path(),
    config: ConfigOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Run the protective reverse proxy in front of one origin until Ctrl-C or SIGTERM (SIGHUP: graceful restart).

    Serves anonymous pages from its cache, challenges or bans what the live detector convicts, limits each
    client's rate, refuses breach attempts, and writes an access log that `floodwall analyze` reads.

    Example: floodwall edge --origin http://127.0.0.1:8081 --listen 0.0.0.0:80
    --access-log /var/log/floodwall/access.log
    """
    from floodwall.edge.job import with_overrides
    from floodwall.edge.workers import EdgeEvent, Supervisor

    overrides = {
        "origin": origin,
        "listen": listen,
        "admin": admin,
        "workers": workers,
        "access_log": access_log,
        "store": store_url,
    }
    settings = with_overrides(_setup(config, quiet, verbose), **overrides)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        if settings.edge.access_log:  # the default store lives beside it
            Path(settings.edge.access_log).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{exc.filename}: cannot create the folder: {exc.strerror}") from None

    def show(event: EdgeEvent) -> None:
        if event.kind == "reload-failed":
            err.print(f"floodwall: error: {event.message}", markup=False)
        elif not quiet and event.kind == "started":
            out.print(
                f"edge for {settings.edge.origin}: {event.message}; Ctrl-C to stop, SIGHUP to restart gracefully",
                markup=False,
            )
        elif not quiet:
            out.print(f"edge {event.kind}: {event.message}", markup=False)
        out.file.flush()  # each line as it happens, also into a pipe or a service manager's journal

    supervisor = Supervisor(
        settings,
        state_dir=state_dir,
        reload=lambda: with_overrides(_settings(config), **overrides),
        on_event=show,
    )
    supervisor.run()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI and exit with the contract's status codes."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="floodwall", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("floodwall: interrupted")
        sys.exit(130)
    except typer.TyperException as exc:
        # Usage errors: Typer prints the usage line and the message, as click does.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"floodwall: error: {exc}", markup=False)
        sys.exit(2 if exc.exit_code == 1 else exc.exit_code)
    except InputError as exc:
        err.print(f"floodwall: error: {exc}", markup=False)
        sys.exit(2)
    except FloodwallError as exc:
        err.print(f"floodwall: error: {exc}", markup=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("floodwall: interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:
        if _State.verbose:
            traceback.print_exc()
        err.print(
            f"floodwall: internal error: {type(exc).__name__}: {exc} (run with --verbose for the traceback)",
            markup=False,
        )
        sys.exit(1)
    sys.exit(0)


def run() -> NoReturn:
    """The console script and `python -m floodwall`: `main`, and after `analyze` an exit without the interpreter's
    teardown. Freeing a finished run's frames, threads' pools and modules one by one took 0.3-0.45 s at 1M lines
    (8% of the run); by then the outputs are written and renamed, and the temporary folders removed. Other
    commands (the edge's supervisor and its workers among them) exit the usual way. Tests call `main`."""
    try:
        main()
    except SystemExit as exc:
        if not _State.skip_teardown:
            raise
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    else:  # main always exits; this keeps the type checker and a changed main honest
        code = 0
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe or stream: nothing left to say on it
            stream.flush()
    os._exit(code)
