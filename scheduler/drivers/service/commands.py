"""CLI commands of the load-cap service: ``greensched serve`` and ``greensched caps ...``.

``caps_app`` is a Typer sub-app (``submit``, ``list``, ``cancel``, ``hash-token``); ``serve``
is a plain command function. ``scheduler/drivers/cli.py`` registers both; ``python -m
scheduler.drivers.service`` runs them on their own.
"""

from __future__ import annotations

import getpass
import logging
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, cast

import pandas as pd
import typer

from scheduler.contracts import UserError, ensure_dir
from scheduler.horizon import iso_time, time_zone

__all__ = ["caps_app", "measure_app", "parse_duration", "serve"]

log = logging.getLogger(__name__)

caps_app = typer.Typer(
    name="caps",
    help="Load caps from grid coordinators: submit, list and cancel them on a running server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ServerOption = Annotated[
    str, typer.Option("--server", "-s", help="HOST:PORT of a running greensched serve")
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", "-t", envvar="GREENSCHED_TOKEN", help="bearer token ($GREENSCHED_TOKEN)"
    ),
]
_PEM = dict(exists=True, dir_okay=False, readable=True)
CaOption = Annotated[
    Path | None,
    typer.Option("--tls-ca", help="CA certificate (PEM) to verify a TLS server", **_PEM),
]
CertOption = Annotated[
    Path | None,
    typer.Option(
        "--tls-cert",
        help="client certificate (PEM), for a server started with --tls-client-ca",
        **_PEM,
    ),
]
KeyOption = Annotated[
    Path | None, typer.Option("--tls-key", help="client private key (PEM), with --tls-cert", **_PEM)
]
SitesOption = Annotated[list[str] | None, typer.Option("--site", help="only these sites")]
FromOption = Annotated[
    str | None, typer.Option("--from", help="slots from this ISO time (with offset)")
]
ToOption = Annotated[
    str | None, typer.Option("--to", help="slots before this ISO time (with offset)")
]
ZoneOption = Annotated[
    str | None, typer.Option(help="show times in this zone, e.g. Asia/Shanghai; default UTC")
]
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str) -> float:
    """``2h``, ``90m``, ``1h30m``, ``45s`` -> seconds; raises ``typer.BadParameter`` otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise typer.BadParameter(f"{text!r}: use hours/minutes/seconds like 2h, 90m, 1h30m")
    hours, minutes, seconds = (float(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _utc(text: str, option: str) -> pd.Timestamp:
    """An ISO 8601 time with an offset, as UTC; one message naming ``option`` otherwise."""
    try:
        return iso_time(text)
    except ValueError as error:
        raise UserError(f"{option} {error}") from None


def _client(
    server: str, token: str | None, tls_ca: Path | None, cert: Path | None, key: Path | None
):
    from scheduler.drivers.service.client import CapClient

    if (cert is None) != (key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    tls_client = (cert, key) if cert is not None and key is not None else None
    return CapClient(server, token=token, tls_ca=tls_ca, tls_client=tls_client)


def _fail(error: Exception) -> None:
    import grpc

    if isinstance(error, grpc.RpcError):
        typer.echo(f"error: {error.code().name}: {error.details()}", err=True)
        raise typer.Exit(2) from None
    raise error


def _check_zone(timezone: str | None) -> None:
    """One message naming --timezone when it is not an IANA zone."""
    if timezone is not None:
        try:
            time_zone(timezone)
        except ValueError as error:
            raise UserError(f"--timezone {error}") from None


def _local(seconds: int, nanos: int, timezone: str | None) -> str:
    time = pd.Timestamp(seconds * 10**9 + nanos, tz="UTC")
    return (time.tz_convert(timezone) if timezone else time).isoformat()


@caps_app.command("submit")
def submit(
    site: Annotated[list[str], typer.Option("--site", help="site to cap; repeatable")],
    start: Annotated[str, typer.Option(help="ISO time with offset, e.g. 2026-11-29T18:00+08:00")],
    duration: Annotated[str, typer.Option(help="length, e.g. 2h, 90m")],
    max_grid_mw: Annotated[float | None, typer.Option("--max-grid-mw", help="the cap [MW]")] = None,
    server: ServerOption = "127.0.0.1:50051",
    token: TokenOption = None,
    tls_ca: CaOption = None,
    tls_cert: CertOption = None,
    tls_key: KeyOption = None,
    event_id: Annotated[
        str | None, typer.Option(help="idempotency key; default: generated")
    ] = None,
    modification_number: Annotated[int, typer.Option(min=0, help="raise to replace")] = 0,
    program: Annotated[str, typer.Option(help="program name")] = "demand-response",
    priority: Annotated[int, typer.Option(min=0)] = 0,
    load_limit: Annotated[
        bool,
        typer.Option("--load-limit", help="cap total site load instead of grid import"),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="only ask what the answer and cost would be; store nothing"),
    ] = False,
    price: Annotated[
        float | None,
        typer.Option(
            "--price",
            help="a price event instead of a cap: grid energy at this price \\[currency/MWh]",
        ),
    ] = None,
) -> None:
    """Submit a cap: SITE may draw at most MAX_GRID_MW from START for DURATION; or, with
    --price, a price event: SITE's grid energy costs PRICE per MWh from START for DURATION."""
    import uuid

    from scheduler.drivers.service.client import cap_interval, pb, price_interval

    if (max_grid_mw is None) == (price is None):
        raise typer.BadParameter("give either --max-grid-mw (a cap) or --price (a price event)")
    if price is not None and load_limit:
        raise typer.BadParameter("--load-limit goes with --max-grid-mw, not --price")
    begins = _utc(start, "--start")
    event = event_id or f"cli-{uuid.uuid4().hex[:12]}"
    seconds = parse_duration(duration)
    interval = (
        price_interval(begins, seconds, price)
        if price is not None
        else cap_interval(begins, seconds, max_grid_mw or 0.0, load_limit)
    )
    try:
        with _client(server, token, tls_ca, tls_cert, tls_key) as client:
            reply = client.submit(event, site, [interval], modification_number, program, priority,
                                  dry_run)  # fmt: skip
    except Exception as error:
        _fail(error)
    opt = pb.Opt.Name(reply.opt)
    replayed = " (stored answer to an identical earlier submission)" if reply.replayed else ""
    what = "dry run (nothing stored), would be" if dry_run else "accepted,"
    typer.echo(f"event {event}: {what} {opt}, plan version {reply.plan_version}{replayed}")
    typer.echo(f"  {reply.opt_reason}")
    cost = reply.cost
    typer.echo(
        f"  cost: {cost.late_jobs_total} job(s) late ({cost.late_gpu_hours:,.1f} GPU-h), "
        f"{cost.moved_mwh:,.2f} MWh moved, green share {cost.green_share_change:+.2%}, "
        f"grid {cost.grid_mwh_change:+,.2f} MWh, grid cost {cost.grid_cost_change:+,.2f}"
    )


