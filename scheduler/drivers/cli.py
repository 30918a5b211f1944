"""The ``greensched`` command line (a driver: it wires the packages and holds no logic)."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from forecasts.weather import Weather
from scheduler.config import DEFAULT_CONFIG_PATH, load_config
from scheduler.contracts import UserError, ensure_dir, write_table
from scheduler.contracts.carriers import CARRIERS
from scheduler.contracts.plandir import read_plan_dir

if TYPE_CHECKING:  # imported where used: the CLI starts fast
    from scheduler.problem import Problem

app = typer.Typer(
    help=(
        "greensched: plan AI inference across GPU sites so that it follows wind and solar.\n\n"
        "Weather -> renewable supply per site and slot (pvlib, windpowerlib) -> a plan of which "
        "job runs where and when (OR-Tools) -> run on Ray. Every command works on the embedded "
        "default config (two sites, qingyang and shantou) with nothing to prepare."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _width(stream: object) -> int | None:
    """Rich's width: the terminal's, or ``COLUMNS`` when set; off a terminal (cron logs, pipes)
    wide enough that no table is cut."""
    isatty = getattr(stream, "isatty", lambda: False)
    return None if isatty() or os.environ.get("COLUMNS") else 1000


console = Console(stderr=False, width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config; default: the embedded configs/default.yaml"),
]
WeatherOption = Annotated[
    list[str] | None,
    typer.Option(
        "--weather",
        "-w",
        help="'synthetic' (default) or SITE=FILE (EPW, TMY3, PVGIS, Open-Meteo or CSV)",
    ),
]
ForecastOption = Annotated[
    list[str] | None,
    typer.Option(
        "--forecast",
        "-f",
        help="SITE=SOURCE: forecast the site from a weather model's runs: a run's NetCDF or "
        "GRIB2 file, a run's directory or a directory of runs (the newest published by the "
        "planning time is used); default: forecast.nwp.sources of the config, else 'synthetic' "
        "(the weather plus the error model)",
    ),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="log what happens")]
ObjectiveOption = Annotated[
    str | None,
    typer.Option(help="minimise grid 'carbon', 'cost' or 'weighted'; default: solver.objective"),
]
AfterOption = Annotated[
    Path | None,
    typer.Option(
        help="the previous day's directory after its run: the day starts from the load of its "
        "run.csv's last slot, so ramp limits hold across midnight"
    ),
]


def _day(text: str, option: str) -> str:
    """A day option in ISO 8601 (``YYYY-MM-DD``); anything else is one message naming
    ``option``."""
    from scheduler.horizon import iso_day

    try:
        return iso_day(text).isoformat()
    except ValueError as error:
        raise UserError(f"{option} {error}") from None


def _names(text: str | None) -> list[str] | None:
    """Policy names of a comma-separated option (``None`` when not given)."""
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


def _setup_logging(verbose: bool) -> None:
    """Warnings (and with ``verbose`` what happens) to stderr: rich lines on a terminal, plain
    ``LEVEL message`` lines elsewhere (a cron log; rich would pad each line to the width tables
    get off a terminal)."""
    if err_console.is_terminal:
        handler: logging.Handler = RichHandler(console=err_console, show_path=False,
                                               show_time=False)  # fmt: skip
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True
    )
    # forecasts log what they warn about (a far weather station); print it once
    warnings.filterwarnings("ignore", category=UserWarning, module=r"forecasts\..*")
    for noisy in ("windpowerlib", "pvlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # HTTP retries and cfgrib's skipped messages end in greensched's own one-line error; the
    # ECMWF client's notices (its portal's connection limit, a stream layout it handles) are not
    # the user's to act on
    for noisy in ("urllib3", "multiurl", "cfgrib", "ecmwf.opendata"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def _after(directory: Path, problem: Problem) -> Problem:
    """``problem`` starting where the day run in ``directory`` ended: each site's load in its
    last slot [MW] and the energy in its storage [MWh]."""
    from scheduler.contracts.plandir import last_run_gpus, last_run_soc_mwh

    sites = problem.site_names
    loads = problem.load_mw_of(last_run_gpus(directory, sites))
    stored = last_run_soc_mwh(directory, sites)
    console.print(
        "starting from the load before the day: "
        + ", ".join(f"{site} {load:.2f} MW" for site, load in zip(sites, loads, strict=True))
        + ("" if problem.storage.n_units == 0 else "; stored: " + ", ".join(
            f"{site} {mwh:.2f} MWh" for site, mwh in zip(sites, stored, strict=True)))
    )  # fmt: skip
    units = problem.storage.unit_energy_mwh(stored)
    return replace(problem, initial_load_mw=loads, initial_soc_mwh=tuple(units.tolist()))


def _print_forecast_sources(runs: dict[str, dict]) -> None:
    """One line per site forecast from a weather model's run: which run, how much of it."""
    for site, run in runs.items():
        if run["source"] == "synthetic":
            continue
        used, total = run["slots_from_run"], run["slots"]
        rest = "; the rest from the error model" if used < total else ""
        console.print(
            f"{site}: forecast from {_forecast_text(run)} ({run['source']}); {used} of {total} "
            f"slot(s) from the run{rest}",
            soft_wrap=True,
        )


