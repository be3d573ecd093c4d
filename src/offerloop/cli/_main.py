"""The ``offerloop`` command line."""

from __future__ import annotations

import enum
import gc
import getpass
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from offerloop._clock import format_ts, parse_rfc3339, parse_time
from offerloop._errors import Conflict, InvalidInput, OfferloopError

if TYPE_CHECKING:  # imported where a command needs them: --help stays fast
    from offerloop._settings import Settings
    from offerloop._system import Offerloop
    from offerloop.training import Estimate

__all__ = ["app", "main"]

app = typer.Typer(
    name="offerloop",
    help="Personalised promotions, delivered continuously.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # plain click help: rich's help renderer (with markdown) alone costs ~0.1 s per command
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# piped (CI, tee, a file): tables as wide as they need, never cut at 80 columns
out = Console() if sys.stdout.isatty() else Console(width=240)
err = Console(stderr=True, soft_wrap=True)  # an error is one line, whatever the terminal


def _print_version(value: bool) -> None:
    if value:
        from offerloop._version import __version__

        sys.stdout.write(f"offerloop {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version, exit."
        ),
    ] = False,
) -> None:
    """Personalised promotions, delivered continuously."""


JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


class LogLevel(enum.StrEnum):
    """How much ``serve`` logs."""

    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"


def _json(doc: Any) -> None:
    """Write ``doc`` as one JSON document (what --json prints: parseable, nothing else)."""
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


DataDir = Annotated[
    str | None, typer.Option("--data-dir", help="Data directory (setting data_dir).")
]
Config = Annotated[
    Path | None, typer.Option("--config", help="Settings file (default ./offerloop.toml).")
]
CampaignOpt = Annotated[
    str | None, typer.Option("--campaign", help="Campaign id (default: the default campaign).")
]
Reason = Annotated[str, typer.Option("--reason", help="Why; kept in the history.")]
Actor = Annotated[str | None, typer.Option("--actor", help="Who; default: the OS user.")]


def _settings(data_dir: str | None, config: Path | None, **overrides: Any) -> Settings:
    from offerloop._settings import load_settings

    return load_settings(config, data_dir=data_dir, **overrides)


@contextmanager
def _opened(
    data_dir: str | None, config: Path | None, service: bool = False, **overrides: Any
) -> Iterator[Offerloop]:
    """The data directory's offerloop, bootstrapped on first use, closed afterwards."""
    settings = _settings(data_dir, config, **overrides)
    from offerloop._system import Offerloop

    system = Offerloop(settings.for_service() if service else settings)
    try:
        system.bootstrap(actor="cli")
        yield system
    finally:
        system.close()