@caps_app.command("list")
def list_caps(
    server: ServerOption = "127.0.0.1:50051",
    token: TokenOption = None,
    tls_ca: CaOption = None,
    tls_cert: CertOption = None,
    tls_key: KeyOption = None,
    site: SitesOption = None,
    include_cancelled: Annotated[bool, typer.Option("--all", help="show cancelled too")] = False,
    timezone: ZoneOption = None,
) -> None:
    """List the load-cap events you may see."""
    from scheduler.drivers.service.client import pb

    _check_zone(timezone)
    try:
        with _client(server, token, tls_ca, tls_cert, tls_key) as client:
            events = client.list(site or (), include_cancelled=include_cancelled)
    except Exception as error:
        _fail(error)
    if not events:
        typer.echo("no load caps")
    for event in events:
        typer.echo(
            f"{event.event_id} (modification {event.modification_number}, "
            f"{pb.EventStatus.Name(event.status)}, {pb.Opt.Name(event.opt)}, by "
            f"{event.coordinator}, plan version {event.plan_version}) "
            f"sites {', '.join(event.targets)}"
        )
        for i in event.intervals:
            unit = "per MWh" if i.type == pb.PRICE else "MW"
            typer.echo(
                f"  {_local(i.start.seconds, i.start.nanos, timezone)} for "
                f"{i.duration.seconds / 3600:g} h: {pb.PayloadType.Name(i.type)} "
                f"{i.value_mw:g} {unit}"
            )