def _forecast_text(run: dict) -> str:
    """Where a site's forecast came from, for a summary: the model run or the error model."""
    if run.get("model") is None:
        return "synthetic" if run["source"] == "synthetic" else "error model (no run)"
    members = f", {run['members']} members" if run["members"] > 1 else ""
    issued = pd.Timestamp(run["issued_at"])
    return f"{run['model']} {issued:%Y-%m-%d %H}Z{members}"


def _clock_offset_text(weather: Weather) -> str:
    """The measured clock offset of a weather file and the shift applied, for the summary."""
    if weather.clock_offset_minutes is None:
        return "-"
    return f"{weather.clock_offset_minutes:+.1f} min, moved {weather.time_shift_minutes:g}"


@app.command()
def forecast(
    config: ConfigOption = None,
    weather: WeatherOption = None,
    forecast_from: ForecastOption = None,
    start: Annotated[
        str | None, typer.Option(help="first operating day (sites' local date); default tomorrow")
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=3660, help="number of days")] = 1,
    slot_minutes: Annotated[
        int | None, typer.Option(help="slot length \\[min]; default from config (15)")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="seed for weather and forecast error")] = None,
    actual: Annotated[
        bool, typer.Option("--actual", help="write the actual supply instead of the forecast")
    ] = False,
    out: Annotated[Path, typer.Option(help="supply table: .csv or .parquet")] = Path(
        "out/supply.csv"
    ),
    plot: Annotated[Path | None, typer.Option(help="also draw MW per site to this PNG")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Forecast wind and solar MW per site and slot (the supply table) for operating days."""
    from forecasts.plot import plot_supply
    from forecasts.supply import site_summary
    from scheduler.horizon import tomorrow
    from scheduler.pipeline import DayPipeline, parse_forecast_specs, parse_weather_specs

    _setup_logging(verbose)
    cfg = load_config(config)
    if out.suffix not in (".csv", ".parquet"):
        raise UserError(f"--out {out}: use a .csv or .parquet file name")
    if plot is not None:
        if plot.is_dir():
            raise UserError(f"--plot {plot}: is a directory; give a .png file name")
        ensure_dir(plot.parent)
    if slot_minutes is not None:
        cfg = cfg.updated({"forecast": {"slot_minutes": slot_minutes}}, "--slot-minutes")
    slot = cfg.forecast.slot_minutes
    day = _day(start, "--start") if start else tomorrow(cfg.timezone).isoformat()
    pipeline = DayPipeline(
        cfg, parse_weather_specs(weather or [], list(cfg.sites)), seed=seed,
        forecasts=parse_forecast_specs(forecast_from or [], cfg), require_runs=not actual,
    )  # fmt: skip
    run = pipeline.supply(pipeline.horizon(day, days))
    table = run.actual if actual else run.forecast
    write_table(table, out)

    kind = "actual" if actual else "day-ahead forecast"
    summary = site_summary(table, cfg.sites)
    view = Table(title=f"{kind} supply, {day} + {days} day(s), {slot}-min slots ({cfg.timezone})")
    for column in (
        "site",
        "weather",
        "clock offset",
        *(f"{c.label} MWh" for c in CARRIERS),
        "green MWh",
        "peak MW",
        "capacity MW",
        "CF",
    ):
        view.add_column(
            column, justify="left" if column in ("site", "weather", "clock offset") else "right"
        )
    for row in summary.itertuples():
        view.add_row(
            row.site,
            Path(run.weather[row.site].source).name,
            _clock_offset_text(run.weather[row.site]),
            *(f"{getattr(row, f'{c.name}_mwh'):,.1f}" for c in CARRIERS),
            f"{row.green_mwh:,.1f}",
            f"{row.peak_mw:,.1f}",
            f"{row.capacity_mw:,.1f}",
            f"{row.capacity_factor:.1%}",
        )
    console.print(view)
    if not actual:
        _print_forecast_sources(run.runs)
    for name, site_weather in run.weather.items():
        if site_weather.typical_year:
            console.print(f"[dim]{name}: typical-year file mapped onto the requested dates[/dim]")
        for note in site_weather.notes:
            logging.getLogger(__name__).info("%s: %s", name, note)
    console.print(f"wrote {out} ({len(table):,} rows)")
    if plot is not None:
        plot_supply(table, plot, cfg.timezone, title=f"greensched {kind} {day}")
        console.print(f"wrote {plot}")


@app.command("forecast-skill")
def forecast_skill(
    forecast_from: Annotated[
        str,
        typer.Option(
            "--forecast",
            "-f",
            help="SITE=SOURCE: the runs to grade: a run's NetCDF or GRIB2 file, a run's "
            "directory or a directory of runs",
        ),
    ],
    config: ConfigOption = None,
    actual: Annotated[
        str | None,
        typer.Option(
            help="SITE=FILE: what came: measured supply (a measurements table, CSV or Parquet: "
            "time, site, pv_mw, wind_mw [MW], time the slot start in UTC) or a dated weather "
            "file (EPW, TMY3, PVGIS, Open-Meteo or CSV) turned into supply by the site's plants"
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            help="SITE=SOURCE: another source's runs as a stand-in for what came, each slot "
            "from its freshest run (runs issued from a day before the first graded run on); a "
            "model too, so the figures measure disagreement, not error"
        ),
    ] = None,
    first: Annotated[
        str | None, typer.Option("--from", help="first issue date graded (UTC); default: all")
    ] = None,
    last: Annotated[
        str | None, typer.Option("--to", help="last issue date graded, inclusive (UTC)")
    ] = None,
    lead_edges: Annotated[
        str, typer.Option(help="lead band edges \\[h], comma-separated")
    ] = "0,1,3,6,12,24,48,72,120,168,240,384",
    fit: Annotated[
        bool,
        typer.Option(
            "--fit",
            help="print forecast.wind_nrmse, pv_nrmse and intraday fitted from the runs' NRMSE "
            "by lead (for an ensemble also forecast.nwp.ensemble_spread_factor), as YAML",
        ),
    ] = False,
    min_slots: Annotated[
        int, typer.Option(min=1, help="fewest slots of wind and of daylit PV a band needs to fit")
    ] = 16,
    slot_minutes: Annotated[
        int | None, typer.Option(help="slot length \\[min]; default from config (15)")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the error model's draws")] = None,
    out: Annotated[Path, typer.Option(help="skill table: .csv or .parquet")] = Path(
        "out/forecast_skill.csv"
    ),
    verbose: VerboseOption = False,
) -> None:
    """Grade a weather model's runs by lead (bias, NRMSE, p10-p90 coverage) against an actual
    or a reference, beside the error model's figures on the same slots; --fit fits its levels.
    """
    from scheduler.drivers import skill

    _setup_logging(verbose)
    cfg = load_config(config)
    if slot_minutes is not None:
        cfg = cfg.updated({"forecast": {"slot_minutes": slot_minutes}}, "--slot-minutes")
    if out.suffix not in (".csv", ".parquet"):
        raise UserError(f"--out {out}: use a .csv or .parquet file name")
    graded = skill.grade(
        cfg, forecast_from, actual=actual, reference=reference, first=first, last=last,
        edges_h=skill.lead_edges(lead_edges), seed=seed,
    )  # fmt: skip
    for note in graded.notes:
        err_console.print(note, style="yellow")
    write_table(graded.table, out)
    console.print(skill.skill_view(graded))
    if len(graded.issued) < len(graded.runs):
        console.print(
            f"{len(graded.runs) - len(graded.issued)} run(s) with no slot in the truth left out"
        )
    if reference is not None:
        console.print(
            "the reference is another weather model, not a measurement: these figures measure "
            "how far the two models disagree, not either one's error",
            style="bold",
        )
    console.print(
        "error model: the config's forecast levels, vintages issued at the runs' issue times "
        f"around the same truth (its distribution taken from the truth), seed {graded.seed}"
    )
    console.print(f"wrote {out} ({len(graded.table)} rows)")
    if fit:
        console.print(
            skill.fit_yaml(graded, cfg, min_slots), markup=False, highlight=False, soft_wrap=True
        )


@app.command()
def plan(
    config: ConfigOption = None,
    weather: WeatherOption = None,
    forecast_from: ForecastOption = None,
    date: Annotated[
        str | None, typer.Option(help="operating day (sites' local date); default tomorrow")
    ] = None,
    jobs: Annotated[
        Path | None, typer.Option(help="jobs CSV; default: drawn from the config's workload")
    ] = None,
    caps: Annotated[
        Path | None,
        typer.Option(help="load caps CSV: site, start, end, type, value_mw (hard constraints)"),
    ] = None,
    policy: Annotated[
        str | None, typer.Option(help="policy whose plan is the plan; default: solver.policy")
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(help="comma-separated policies to compare with; default: solver.compare"),
    ] = None,
    time_limit: Annotated[
        float | None, typer.Option(min=0.1, help="solver time limit \\[s]; default from config")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="seed of weather, errors and jobs")] = None,
    objective: ObjectiveOption = None,
    after: AfterOption = None,
    out: Annotated[Path, typer.Option(help="output directory")] = Path("out/plan"),
    verbose: VerboseOption = False,
) -> None:
    """Plan a day: which job runs at which site in which slot; compare policies."""
    from scheduler.drivers.plan_output import save_day_plan
    from scheduler.horizon import tomorrow
    from scheduler.jobs import read_jobs
    from scheduler.pipeline import (
        DayPipeline,
        parse_forecast_specs,
        parse_weather_specs,
        plan_day,
    )
    from scheduler.problem import read_caps

    _setup_logging(verbose)
    cfg = load_config(config)
    changes = {"time_limit_s": time_limit, "policy": policy, "compare": _names(compare)}
    cfg = cfg.with_solver(**{k: v for k, v in changes.items() if v is not None})
    if objective is not None:
        cfg = cfg.updated({"solver": {"objective": objective}}, "--objective")
    names = [cfg.solver.policy, *cfg.solver.compare]
    seed = cfg.seed if seed is None else seed
    day = _day(date, "--date") if date else tomorrow(cfg.timezone).isoformat()
    pipeline = DayPipeline(
        cfg, parse_weather_specs(weather or [], list(cfg.sites)), seed=seed,
        forecasts=parse_forecast_specs(forecast_from or [], cfg), require_runs=True,
    )  # fmt: skip
    horizon = pipeline.horizon(day)
    table = read_jobs(jobs, horizon, list(cfg.sites)) if jobs is not None else None
    cap_list = read_caps(caps, list(cfg.sites)) if caps is not None else ()
    problem = pipeline.problem(horizon, jobs=table, caps=cap_list, jobs_source=f"{jobs} line")
    if after is not None:
        problem = _after(after, problem)
    result = plan_day(problem, cfg, names)
    runs = pipeline.supply(horizon).runs
    save_day_plan(out, result, cfg, seed, forecast=runs)

    from scheduler.drivers.replay_report import RAMP_COLUMNS, ramp_cells

    _print_forecast_sources(runs)
    view = Table(
        title=f"plan for {day} ({problem.n_jobs} jobs, {horizon.n_slots} slots), on the forecast; "
        f"load steps per site ({' / '.join(problem.site_names)})"
    )
    for column in ("policy", "green share", "grid MWh", "CO2 t", "cost", "unused green MWh",
                   "stored green MWh", "unfinished jobs", "cap violations", "status", "gap",
                   "solve s", *RAMP_COLUMNS):  # fmt: skip
        view.add_column(column, justify="left" if column in ("policy", "status") else "right")
    for name, metrics in result.metrics.items():
        solved = result.results[name]
        ramps = {
            s: {"largest_step_mw": metrics.largest_step_mw[s],
                "total_swing_mw": metrics.total_swing_mw[s],
                "slots_over_ramp": metrics.slots_over_ramp[s]}
            for s in problem.site_names
        }  # fmt: skip
        view.add_row(
            name, f"{metrics.green_share:.1%}", f"{metrics.grid_mwh:,.1f}", f"{metrics.co2_t:,.1f}",
            f"{metrics.cost:,.0f}", f"{metrics.green_unused_mwh:,.1f}",
            f"{metrics.storage_discharged_mwh:,.1f}", str(metrics.jobs_unfinished),
            str(metrics.cap_violations), solved.status,
            "" if solved.gap is None else f"{solved.gap:.2%}", f"{solved.solve_seconds:.2f}",
            *ramp_cells(ramps),
        )  # fmt: skip
    console.print(view)
    console.print(f"wrote {out}/plan.csv, summary.json, plan.png and the tables beside them")
    late = result.results[result.primary].jobs_unfinished
    if late:
        shown = ", ".join(late[:20]) + (" ..." if len(late) > 20 else "")
        raise UserError(
            f"{len(late)} job(s) cannot be placed in their window at any allowed site "
            f"(GPU capacity, grid limit or caps): {shown}; widen their windows or sites"
        )


@app.command()
def replay(
    config: ConfigOption = None,
    weather: WeatherOption = None,
    forecast_from: ForecastOption = None,
    first: Annotated[
        str, typer.Option("--from", help="first operating day (local date)")
    ] = "2026-01-01",
    last: Annotated[str, typer.Option("--to", help="last operating day, inclusive")] = "2026-01-07",
    policies: Annotated[
        str, typer.Option(help="comma-separated: fifo, greedy, optimizer, oracle")
    ] = "fifo,greedy,optimizer,oracle",
    forecast_error: Annotated[
        float, typer.Option(min=0.0, help="scale of the forecast error (0 = perfect foresight)")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="seed of weather, errors and jobs")] = 1,
    limits_on: Annotated[
        str | None,
        typer.Option(help="plan grid limits on the 'forecast' or its 'p10'; default: config"),
    ] = None,
    objective: ObjectiveOption = None,
    daily_cap: Annotated[
        list[str] | None,
        typer.Option(help="a cap every day, SITE:START-END:MW (local hours, grid import MW)"),
    ] = None,
    replan_every: Annotated[
        str,
        typer.Option(
            help="re-plan the work left within each day on the forecast issued then, e.g. 1h "
            "or 30min (a multiple of the slot length); 'off': plan once a day"
        ),
    ] = "off",
    out: Annotated[Path, typer.Option(help="output directory")] = Path("out/replay"),
    resume: Annotated[
        bool, typer.Option(help="continue a run in OUT without redoing days")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Replay weather day by day: plan on the forecast, settle on actuals, compare policies."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from scheduler.drivers.replay import ReplaySpec, summarize, write_summary
    from scheduler.drivers.replay import replay as run_replay
    from scheduler.drivers.replay_report import (
        OBJECTIVE_NOTE,
        SUMMARY_COLUMNS,
        gain_text,
        summary_lines,
        write_replay_report,
    )
    from scheduler.drivers.study import parse_daily_cap
    from scheduler.pipeline import parse_forecast_specs, parse_weather_specs
    from scheduler.policies import get_policy

    _setup_logging(verbose)
    cfg = load_config(config)
    if limits_on is not None:
        cfg = cfg.updated({"solver": {"limits_on": limits_on}}, "--limits-on")
    if objective is not None:
        cfg = cfg.updated({"solver": {"objective": objective}}, "--objective")
    sources = parse_weather_specs(weather or [], list(cfg.sites))
    names = tuple(_names(policies) or ())
    for name in names:
        get_policy(name)
    spec = ReplaySpec(
        cfg, sources, _day(first, "--from"), _day(last, "--to"), names, forecast_error, seed,
        tuple(parse_daily_cap(c) for c in daily_cap or []),
        replan_every=_replan_every(replan_every, cfg.forecast.slot_minutes),
        forecasts=parse_forecast_specs(forecast_from or [], cfg),
    )  # fmt: skip
    days = spec.days
    ensure_dir(out)  # a bad --out is said before the progress bar starts

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("{task.fields[shares]}"), console=err_console,
    ) as bar:  # fmt: skip
        task = bar.add_task("replay", total=len(days), shares="")

        def show(day: str, daily: pd.DataFrame) -> None:
            sums = daily.groupby("policy", sort=False)[["green_used_mwh", "energy_used_mwh"]].sum()
            shares = "  ".join(
                f"{p} {row.green_used_mwh / row.energy_used_mwh:.1%}" for p, row in sums.iterrows()
            )
            bar.update(task, completed=daily["day"].nunique(), description=day, shares=shares)

        result = run_replay(spec, out, resume=resume, progress=show)
    summary = summarize(result)
    write_summary(summary, out / "summary.json")
    report = write_replay_report(out, result.daily, summary, cfg.timezone)

    view = Table(title=f"replay {days[0]} to {days[-1]} ({len(days)} days), settled on actuals")
    for column in SUMMARY_COLUMNS:
        view.add_column(column, justify="left" if column == "policy" else "right")
    for cells in summary_lines(summary):
        view.add_row(*cells)
    console.print(view)
    share = summary.get("optimizer_share_of_oracle_gain")
    if share is not None:
        console.print(
            f"optimizer reaches {gain_text(share)} of the oracle's gain over fifo in green share"
        )
        if share > 1.0:
            console.print(OBJECTIVE_NOTE)
    console.print(f"wrote {out / 'daily.csv'}, {out / 'summary.json'}, {report}")


def _replan_every(text: str, slot_minutes: int) -> pd.Timedelta | None:
    """``--replan-every``: ``off`` or a positive multiple of the slot length."""
    if text.strip().lower() == "off":
        return None
    try:
        every = pd.Timedelta(text)
    except ValueError:
        every = None
    slot = pd.Timedelta(minutes=slot_minutes)
    if every is None or every <= pd.Timedelta(0) or every % slot != pd.Timedelta(0):
        raise UserError(
            f"--replan-every {text!r}: give 'off' or a duration that is a positive multiple of "
            f"the {slot_minutes}-minute slot, e.g. 1h or {2 * slot_minutes}min"
        )
    return every


@contextmanager
def _exit_143_on_sigterm() -> Iterator[None]:
    """SIGTERM inside ends the command with one line and exit 143 (cron's and systemd's stop)."""
    from scheduler.drivers.nightly import Stopped, stop_on_sigterm

    try:
        with stop_on_sigterm():
            yield
    except Stopped as signal_name:
        err_console.print(f"stopped by {signal_name} before the day ended: no run tables written")
        raise typer.Exit(143) from None


def _run_display(title: str, slots: int):
    """A rich progress bar for a dispatch: slot, tasks per site, green share so far."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn(title), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"), console=err_console,
    )  # fmt: skip
    task = bar.add_task(title, total=slots, detail="")

    def show(progress) -> None:
        tasks = " ".join(f"{s}:{n}" for s, n in progress.tasks_by_site.items())
        bar.update(
            task, completed=progress.index + 1,
            detail=f"slot {progress.time:%H:%M}Z tasks {tasks} "
            f"green {progress.green_share_so_far:.1%} "
            f"jobs {progress.jobs_finished}/{progress.jobs_total}",
        )  # fmt: skip

    return bar, task, show