def _when(option: str, value: str | None, end_of_day: bool = False) -> float | None:
    """A date or RFC 3339 time given on the command line (None: not given)."""
    if value is None:
        return None
    try:
        return parse_time(value, end_of_day=end_of_day)
    except ValueError as exc:
        raise InvalidInput(f"{option}: {exc}") from exc


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (setting host; default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="TCP port (setting port; default 8000).", min=1, max=65535),
    ] = None,
    schedule: Annotated[
        str | None,
        typer.Option(help="Also run the pipeline in this process: 24h or a cron expression."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Service processes sharing the port (needs redis_url: the online state must "
            "be shared). One process decides on one core.",
        ),
    ] = 1,
    clock: Annotated[
        str | None,
        typer.Option(
            help="Setting clock: 'manual' or 'manual:<RFC 3339>' to drive time through "
            "POST /v1/admin/clock (backtests, rehearsals); default 'system'."
        ),
    ] = None,
    log_level: Annotated[
        LogLevel, typer.Option(help="What the service logs to stderr (offerloop and uvicorn).")
    ] = LogLevel.warning,
    access_log: Annotated[
        bool, typer.Option(help="A line per request (client, method, path, status) on stdout.")
    ] = False,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Run the HTTP service (decisions, events, metrics), optionally with the pipeline's
    schedule (setting pipeline_schedule) running inside it."""
    import logging

    logging.basicConfig(
        level=log_level.value.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from offerloop._schedule import parse_schedule
    from offerloop.pipeline import PipelineScheduler, run_pipeline
    from offerloop.serving import create_app
    from offerloop.serving._server import run_until_stopped, server_config
    from offerloop.serving._workers import run_workers

    settings = _settings(data_dir, config, clock=clock, host=host, port=port)
    host, port = settings.host, settings.port
    when = schedule if schedule is not None else settings.pipeline_schedule
    parsed = parse_schedule(when, settings.pipeline_timezone) if when else None
    if workers > 1 and settings.clock != "system":
        raise InvalidInput(
            "--workers > 1 runs on the system clock: each process would keep its own manual "
            "clock (drive one process)"
        )
    if workers > 1:
        if not settings.redis_url:
            raise InvalidInput(
                "--workers > 1 needs redis_url: each process would keep its own in-memory "
                "online features (run one process on the embedded backend)"
            )
        if parsed is not None:
            raise InvalidInput(
                "--workers > 1 runs no pipeline schedule; run `offerloop pipeline schedule` "
                "as its own process (or unset pipeline_schedule)"
            )
        with _opened(data_dir, config, service=True) as system:
            system.player_features.warm()  # built once here; the workers find it in Redis
        if config is not None:
            os.environ["OFFERLOOP_CONFIG"] = str(config)
        if data_dir is not None:
            os.environ["OFFERLOOP_DATA_DIR"] = data_dir
        err.print(f"serving on http://{host}:{port} with {workers} processes")
        run_workers(host, port, workers, log_level.value, access_log)
        return
    with _opened(data_dir, config, True, clock=clock) as system, _one_server(system):
        system.player_features.warm()  # online features from the event log before the first request
        system.start_background()  # decisions never wait on a store from here on
        # the state built at start (online features, models) is long-lived: keep it out of
        # the garbage collector's full passes, which otherwise stall requests as it grows
        gc.collect()
        gc.freeze()
        pf = system.player_features
        built = (
            f"online features from a {pf.restore_note}"
            if pf.restored is not None
            else f"online features rebuilt from {pf.rebuilt_events} events"
            + (f" ({pf.restore_note})" if pf.restore_note else "")
        )
        err.print(
            f"{built} in {pf.rebuild_seconds:.1f} s; serving on http://{host}:{port}",
            highlight=False,
        )
        sched = None
        if parsed is not None:
            sched = PipelineScheduler(system, parsed)
            sched.start()
            err.print(f"pipeline schedule {when!r}: next run at {format_ts(sched.next_at)}")
        try:
            server_config_ = server_config(
                create_app(
                    system,
                    service=True,
                    pipeline=lambda campaign: run_pipeline(system, campaign),
                ),
                host,
                port,
                metrics=system.metrics,
                header_timeout=settings.http_header_timeout_seconds,
                idle_timeout=settings.http_idle_timeout_seconds,
                log_level=log_level.value,
                access_log=access_log,
            )
            run_until_stopped(server_config_)
        finally:
            if sched is not None:
                sched.stop()


@contextmanager
def _one_server(system: Offerloop) -> Iterator[None]:
    """The embedded backend serves from one process: its online features live in that
    process, so a second server on the same data directory would answer from state that
    silently differs. Refused with a clear message; PostgreSQL + Redis serve from many."""
    if system.backend.name != "sqlite":
        yield
        return
    try:
        lock = system.backend.run_lock("serve")
        lock.__enter__()
    except Conflict:
        raise Conflict(
            f"another `offerloop serve` is running on data directory {system.settings.data_dir}: "
            "the embedded backend serves from one process (set database_url and redis_url to "
            "serve from several)"
        ) from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


@app.command()
def demo(
    days: Annotated[int, typer.Option(min=1, max=365, help="Simulated days.")] = 14,
    players: Annotated[int, typer.Option(min=10, max=100_000, help="Simulated players.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the world and of decisions.")] = 7,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the table as JSON here.")
    ] = None,
    fresh: Annotated[bool, typer.Option(help="Delete the data directory first.")] = False,
    feature_delay: Annotated[
        str | None,
        typer.Option(help="Serve features this stale (e.g. 24h), to measure what it costs."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="Run on PostgreSQL (schema offerloop_demo) instead of SQLite."),
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="Keep online features in Redis (prefix offerloop_demo:).")
    ] = None,
    taste_change_day: Annotated[
        int,
        typer.Option(
            min=-1,
            help="From this day on the grinders' favourite bundle and message move (-1: never).",
        ),
    ] = -1,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Play the whole loop on a simulated game: random first, then learned releases."""
    from offerloop.features import parse_duration
    from offerloop.sim._demo import DemoConfig, run_demo

    shared: dict[str, Any] = {}
    if database_url:
        shared.update(database_url=database_url, database_schema="offerloop_demo")
    if redis_url:
        shared.update(redis_url=redis_url, redis_prefix="offerloop_demo:")
    settings = _settings(data_dir or "offerloop-demo", config, **shared)
    if feature_delay is not None:
        try:
            delay = parse_duration(feature_delay)
        except ValueError as exc:
            raise InvalidInput(f"--feature-delay: {exc}") from exc
        settings = settings.replace(feature_delay_seconds=delay)
    table = Table(title=f"offerloop demo: {players} players, {days} days (revenue per decision)")
    for col in (
        "day",
        "decisions",
        "served",
        "random",
        "oracle",
        "realised",
        "versions live",
        "canary",
    ):
        table.add_column(col, justify="left" if col in ("versions live", "canary") else "right")
    rows = []
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    demo_config = DemoConfig(days, players, seed, fresh, taste_change_day=taste_change_day)
    if err.is_terminal:
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("simulating days", total=days)
            result = run_demo(settings, demo_config, on_day=lambda _s: progress.advance(task))
    else:  # piped (CI, tee): a line per simulated day instead of a bar nobody sees
        started = time.monotonic()

        def on_day(s: Any) -> None:
            j = s.as_json()
            err.print(
                f"day {j['day'] + 1}/{days} simulated in {time.monotonic() - started:.0f} s: "
                f"served {j['released']:.3f} per decision, oracle {j['oracle']:.3f}",
                highlight=False,
            )

        result = run_demo(settings, demo_config, on_day=on_day)
    for s in result:
        j = s.as_json()
        rows.append(j)
        table.add_row(
            str(j["day"]),
            str(j["decisions"]),
            f"{j['released']:.3f}",
            f"{j['random']:.3f}",
            f"{j['oracle']:.3f}",
            f"{j['realised']:.3f}",
            ", ".join(j["released_versions"]),
            j["canary"] or "-",
        )
    out.print(table)
    for j in rows:
        out.print(f"night {j['day']}: {j['night']}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(rows, indent=2))
        out.print(f"table written to {json_out}")
    report_path = (settings.path / "report.html").resolve()
    out.print(f"report (open in a browser): {report_path}", highlight=False)


@app.command()
def report(
    out_path: Annotated[Path, typer.Option("--out", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    campaign: CampaignOpt = None,
    at: Annotated[
        str | None,
        typer.Option(help="Report as of this RFC 3339 time (default: now), e.g. for a demo."),
    ] = None,
    start: Annotated[str | None, typer.Option(help="From this date or RFC 3339 time.")] = None,
    end: Annotated[
        str | None,
        typer.Option(
            help="Up to this date (inclusive) or RFC 3339 time; default: now, or the newest "
            "decision when there is none in the 14 days before now."
        ),
    ] = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Write the dashboard's views as one static HTML file (no server, no internet)."""
    t0 = _when("--start", start)
    t1 = _when("--end", end, end_of_day=True)
    from offerloop._clock import ManualClock
    from offerloop.monitoring import Monitor, write_report

    clock = None
    if at is not None:
        try:
            clock = ManualClock(parse_rfc3339(at))
        except ValueError as exc:
            raise InvalidInput(f"--at: {exc}") from exc
    from offerloop._system import Offerloop

    system = Offerloop(_settings(data_dir, config), clock)
    try:
        system.bootstrap(actor="cli")
        with Monitor(system) as monitor:
            path = write_report(monitor, out_path, campaign, t0, t1)
    finally:
        system.close()
    out.print(f"report written to {path}", highlight=False)


@app.command("retrain")
def retrain_cmd(
    campaign: CampaignOpt = None,
    actor: Actor = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Train on decisions with final rewards, register, gate, deploy as the evidence allows
    (refresh of the released learner, canary, or shadow)."""
    from offerloop.pipeline import retrain

    with _opened(data_dir, config) as system:
        r = retrain(system, campaign, actor=_actor(actor))
    where = (
        f"{r.deployed} deployed ({r.action})" if r.deployed else "not deployed (failed the gate)"
    )
    out.print(
        f"registered {len(r.candidates)} candidates from {r.rows} decisions; "
        f"best {r.version}, {where}"
    )
    out.print(
        f"offline estimate {r.candidate.value:.4f} per decision "
        f"(95% CI {r.candidate.lower:.4f}..{r.candidate.upper:.4f}, ESS {r.candidate.ess:.0f})"
    )
    if r.release is not None:
        out.print(f"release {r.release_version}: {r.release.value:.4f} per decision")
    for reason in r.reasons:
        out.print(reason)


@app.command()
def deploy(
    version: str,
    shadow: Annotated[
        bool, typer.Option("--shadow", help="Deploy in shadow (the default).")
    ] = True,
    reason: Reason = "",
    actor: Actor = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Deploy a version in shadow: scored and logged on live traffic, never shown."""
    if not shadow:
        raise InvalidInput("only --shadow deployment exists; use `offerloop release` to release")
    with _opened(data_dir, config) as system:
        system.deployments.deploy(version, "shadow", actor=_actor(actor), reason=reason)
    out.print(f"{version} deployed in shadow")


@app.command()
def release(
    version: str,
    reason: Reason = "",
    actor: Actor = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Release a version: it serves its campaign's players from now on."""
    with _opened(data_dir, config) as system:
        system.deployments.release(version, actor=_actor(actor), reason=reason)
    out.print(f"{version} released")


@app.command()
def canary(
    version: str,
    share: Annotated[float, typer.Option(help="Share of players it serves, e.g. 0.1.")],
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace the canary that runs now, if any.")
    ] = False,
    reason: Reason = "",
    actor: Actor = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Serve a version to a stable share of players (the rest keep the release). Over a
    running canary of another version only with --replace."""
    with _opened(data_dir, config) as system:
        replaced = system.deployments.canary(
            version, share, actor=_actor(actor), reason=reason, replace=replace
        )
    note = f" (replacing {replaced})" if replaced else ""
    out.print(f"{version} is the canary for {share:.0%} of players{note}")


@app.command()
def rollback(
    campaign: CampaignOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be released; change nothing.")
    ] = False,
    reason: Reason = "",
    actor: Actor = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Release again the version released before the current one (one step back per call)."""
    with _opened(data_dir, config) as system:
        c = system.campaign(campaign).id
        if dry_run:
            gone, back = system.deployments.rollback_pair(c)
            out.print(f"would roll back {c}: {gone} out, {back} released (dry run)")
            return
        target = system.deployments.rollback(c, actor=_actor(actor), reason=reason)
    out.print(f"rolled back: {target} released")


@app.command()
def undeploy(
    version: str,
    reason: Reason = "",
    actor: Actor = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Take a shadow or canary version out of deployment."""
    with _opened(data_dir, config) as system:
        mode = system.deployments.undeploy(
            version, actor=_actor(actor), reason=reason, missing_ok=False
        )
    out.print(f"{version} undeployed (was {mode})")


@app.command()
def status(
    campaign: CampaignOpt = None,
    as_json: JsonOpt = False,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """What is released, which canary serves which share, and what runs in shadow."""
    with _opened(data_dir, config) as system:
        st = system.deployments.state(system.campaign(campaign).id)
    if as_json:
        _json(
            {
                "campaign": st.campaign,
                "released": st.released,
                "canary": st.canary,
                "canary_share": st.canary_share if st.canary else None,
                "shadows": list(st.shadows),
            }
        )
        return
    canary = f"{st.canary} at {st.canary_share:.0%}" if st.canary else "-"
    out.print(
        f"campaign {st.campaign}: released {st.released}; canary {canary}; "
        f"shadow {', '.join(st.shadows) or '-'}"
    )


@app.command()
def history(
    campaign: CampaignOpt = None,
    at: Annotated[
        str | None, typer.Option("--at", help="RFC 3339 time: which version was live then.")
    ] = None,
    as_json: JsonOpt = False,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Every deployment transition (or the version live at --at)."""
    from offerloop.registry import transition_doc

    with _opened(data_dir, config) as system:
        c = system.campaign(campaign).id
        if at is not None:
            try:
                ts = parse_rfc3339(at)
            except ValueError as exc:
                raise InvalidInput(f"--at: {exc}") from exc
            live = system.deployments.live_at(c, ts)
            if as_json:
                _json({"campaign": c, "at": format_ts(ts), "released": live})
                return
            out.print(live or "no version was released then")
            return
        transitions = system.deployments.history(c)
        if as_json:
            _json(
                {
                    "campaign": c,
                    "transitions": [transition_doc(t) for t in transitions],
                }
            )
            return
        table = Table(title=f"deployment history of {c}")
        for col in ("when", "action", "version", "from", "to", "actor", "reason"):
            table.add_column(col, no_wrap=col in ("when", "version"))
        for t in transitions:
            table.add_row(
                format_ts(t.ts),
                t.action,
                t.version,
                t.from_mode or "-",
                t.to_mode or "-",
                t.actor,
                t.reason,
            )
        out.print(table)


models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    campaign: CampaignOpt = None,
    as_json: JsonOpt = False,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Registered versions with their data, offline estimate and deployment."""
    with _opened(data_dir, config) as system:
        if as_json:
            from offerloop.registry import model_doc

            _json(
                [
                    model_doc(m, system.deployments.state(m.campaign).mode_of(m.version))
                    for m in system.registry.list(campaign)
                ]
            )
            return
        table = Table(title="model registry")
        for col in (
            "version",
            "campaign",
            "created",
            "rows",
            "OPE (DR)",
            "uplift",
            "mode",
            "sha256",
        ):
            table.add_column(col)
        for m in system.registry.list(campaign):
            ope = m.metrics.get("ope_dr", {})
            up = m.metrics.get("uplift_dr", {})
            mode = system.deployments.state(m.campaign).mode_of(m.version) or "-"
            table.add_row(
                m.version,
                m.campaign,
                format_ts(m.created_at),
                str(m.lineage.get("rows", "-")),
                f"{ope['value']:.4f} ±{1.96 * ope['se']:.4f}" if ope else "-",
                f"{up['value']:+.4f}" if up else "-",
                mode,
                m.sha256[:12],
            )
        out.print(table)


@models_app.command("show")
def models_show(
    version: str, as_json: JsonOpt = False, data_dir: DataDir = None, config: Config = None
) -> None:
    """Everything the registry knows about one version: lineage, parameters, estimates (JSON;
    with --json, plain, without colours)."""
    with _opened(data_dir, config) as system:
        m = system.registry.get(version)
        mode = system.deployments.state(m.campaign).mode_of(m.version) or "not deployed"
    doc = {
        "version": m.version,
        "campaign": m.campaign,
        "kind": m.kind,
        "created_at": format_ts(m.created_at),
        "mode": mode,
        "artifact": m.artifact,
        "sha256": m.sha256,
        "params": dict(m.params),
        "lineage": dict(m.lineage),
        "metrics": dict(m.metrics),
    }
    if as_json:
        _json(doc)
        return
    out.print_json(json.dumps(doc, default=str))


@app.command("settings")
def settings_cmd(
    markdown: Annotated[bool, typer.Option(help="Print the docs table of all settings.")] = False,
    toml: Annotated[
        bool, typer.Option(help="Print offerloop.example.toml: every setting, commented.")
    ] = False,
    as_json: JsonOpt = False,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Show the effective settings (overrides > OFFERLOOP_* env > offerloop.toml > default);
    secrets masked."""
    from offerloop._settings import settings_markdown, settings_toml, shown

    if markdown:
        sys.stdout.write(settings_markdown())
        return
    if toml:
        sys.stdout.write(settings_toml())
        return
    if as_json:
        _json(shown(_settings(data_dir, config)))
        return
    for k, v in shown(_settings(data_dir, config)).items():
        out.print(f"{k} = {v!r}", highlight=False)


features_app = typer.Typer(help="Feature definitions, backfill and skew.", no_args_is_help=True)
app.add_typer(features_app, name="features")

Since = Annotated[str | None, typer.Option("--since", help="From this date or RFC 3339 time.")]
Until = Annotated[
    str | None, typer.Option("--until", help="Up to this date (inclusive) or RFC 3339 time.")
]


def _time(opt: str, value: str | None, default: float) -> float:
    """``--since``/``--until``: a date (``--until`` includes its day) or an RFC 3339 time."""
    when = _when(opt, value, end_of_day=opt == "--until")
    return default if when is None else when


@features_app.command("list")
def features_list(
    as_json: JsonOpt = False, data_dir: DataDir = None, config: Config = None
) -> None:
    """The feature definitions in force, with their kind, type and default."""
    from offerloop.features import load_features

    fs = load_features(_settings(data_dir, config).features)
    if as_json:
        _json(
            {
                "source": fs.source,
                "features": [
                    {k: v for k, v in vars(f).items() if not callable(v)} | {"kind": f.kind}
                    for f in fs
                ],
            }
        )
        return
    table = Table(title=f"features ({fs.source})")
    for col in ("name", "kind", "type", "default", "definition"):
        table.add_column(col)
    for f in fs:
        spec = {
            k: v
            for k, v in vars(f).items()
            if k not in ("name", "type", "default", "help", "categories", "transform", "scale")
            and v not in ((), None, "")
        }
        table.add_row(
            f.name, f.kind, f.type, repr(f.default), ", ".join(f"{k}={v}" for k, v in spec.items())
        )
    out.print(table)


@features_app.command("show")
def features_show(
    player_id: str, as_json: JsonOpt = False, data_dir: DataDir = None, config: Config = None
) -> None:
    """A player's feature vector as served now."""
    with _opened(data_dir, config) as system:
        now = system.clock.now()
        readings = system.player_features.readings(player_id, now)
        if as_json:
            _json(
                {
                    "player_id": player_id,
                    "as_of": format_ts(now),
                    "features": {
                        name: {
                            "value": r.value,
                            "newest_event_ts": None
                            if r.newest_event_ts is None
                            else format_ts(r.newest_event_ts),
                        }
                        for name, r in readings.items()
                    },
                }
            )
            return
        for name, r in readings.items():
            newest = format_ts(r.newest_event_ts) if r.newest_event_ts is not None else "-"
            out.print(f"{name} = {r.value!r}  (newest event {newest})", highlight=False)


@features_app.command("rebuild")
def features_rebuild(data_dir: DataDir = None, config: Config = None) -> None:
    """Replay the whole event log into the online state (e.g. Redis from PostgreSQL)."""
    with _opened(data_dir, config) as system:
        n = system.player_features.rebuild()
        seconds = system.player_features.rebuild_seconds
        out.print(f"online state rebuilt from {n} events in {seconds:.1f} s")


@features_app.command("backfill")
def features_backfill(
    campaign: CampaignOpt = None,
    since: Since = None,
    until: Until = None,
    feature: Annotated[
        list[str] | None, typer.Option("--feature", help="Only these features (repeatable).")
    ] = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Compute point-in-time the features that logged decisions lack (added since)."""
    import math

    from offerloop.pipeline import backfill

    with _opened(data_dir, config) as system:
        r = backfill(
            system,
            campaign,
            _time("--since", since, 0.0),
            _time("--until", until, math.inf),
            feature or (),
        )
    for w in r.warnings:
        err.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    out.print(
        f"backfilled {r.updated} of {r.decisions} decisions lacking some of: "
        f"{', '.join(r.features) or '-'}"
    )


@features_app.command("skew")
def features_skew(
    campaign: CampaignOpt = None,
    since: Since = None,
    until: Until = None,
    fail: Annotated[bool, typer.Option(help="Exit 1 when any feature disagrees.")] = False,
    as_json: JsonOpt = False,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Compare the values served (logged) with an offline recomputation, per feature."""
    import math

    from offerloop.pipeline import skew_report

    with _opened(data_dir, config) as system:
        r = skew_report(
            system, campaign, _time("--since", since, 0.0), _time("--until", until, math.inf)
        )
    if as_json:
        _json(
            {
                "decisions": r.decisions,
                "defaulted": r.defaulted,
                "ok": r.ok,
                "features": {
                    name: {
                        "compared": n,
                        "mismatches": [
                            {"decision_id": b[0], "served": b[1], "offline": b[2]}
                            for b in r.mismatches[name]
                        ],
                    }
                    for name, n in r.compared.items()
                },
            }
        )
        if fail and not r.ok:
            raise typer.Exit(1)
        return
    table = Table(title=f"training/serving skew over {r.decisions} decisions")
    for col in ("feature", "compared", "mismatches", "example (decision: served vs offline)"):
        table.add_column(col)
    for name, n in r.compared.items():
        bad = r.mismatches[name]
        example = f"{bad[0][0]}: {bad[0][1]!r} vs {bad[0][2]!r}" if bad else ""
        table.add_row(name, str(n), str(len(bad)), example)
    out.print(table)
    if r.defaulted:
        out.print(
            f"{r.defaulted} decisions served on default features (online store unavailable) "
            "not compared",
            highlight=False,
        )
    out.print("no skew" if r.ok else "SKEW: served values differ from offline recomputation")
    if fail and not r.ok:
        raise typer.Exit(1)


pipeline_app = typer.Typer(help="The delivery pipeline.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("run")
def pipeline_run(
    campaign: CampaignOpt = None,
    at: Annotated[
        str | None,
        typer.Option(help="Run as of this RFC 3339 time (backtests; default: now)."),
    ] = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """One run: retrain, gate, shadow, then one controller step; recorded under runs/.

    A run that crashed or failed is resumed (same id and data window)."""
    from offerloop.pipeline import run_pipeline

    clock = None
    if at is not None:
        try:
            clock = f"manual:{format_ts(parse_rfc3339(at))}"
        except ValueError as exc:
            raise InvalidInput(f"--at: {exc}") from exc
    with _opened(data_dir, config, clock=clock) as system:
        doc = run_pipeline(system, campaign)
    out.print_json(json.dumps(doc, default=str))


@pipeline_app.command("schedule")
def pipeline_schedule(
    every: Annotated[
        str | None, typer.Option(help="Interval between runs, e.g. 24h or 30m (UTC-anchored).")
    ] = None,
    cron: Annotated[
        str | None,
        typer.Option(
            help="Or a cron expression ('0 3 * * *', '0 9 * * MON-FRI') or macro ('@daily'), "
            "read in --timezone."
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(help="IANA time zone of --cron (setting pipeline_timezone; default UTC)."),
    ] = None,
    runs: Annotated[int, typer.Option(help="Stop after this many runs (0: never).")] = 0,
    now: Annotated[bool, typer.Option("--now", help="Also run once right away.")] = False,
    campaign: CampaignOpt = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Run the pipeline periodically in this process (runs never overlap, even across
    processes; a crashed run is resumed at the next firing)."""
    from offerloop._schedule import parse_schedule
    from offerloop.pipeline import PipelineScheduler

    if every is not None and cron is not None:
        raise InvalidInput("give either --every or --cron, not both")
    text = cron if cron is not None else (every or "24h")
    zone = timezone or _settings(data_dir, config).pipeline_timezone
    schedule = parse_schedule(text, zone)
    with _opened(data_dir, config) as system:

        def report(o: dict[str, object]) -> None:
            line = f"{o.get('id', '-')}: {o['status']}" + (
                f" ({o['reason']})" if "reason" in o else ""
            )
            out.print(line, highlight=False)
            nxt = sched.next_at
            out.print(f"next run at {format_ts(nxt)}", highlight=False)

        sched = PipelineScheduler(system, schedule, campaign, run_now=now, on_outcome=report)
        where = f" ({zone})" if cron is not None else ""
        out.print(
            f"schedule {text!r}{where}: first run at {format_ts(sched.next_at)}", highlight=False
        )
        sched.run_forever(max_runs=runs)


@pipeline_app.command("runs")
def pipeline_runs(
    as_json: JsonOpt = False, data_dir: DataDir = None, config: Config = None
) -> None:
    """Recorded pipeline runs, oldest first."""
    from offerloop.pipeline import list_runs

    with _opened(data_dir, config) as system:
        runs = list_runs(system.backend)
    if as_json:
        _json(runs)
        return
    table = Table(title="pipeline runs")
    for col in ("id", "started", "status", "winner", "controller"):
        table.add_column(col, no_wrap=col in ("id", "started"))
    for r in runs:
        winner = r.get("retrain", {}).get("winner") or r.get("retrain", {}).get("skipped", "-")
        steps = "; ".join(f"{s['action']} {s['version']}" for s in r.get("controller", []))
        table.add_row(r["id"], r["started_at"], r["status"], str(winner), steps or "-")
    out.print(table)


logs_app = typer.Typer(help="Logged bandit data from other systems.", no_args_is_help=True)
app.add_typer(logs_app, name="logs")


def _cols(text: str | None) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


@logs_app.command("import")
def logs_import(
    path: Path,
    name: Annotated[str, typer.Option(help="Name to store the log under.")],
    ts_col: Annotated[str, typer.Option(help="Timestamp column (epoch s or RFC 3339).")] = "ts",
    action_col: Annotated[str, typer.Option(help="Action (offer) column.")] = "action",
    reward_col: Annotated[str, typer.Option(help="Reward column.")] = "reward",
    propensity_col: Annotated[str, typer.Option(help="Propensity column.")] = "propensity",
    numeric: Annotated[
        str | None, typer.Option(help="Numeric feature columns, a,b; globs allowed ('f_*').")
    ] = None,
    categorical: Annotated[
        str | None,
        typer.Option(help="Categorical columns (dictionary-encoded; hashed if too many values)."),
    ] = None,
    hashed: Annotated[str | None, typer.Option(help="String columns to hash.")] = None,
    hash_buckets: Annotated[int, typer.Option(min=2, max=4096)] = 16,
    max_categories: Annotated[
        int,
        typer.Option(
            min=2,
            max=65536,
            help="A categorical column with more distinct values is hashed into this many.",
        ),
    ] = 256,
    replace: Annotated[bool, typer.Option(help="Overwrite a log of that name.")] = False,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Import a CSV or Parquet file of (timestamp, features, action, reward, propensity)."""
    from offerloop.training import ImportSpec, import_log

    spec = ImportSpec(
        ts_col,
        action_col,
        reward_col,
        propensity_col,
        _cols(numeric),
        _cols(categorical),
        _cols(hashed),
        hash_buckets,
        max_categories,
    )
    log = import_log(_settings(data_dir, config).data_dir, name, path, spec, replace)
    out.print(
        f"imported {len(log.data)} decisions with {len(log.actions)} actions and "
        f"{len(log.encoder.feature_names)} features as log {name!r} (Parquet)",
        highlight=False,
    )
    for note in log.notes:
        out.print(f"  {note}", highlight=False)


@app.command("evaluate")
def evaluate_cmd(
    logs: Annotated[str, typer.Option(help="An imported log, or 'native' (decision log).")],
    policy: Annotated[
        str | None,
        typer.Option(
            help="A registry version, 'random', a learner (linear, gbt, purchase_gbt: "
            "cross-fitted over --folds time blocks), or file:PATH of probabilities."
        ),
    ] = None,
    probabilities: Annotated[
        Path | None,
        typer.Option(
            help="Instead of --policy: a CSV/Parquet file, one row per decision of the log in "
            "order, with one column per offer (the full distribution: every estimator) or a "
            "single 'probability' column of the logged offer (IPS and SNIPS only)."
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(help="A second policy (same forms as --policy): paired comparison."),
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(help="Reward model for DM/DR (default purchase_gbt native, gbt imported)."),
    ] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="Cross-fitting time blocks.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    campaign: CampaignOpt = None,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Off-policy estimates (DM, IPS, SNIPS, DR, SNDR, Switch-DR) of a policy on logged data,
    with intervals that hold for rare rewards, and a warning when the evidence is thin."""
    from offerloop.pipeline import evaluate_offline

    if (policy is None) == (probabilities is None):
        raise InvalidInput("give exactly one of --policy and --probabilities")
    spec = policy if policy is not None else f"file:{probabilities}"
    with _opened(data_dir, config) as system:
        report = evaluate_offline(
            system, logs, spec, baseline=baseline, judge=judge, folds=folds, campaign=campaign
        )
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
        return
    title = (
        f"{report.policy} on {logs}: {report.rows} decisions "
        f"(the logging policy earned {_num(report.logged_value)} per decision)"
    )
    _print_estimates(title, report.estimates)
    if report.difference is not None:
        _print_estimates(f"baseline {report.baseline}", report.baseline_estimates)
        d = report.difference
        verdict = (
            "evidence too thin to decide"
            if not d.usable
            else "better"
            if d.lower > 0
            else "worse"
            if d.upper < 0
            else "no significant difference"
        )
        out.print(
            f"paired doubly robust difference {report.policy} − {report.baseline}: "
            f"{_num(d.value)} per decision, 95% interval {_num(d.lower)} .. {_num(d.upper)}: "
            f"{verdict}",
            highlight=False,
        )
    for note in report.notes:
        out.print(f"note: {note}", highlight=False)
    warned = {w for e in report.estimates.values() for w in e.warnings}
    for w in sorted(warned):
        out.print(f"[yellow]warning:[/yellow] {w}", highlight=False)


def _num(v: float) -> str:
    """Four significant digits, no exponent for everyday sizes, never ``-0``."""
    import math

    if not math.isfinite(v):
        return "inf" if v > 0 else "-inf" if v < 0 else "nan"
    if abs(v) < 1e-12:
        return "0"
    digits = min(10, max(0, 3 - math.floor(math.log10(abs(v)))))
    text = f"{v:,.{digits}f}"
    return "0" if text.strip("-0.,") == "" else text


def _print_estimates(title: str, results: Mapping[str, Estimate]) -> None:
    table = Table(title=title)
    for col in ("estimator", "value per decision", "95% interval", "ESS", "matched", "usable"):
        table.add_column(col)
    for name, e in results.items():
        table.add_row(
            name,
            _num(e.value),
            f"{_num(e.lower)} .. {_num(e.upper)}",
            f"{e.ess:,.0f}",
            f"{e.matched:.0%}",
            "yes" if e.usable else "[yellow]thin[/yellow]",
        )
    out.print(table)


@app.command("quarantine")
def quarantine_cmd(
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Newest this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    data_dir: DataDir = None,
    config: Config = None,
) -> None:
    """Records the database refused for good (kept, never dropped): what, when and why."""
    with _opened(data_dir, config) as system:
        records = system.backend.quarantined(limit)
    if as_json:
        sys.stdout.write(
            json.dumps(
                [
                    {
                        "kind": q.kind,
                        "key": q.key,
                        "at": format_ts(q.at),
                        "reason": q.reason,
                        "payload": q.payload,
                    }
                    for q in records
                ],
                indent=2,
            )
            + "\n"
        )
        return
    if not records:
        out.print("the quarantine is empty", highlight=False)
        return
    table = Table(title=f"quarantine ({len(records)} newest)")
    for col in ("at", "kind", "key", "reason"):
        table.add_column(col, overflow="fold")
    for q in records:
        table.add_row(format_ts(q.at), q.kind, q.key, q.reason)
    out.print(table)


@app.command("check-campaign")
def check_campaign(
    path: Path, as_json: JsonOpt = False, data_dir: DataDir = None, config: Config = None
) -> None:
    """Validate a campaign file and list its offers."""
    from offerloop.campaigns import load_campaign
    from offerloop.features import load_features

    c = load_campaign(path, features=load_features(_settings(data_dir, config).features).names)
    if as_json:
        _json(
            {
                "path": str(path),
                "campaign": c.id,
                "valid": True,
                "offers": [o.doc() for o in c.offers],
                "rules": len(c.rules),
                "caps": [cap.doc() for cap in c.caps],
                "control_share": c.control_share,
                "control": c.control,
                "start": None if c.start is None else format_ts(c.start),
                "end": None if c.end is None else format_ts(c.end),
            }
        )
        return
    restricted = sum(1 for o in c.offers if o.doc()["eligible"])
    out.print(
        f"{path}: campaign {c.id} is valid: {len(c.bundles)} bundles × "
        f"{len(c.messages)} messages = {len(c.offers)} offers, {len(c.rules)} rules, "
        f"{restricted} offers with eligibility conditions, {len(c.caps)} caps"
        + (f", control group {c.control_share:.0%} ({c.control})" if c.control_share else "")
    )


def main(args: list[str] | None = None) -> None:
    """Entry point: user errors print one line and exit non-zero, without a traceback.
    ``args``: the command line without the program name (default: ``sys.argv[1:]``)."""
    try:
        app(args, prog_name="offerloop")
    except InvalidInput as exc:
        err.print(f"[red]error:[/red] {exc.headline}: {exc.message}", highlight=False)
        sys.exit(2)
    except OfferloopError as exc:
        err.print(f"[red]error:[/red] {exc.headline}: {exc.message}", highlight=False)
        sys.exit(1)
    except Exception:
        err.print("[red]internal error[/red] (a bug in offerloop; please report it):")
        traceback.print_exc()
        sys.exit(70)