@caps_app.command("report")
def caps_report(
    server: ServerOption = "127.0.0.1:50051",
    token: TokenOption = None,
    tls_ca: CaOption = None,
    tls_cert: CertOption = None,
    tls_key: KeyOption = None,
    site: SitesOption = None,
    since: FromOption = None,
    until: ToOption = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json (lines)")] = "table",
    watch: Annotated[
        bool, typer.Option("--watch", help="then each slot as it runs, until Ctrl-C")
    ] = False,
    timezone: ZoneOption = None,
) -> None:
    """What the sites you may read drew in each slot run so far, in OpenADR 3 terms: USAGE
    (load), DEMAND (grid draw), BASELINE (the plan without caps), OPERATING_STATE, the caps in
    force and, for a site with storage, its STORAGE_* payloads [MW, MWh]."""
    from scheduler.drivers.service.report_view import ReportFormat, report_frame, write_rows

    if fmt not in ("table", "csv", "json"):
        raise UserError(f"--format {fmt!r}: give table, csv or json")
    chosen = cast(ReportFormat, fmt)
    _check_zone(timezone)
    start = None if since is None else _utc(since, "--from")
    end = None if until is None else _utc(until, "--to")
    try:
        with _client(server, token, tls_ca, tls_cert, tls_key) as client:
            if not watch:
                rows = report_frame(client.report(site or (), start, end), timezone)
                if rows.empty:
                    typer.echo("no slot has run yet", err=True)
                write_rows(rows, chosen)
                return
            stream = client.watch_report(site or ())
            try:
                for first, message in enumerate(stream):
                    write_rows(report_frame(message, timezone), chosen, header=first == 0)
            except KeyboardInterrupt:
                stream.cancel()
    except Exception as error:
        _fail(error)


def _levels(text: str | None) -> list[float]:
    """``--levels 5,10`` -> [5.0, 10.0]; one message naming the option otherwise."""
    if text is None:
        return []
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(
            f"--levels {text!r}: give MW values separated by commas, e.g. 5,10"
        ) from None