def _run_summary(report) -> int:
    """Print planned vs actual and return the exit code: 0 when every job is done or late."""
    view = Table(title="planned vs actual")
    view.add_column("measure")
    view.add_column("planned", justify="right")
    view.add_column("actual", justify="right")
    planned, actual = report.totals["planned"], report.totals["actual"]
    keys = ["gpu_hours", "load_mwh", "green_used_mwh", "grid_mwh", "green_share", "tokens"]
    if (report.site_slots["soc_mwh"] > 0).any():  # a site with storage: what it did
        keys += ["storage_discharged_mwh", "storage_end_mwh"]
    for key in keys:
        fmt = {"green_share": "{:.1%}", "tokens": "{:,.0f}"}.get(key, "{:,.1f}")
        view.add_row(
            key,
            fmt.format(planned.get(key, float("nan"))),
            fmt.format(actual.get(key, float("nan"))),
        )
    console.print(view)
    counts = report.jobs["status"].value_counts().to_dict()
    console.print("jobs: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    late = report.jobs[report.jobs["status"] != "done"]
    for row in late.head(10).itertuples():
        console.print(f"  {row.job_id}: {row.status}: {row.reason}")
    failed = report.jobs["status"] == "failed"
    unexplained = (report.jobs["status"] == "late") & (report.jobs["reason"].fillna("") == "")
    return 1 if failed.any() or unexplained.any() else 0


RayAddressOption = Annotated[
    str | None,
    typer.Option(help="Ray cluster (HOST:PORT or auto); default: an embedded local Ray"),
]
SpeedupOption = Annotated[
    float,
    typer.Option(min=1.0, help="clock speed-up: 1 = real time, 1440 = a day in a minute"),
]


@app.command()
def dispatch(
    directory: Annotated[Path, typer.Argument(help="plan directory written by greensched plan")],
    config: ConfigOption = None,
    actual_weather: Annotated[
        list[str] | None,
        typer.Option(help="SITE=FILE: settle that site on supply from this weather file"),
    ] = None,
    ray_address: RayAddressOption = None,
    speedup: SpeedupOption = 1.0,
    verbose: VerboseOption = False,
) -> None:
    """Run a plan on Ray (site-labelled resources) and report what actually ran."""
    from scheduler.drivers.nightly import dispatch as run_dispatch
    from scheduler.pipeline import parse_weather_specs

    _setup_logging(verbose)
    cfg = load_config(config)
    sources = parse_weather_specs(actual_weather or [], list(cfg.sites), "--actual-weather")
    files = {site: path for site, path in sources.items() if path != "synthetic"}
    read_plan_dir(directory)  # a bad directory is one message before the progress bar shows
    bar, _, show = _run_display("dispatch", 24 * 60 // cfg.forecast.slot_minutes)
    with _exit_143_on_sigterm(), bar:
        report = run_dispatch(
            directory, cfg, actual_weather=files, ray_address=ray_address, speedup=speedup,
            progress=show,
        )  # fmt: skip
    console.print(f"wrote {directory}/run.csv, run_jobs.csv and run_report.json")
    raise typer.Exit(_run_summary(report))


@app.command()
def nightly(
    config: ConfigOption = None,
    weather: WeatherOption = None,
    forecast_from: ForecastOption = None,
    date: Annotated[str | None, typer.Option(help="operating day to run; default tomorrow")] = None,
    out: Annotated[
        Path,
        typer.Option(help="parent folder: each night goes to OUT/DATE, the lock is OUT's own"),
    ] = Path("out/nightly"),
    caps: Annotated[Path | None, typer.Option(help="load caps CSV in force for the night")] = None,
    caps_from: Annotated[
        str | None,
        typer.Option(help="take the caps in force from a running greensched serve (HOST:PORT)"),
    ] = None,
    token: Annotated[str | None, typer.Option(help="bearer token for --caps-from")] = None,
    tls_ca: Annotated[Path | None, typer.Option(help="CA certificate for --caps-from")] = None,
    caps_db: Annotated[
        Path | None, typer.Option(help="take the caps in force from a service database (read-only)")
    ] = None,
    after: AfterOption = None,
    ray_address: RayAddressOption = None,
    speedup: SpeedupOption = 1.0,
    verbose: VerboseOption = False,
) -> None:
    """Forecast, plan and dispatch the next operating day: the command for cron.

    Each night goes to OUT/DATE. The day starts from the load the previous night's run ended on
    (OUT/DATE-1/run.csv when there, or --after), so ramp limits hold across midnight. With the
    real clock (--speedup 1) the plan is made at once and its first slot dispatched when the
    day starts; the wait is announced.

    The caps in force come from --caps (a CSV), from a running service (--caps-from) or from its
    database (--caps-db), so a cap a grid coordinator submitted over gRPC binds the night too.

    Exit code 0 only when every job ended done or late with a reason; 1 when a job failed;
    2 for bad input; 75 when another nightly run holds OUT's lock; 143 when stopped by SIGTERM.
    """
    from filelock import FileLock, Timeout

    from scheduler.horizon import tomorrow

    cfg = load_config(config)
    if sum(x is not None for x in (caps, caps_from, caps_db)) > 1:
        raise UserError("--caps, --caps-from and --caps-db: give at most one source of caps")
    day = _day(date, "--date") if date else tomorrow(cfg.timezone).isoformat()
    lock = FileLock(str(ensure_dir(out) / ".greensched-nightly.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        err_console.print(f"another nightly run holds {lock.lock_file}; not starting a second one")
        raise typer.Exit(75) from None
    try:
        with _exit_143_on_sigterm():
            directory = ensure_dir(out / day)
            if caps_from is not None or caps_db is not None:
                caps = _service_caps(directory, caps_from, token, tls_ca, caps_db)
            yesterday = out / (pd.Timestamp(day) - pd.Timedelta(days=1)).date().isoformat()
            plan(
                config=config, weather=weather, forecast_from=forecast_from, date=day, jobs=None,
                caps=caps, policy=None,
                compare=None, time_limit=None, seed=None, out=directory, verbose=verbose,
                after=after or (yesterday if (yesterday / "run.csv").is_file() else None),
            )  # fmt: skip
            _announce_wait(day, cfg.timezone, speedup)
            dispatch(
                directory, config=config, actual_weather=None, ray_address=ray_address,
                speedup=speedup, verbose=verbose,
            )  # fmt: skip
    finally:
        lock.release()


def _announce_wait(day: str, timezone: str, speedup: float) -> None:
    """Say when the day's first slot is dispatched when that is not now (the real clock)."""
    start = pd.Timestamp(day).tz_localize(timezone)
    wait = start - pd.Timestamp.now(tz=timezone)
    if speedup == 1.0 and wait > pd.Timedelta(0):
        hours, minutes = divmod(int(wait.total_seconds() // 60), 60)
        console.print(
            f"plan ready; operating day {day} starts at {start:%Y-%m-%d %H:%M} {timezone}, in "
            f"{hours} h {minutes:02d} min: its first slot is dispatched then (SIGTERM stops)"
        )


def _service_caps(
    directory: Path, server: str | None, token: str | None, tls_ca: Path | None, db: Path | None
) -> Path:
    """The caps in force at a service (or in its database), as ``DIR/caps-in-force.csv``."""
    import grpc

    from scheduler.drivers.service.client import CapClient
    from scheduler.drivers.service.store import caps_in_database
    from scheduler.problem import caps_frame

    if db is not None:
        found = tuple(caps_in_database(db))
    else:
        try:
            with CapClient(str(server), token=token, tls_ca=tls_ca) as client:
                found = client.caps_in_force()
        except grpc.RpcError as error:
            raise UserError(
                f"--caps-from {server}: {error.code().name}: {error.details()}"
            ) from None
    path = directory / "caps-in-force.csv"
    write_table(caps_frame(found), path)
    console.print(f"{len(found)} cap(s) in force from {db or server}")
    return path


@app.command()
def demo(
    date: Annotated[
        str | None, typer.Option(help="operating day to run (local date); default tomorrow")
    ] = None,
    speedup: Annotated[
        float, typer.Option(min=60.0, help="simulated seconds per second: 720 = a day in 2 min")
    ] = 720.0,
    config: ConfigOption = None,
    out: Annotated[Path, typer.Option(help="output directory")] = Path("out/demo"),
    verbose: VerboseOption = False,
) -> None:
    """The whole system: the control plane runs a day on a simulated clock with Ray, and a grid
    coordinator caps shantou over gRPC in the middle of it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from scheduler.drivers.service.demo import CAP_SITE, run_demo
    from scheduler.horizon import tomorrow

    _setup_logging(verbose)
    cfg = load_config(config)
    day = _day(date, "--date") if date else tomorrow(cfg.timezone).isoformat()
    start_at = pd.Timestamp(day).tz_localize(cfg.timezone)
    with Progress(
        TextColumn("control plane"), BarColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[clock]}"), console=err_console,
    ) as bar:  # fmt: skip
        task = bar.add_task("day", total=24 * 60, clock="")

        def show(now: pd.Timestamp) -> None:
            local = now.tz_convert(cfg.timezone)
            minutes = (local - start_at) / pd.Timedelta(minutes=1)
            bar.update(task, completed=minutes, clock=f"{local:%Y-%m-%d %H:%M} {cfg.timezone}")

        result = run_demo(day, out, speedup=speedup, config=config, progress=show)
    local = result.cap_start.tz_convert(cfg.timezone)
    console.print(
        f"cap submitted over gRPC at 10:00: {CAP_SITE} load <= {result.cap_mw:g} MW from "
        f"{local:%H:%M} for 4 h; the service answered {result.answer}"
    )
    _run_summary(result.report)
    window = result.capped_slots
    console.print(
        f"{CAP_SITE} in the capped window: peak load {window['load_mw'].max():.2f} MW against a "
        f"cap of {result.cap_mw:g} MW, {int((window['cap_violation_mw'] > 1e-6).sum())} slot(s) "
        f"over it; tables in {result.directory}"
    )


@app.command()
def study(
    path: Annotated[Path, typer.Argument(help="study YAML (see scheduler/drivers/study.py)")],
    config: ConfigOption = None,
    ray_address: Annotated[
        str | None, typer.Option(help="run scenarios on this Ray cluster; default: local")
    ] = None,
    out: Annotated[Path, typer.Option(help="results table (.csv)")] = Path("out/study.csv"),
    verbose: VerboseOption = False,
) -> None:
    """Sweep replay scenarios (forecast error, job mix, daily cap) as Ray tasks; one table."""
    from scheduler.drivers.study import load_study, plot_front, run_study

    _setup_logging(verbose)
    cfg = load_config(config)
    spec = load_study(path)
    try:
        table = run_study(spec, cfg, address=ray_address)
    except ValueError as error:
        raise UserError(str(error)) from None
    write_table(table, out)
    view = Table(title=f"study {path.name}: {len(table)} rows")
    columns = ["forecast_error", "deferrable_scale", "daily_cap", "limits_on", "storage_hours",
               "policy", "green_share", "co2_t", "cost"]  # fmt: skip
    for column in columns:
        left = column in ("daily_cap", "limits_on", "policy")
        view.add_column(column, justify="left" if left else "right")
    for row in table[columns].itertuples(index=False):
        hours = "config" if pd.isna(row.storage_hours) else f"{row.storage_hours:g} h"
        view.add_row(
            f"{row.forecast_error:g}", f"{row.deferrable_scale:g}", row.daily_cap or "-",
            row.limits_on, hours, row.policy, f"{row.green_share:.1%}", f"{row.co2_t:,.0f}",
            f"{row.cost:,.0f}",
        )  # fmt: skip
    console.print(view)
    front = plot_front(table, out.with_name(f"{out.stem}-front.png"))
    console.print(f"wrote {out}" + (f" and {front}" if front is not None else ""))


@app.command()
def turbines() -> None:
    """List the wind turbine types (with power curves) bundled with windpowerlib."""
    from forecasts.specs import turbine_library

    view = Table(title="windpowerlib turbine library (types with a power curve)")
    view.add_column("turbine_type")
    view.add_column("nominal MW", justify="right")
    for name, mw in sorted(turbine_library().items()):
        view.add_row(name, f"{mw:.2f}")
    console.print(view)


@app.command("check-config")
def check_config(
    path: Annotated[Path | None, typer.Argument(help="config to check; default: embedded")] = None,
) -> None:
    """Validate a config file and print its sites; exit 2 with the field named if it is wrong."""
    cfg = load_config(path)
    view = Table(title=f"{path or DEFAULT_CONFIG_PATH}: valid")
    carriers = [f"{c.label} MW" for c in CARRIERS]
    for column in ("site", "GPUs", "full load MW", "grid limit MW", *carriers):
        view.add_column(column, justify="right" if column != "site" else "left")
    for site in cfg.sites.values():
        view.add_row(
            site.name,
            f"{site.gpus:,}",
            f"{site.full_load_mw:.1f}",
            f"{site.grid_import_limit_mw:.1f}",
            *(f"{c.capacity_mw(site):.1f}" for c in CARRIERS),
        )
    console.print(view)


def _register_service_commands() -> None:
    """The grid coordinators' commands live with the gRPC service (scheduler/drivers/service)."""
    from scheduler.drivers.service.commands import caps_app, measure_app, serve

    app.command("serve")(serve)
    app.add_typer(caps_app, name="caps")
    app.add_typer(measure_app, name="measure")


_register_service_commands()


def run(typer_app: typer.Typer) -> None:
    """Run a command-line app: a user error is one clear message and exit code 2."""
    try:
        typer_app()
    except UserError as error:
        err_console.print(f"[bold red]error:[/bold red] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)


def main() -> None:
    """Console entry point of ``greensched``."""
    run(app)