@caps_app.command("flexibility")
def caps_flexibility(
    server: ServerOption = "127.0.0.1:50051",
    token: TokenOption = None,
    tls_ca: CaOption = None,
    tls_cert: CertOption = None,
    tls_key: KeyOption = None,
    site: SitesOption = None,
    since: FromOption = None,
    until: ToOption = None,
    levels: Annotated[
        str | None,
        typer.Option(
            help="shed levels to cost, MW below the planned load in every slot, e.g. 5,10; "
            "default: 25, 50, 75 and 100 % of the largest shed that keeps every job on time"
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json (lines)")] = "table",
    plot: Annotated[
        Path | None, typer.Option(help="draw planned load, floor and ceiling per site (PNG)")
    ] = None,
    timezone: ZoneOption = None,
) -> None:
    """How far each site you may read can shed or absorb per slot, and what shedding costs: the
    planned load, the lowest load reachable with every job on time (shed floor) and the
    highest (absorb ceiling) [MW], from the next slot to the end of the day unless --from and
    --to say otherwise; a quote, nothing is stored."""
    from scheduler.drivers.service.flexibility_view import QuoteFormat, plot_quote, write_quote

    if fmt not in ("table", "csv", "json"):
        raise UserError(f"--format {fmt!r}: give table, csv or json")
    if plot is not None:
        if plot.is_dir():
            raise UserError(f"--plot {plot}: is a directory; give a .png file name")
        ensure_dir(plot.parent)
    _check_zone(timezone)
    asked = _levels(levels)
    start = None if since is None else _utc(since, "--from")
    end = None if until is None else _utc(until, "--to")
    try:
        with _client(server, token, tls_ca, tls_cert, tls_key) as client:
            quote = client.flexibility(site or (), start, end, asked)
    except Exception as error:
        _fail(error)
    write_quote(quote, cast(QuoteFormat, fmt), timezone)
    if plot is not None:
        plot_quote(quote, plot, timezone)
        typer.echo(f"plot written to {plot}", err=True)


@caps_app.command("cancel")
def cancel(
    event_id: Annotated[str, typer.Argument(help="the event to cancel")],
    server: ServerOption = "127.0.0.1:50051",
    token: TokenOption = None,
    tls_ca: CaOption = None,
    tls_cert: CertOption = None,
    tls_key: KeyOption = None,
    reason: Annotated[str, typer.Option(help="recorded in the audit log")] = "",
) -> None:
    """Cancel a load-cap event; the plan is made again without it."""
    try:
        with _client(server, token, tls_ca, tls_cert, tls_key) as client:
            reply = client.cancel(event_id, reason)
    except Exception as error:
        _fail(error)
    state = "cancelled" if reply.cancelled else "was already cancelled"
    typer.echo(f"event {event_id} {state}; plan version {reply.plan_version}")


measure_app = typer.Typer(
    name="measure",
    help="What sites measured (PV, wind, load per slot): report it to a running server, list it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@measure_app.command("submit")
def measure_submit(
    site: Annotated[str | None, typer.Option(help="the site measured")] = None,
    time: Annotated[
        str | None, typer.Option(help="slot start, ISO time with offset (e.g. 2026-11-29T18:15Z)")
    ] = None,
    pv_mw: Annotated[
        float | None, typer.Option("--pv-mw", help="PV output, slot mean [MW]")
    ] = None,
    wind_mw: Annotated[
        float | None, typer.Option("--wind-mw", help="wind output, slot mean [MW]")
    ] = None,
    load_mw: Annotated[
        float | None, typer.Option("--load-mw", help="site load, slot mean [MW] (optional)")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            help="report every row of a measurements CSV/Parquet instead (time, site, pv_mw, "
            "wind_mw, optional load_mw)"
        ),
    ] = None,
    server: ServerOption = "127.0.0.1:50051",
    token: TokenOption = None,
    tls_ca: CaOption = None,
    tls_cert: CertOption = None,
    tls_key: KeyOption = None,
) -> None:
    """Report what a site measured in a slot (or every row of --file); stored before the
    reply, a slot keeps its first measurement."""
    from scheduler.contracts import MEASUREMENTS, read_table
    from scheduler.measurements import Measurement

    one = (site, time, pv_mw, wind_mw)
    if file is not None:
        if any(v is not None for v in (*one, load_mw)):
            raise UserError("--file reports the file's rows: give it without --site/--time/...")
        table = read_table(MEASUREMENTS, file)
        rows = [
            Measurement(str(r.site), r.time, float(r.pv_mw), float(r.wind_mw),
                        None if pd.isna(r.load_mw) else float(r.load_mw))
            for r in table.itertuples(index=False)
        ]  # fmt: skip
    elif any(v is None for v in one):
        raise UserError("give --site, --time, --pv-mw and --wind-mw (or --file)")
    else:
        assert site is not None and time is not None and pv_mw is not None and wind_mw is not None
        rows = [Measurement(site, _utc(time, "--time"), pv_mw, wind_mw, load_mw)]
    try:
        with _client(server, token, tls_ca, tls_cert, tls_key) as client:
            reply = client.report_measurements(rows)
    except Exception as error:
        _fail(error)
    typer.echo(f"{reply.stored} measurement(s) stored, {reply.replayed} already stored")


@measure_app.command("list")
def measure_list(
    server: ServerOption = "127.0.0.1:50051",
    token: TokenOption = None,
    tls_ca: CaOption = None,
    tls_cert: CertOption = None,
    tls_key: KeyOption = None,
    site: SitesOption = None,
    since: FromOption = None,
    until: ToOption = None,
) -> None:
    """List the measurements of the sites you may read: slot, site, PV, wind, load [MW]."""
    start = None if since is None else _utc(since, "--from")
    end = None if until is None else _utc(until, "--to")
    try:
        with _client(server, token, tls_ca, tls_cert, tls_key) as client:
            rows = client.measurements(site or (), start, end)
    except Exception as error:
        _fail(error)
    if not rows:
        typer.echo("no measurements")
    for row in rows:
        m = row.measurement
        load = f" load {m.load_mw:g}" if m.HasField("load_mw") else ""
        typer.echo(
            f"{_local(m.start.seconds, m.start.nanos, None)} {m.site}: pv {m.pv_mw:g} wind "
            f"{m.wind_mw:g}{load} MW (by {row.reported_by}, "
            f"{_local(row.received_at.seconds, row.received_at.nanos, None)})"
        )


@caps_app.command("hash-token")
def hash_token_command(
    name: Annotated[str, typer.Option(help="coordinator name")] = "coordinator",
    site: Annotated[
        list[str] | None, typer.Option("--site", help="sites it may cap; default all ('*')")
    ] = None,
) -> None:
    """Read a bearer token (prompt or stdin) and print its entry for the --auth file."""
    from scheduler.drivers.service.auth import hash_token

    token = getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline().strip()
    try:
        token_hash = hash_token(token)
    except UserError as error:
        raise typer.BadParameter(str(error)) from None
    sites = ", ".join(site or ["'*'"])
    typer.echo(f"  - name: {name}\n    token_hash: {token_hash}\n    sites: [{sites}]")


def _default_db() -> Path:
    """``greensched.sqlite`` in the user's state directory (platformdirs: the XDG state home on
    Linux), made when missing: a service started from any directory finds its caps again."""
    import platformdirs

    state = platformdirs.user_state_path("greensched")
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--db: cannot make {state}: {error.strerror}; give --db FILE") from None
    return state / "greensched.sqlite"


def serve(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config; default: embedded")
    ] = None,
    listen: Annotated[str, typer.Option(help="HOST:PORT; loopback unless --auth")] = (
        "127.0.0.1:50051"
    ),
    db: Annotated[
        Path | None,
        typer.Option(
            envvar="GREENSCHED_DB",
            help="SQLite database of caps and plans; default: greensched.sqlite in the user's "
            "state directory (~/.local/state/greensched on Linux), made when missing",
            show_default=False,
        ),
    ] = None,
    auth: Annotated[
        Path | None, typer.Option(help="tokens YAML; without it the service is open")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="server certificate (PEM)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="server private key (PEM)")] = None,
    tls_client_ca: Annotated[
        Path | None, typer.Option(help="require client certificates signed by this CA")
    ] = None,
    date: Annotated[
        str | None, typer.Option(help="operating day to plan; default tomorrow")
    ] = None,
    jobs: Annotated[
        Path | None, typer.Option(help="jobs CSV; default: the config's workload")
    ] = None,
    weather: Annotated[
        list[str] | None,
        typer.Option(
            "--weather", "-w", help="SITE=FILE weather (EPW, TMY3, PVGIS, CSV); repeatable"
        ),
    ] = None,
    forecast: Annotated[
        list[str] | None,
        typer.Option(
            "--forecast",
            "-f",
            help="SITE=SOURCE: forecast the site from a weather model's runs (a run's file or a "
            "directory of runs, watched every forecast.nwp.poll_minutes: a run dropped in is "
            "planned on); default: forecast.nwp.sources of the config, else 'synthetic'",
        ),
    ] = None,
    settle_on: Annotated[
        str | None,
        typer.Option(
            help="what the slots settle on: 'weather' (the weather source, a simulated day) or "
            "'measurements' (what the sites report; a slot without one in time is estimated "
            "from the newest forecast); default: measurements.settle_on of the config"
        ),
    ] = None,
    measurements: Annotated[
        Path | None,
        typer.Option(
            help="measurements CSV/Parquet (time, site, pv_mw, wind_mw, optional load_mw) a "
            "SCADA export appends; read every slot; default: measurements.file of the config"
        ),
    ] = None,
    dispatch: Annotated[
        bool,
        typer.Option(help="run each slot on Ray; --no-dispatch: plan only (chunks complete)"),
    ] = True,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster HOST:PORT; default: an embedded local Ray")
    ] = None,
    clock_start: Annotated[
        str | None,
        typer.Option(
            help="run on a simulated clock from this instant, e.g. 2026-06-21T00:00+08:00"
        ),
    ] = None,
    speedup: Annotated[
        float, typer.Option(min=1.0, help="simulated seconds per second (with --clock-start)")
    ] = 1.0,
    days: Annotated[
        int | None, typer.Option(min=1, help="stop after this many operating days")
    ] = None,
    out: Annotated[Path, typer.Option(help="one directory per operating day")] = Path("out/serve"),
    jobs_dir: Annotated[
        Path | None,
        typer.Option(help="each day's jobs from DIR/YYYY-MM-DD.csv, read when the day starts"),
    ] = None,
    streams_per_client: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="open WatchPlan/WatchReport streams per client address (default 128, as the "
            ".proto says); one more is RESOURCE_EXHAUSTED",
        ),
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT to serve Prometheus metrics on (path /metrics), e.g. "
            "127.0.0.1:9464; off unless given"
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log every call")] = False,
) -> None:
    """The control plane: the load-cap API (gRPC), the planning loop, and dispatch on Ray.

    Operating days run back to back on the clock (the wall clock, or a simulated one with
    --clock-start and --speedup); a cap is planned at once (the plan repaired to it, or planned
    again) and binds what runs from the next slot boundary; each finished day is written to
    OUT/YYYY-MM-DD/.
    """
    from scheduler.drivers.service.server import ServeOptions, TlsFiles
    from scheduler.drivers.service.server import serve as run

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("scheduler.drivers.service").setLevel(logging.INFO)
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        raise typer.BadParameter("--tls-client-ca needs --tls-cert and --tls-key")
    tls = TlsFiles(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
    start_at = None if clock_start is None else _utc(clock_start, "--clock-start")
    options = ServeOptions(
        config, listen, db or _default_db(), auth, tls, date, jobs, tuple(weather or ()), loop=True,
        dispatch=dispatch, ray_address=ray_address, clock_start=start_at, speedup=speedup,
        days=days, out=out, jobs_dir=jobs_dir, forecasts=tuple(forecast or ()),
        settle_on=settle_on, measurements_file=measurements, metrics=metrics,
    )  # fmt: skip
    if streams_per_client is not None:
        options = replace(options, streams_per_peer=streams_per_client)
    run(options)  # a UserError (config, addresses, auth file, jobs, date) exits 2 in main
