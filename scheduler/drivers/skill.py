"""``greensched forecast-skill``'s work: a weather model's runs graded by lead against what came.

A driver: it wires :mod:`forecasts.nwp` (the runs in files), :mod:`forecasts.skill` (pairs,
figures by lead, fits) and the config's supply and error models. :func:`grade` reads the runs
at one site, the truth (measured supply, a dated weather file through the site's plants, or
another source's runs as a reference) and the error model's vintages around the same truth,
and returns the skill table; :func:`skill_view` and :func:`fit_yaml` say it for the command
line. Every bad option is a :class:`~scheduler.contracts.UserError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.table import Table

from forecasts import skill
from forecasts.nwp.archive import RunArchive, RunRef
from forecasts.nwp.ensemble import run_supply
from forecasts.nwp.run import ForecastRun
from forecasts.supply import SupplyModel
from scheduler.config import Config
from scheduler.contracts import MEASUREMENTS, UserError, read_table
from scheduler.contracts.carriers import carrier_columns, green_mw
from scheduler.horizon import iso_day
from scheduler.pipeline import forecast_error_of

__all__ = ["Graded", "fit_yaml", "grade", "lead_edges", "skill_view"]

ERROR_MODEL = "error model"
"""The ``forecast`` label of the error model's rows."""


@dataclass(frozen=True)
class Graded:
    """Runs graded at one site: ``table`` the skill by lead of the runs (``forecast`` their
    model) and of the error model; ``truth`` the supply they were graded against [MW by slot
    start] and ``truth_text`` its name; ``issued`` the issue times of the runs with a slot in
    the truth; ``notes`` what the user should know (a typical year used as the actual)."""

    site: str
    runs: list[ForecastRun]
    truth: pd.DataFrame
    truth_text: str
    table: pd.DataFrame
    issued: list[pd.Timestamp]
    seed: int
    notes: tuple[str, ...]

    @property
    def label(self) -> str:
        """The graded runs' model, their rows' ``forecast``."""
        return self.runs[0].model


def lead_edges(text: str) -> list[float]:
    """``--lead-edges``: leads [h], comma-separated, at least two, >= 0, increasing."""
    try:
        return [float(e) for e in skill.check_lead_edges([float(e) for e in text.split(",")])]
    except ValueError:
        raise UserError(
            f"--lead-edges {text!r}: give at least two leads [h] >= 0, increasing, separated by "
            "commas, e.g. 0,1,3,6,12,24,48"
        ) from None


def grade(
    cfg: Config,
    forecast: str,
    *,
    actual: str | None,
    reference: str | None,
    first: str | None,
    last: str | None,
    edges_h: list[float],
    seed: int | None,
) -> Graded:
    """The runs of ``forecast`` (``SITE=SOURCE``) issued from ``first`` to ``last`` (ISO dates,
    UTC, inclusive) graded against ``actual`` (``SITE=FILE``) or ``reference``
    (``SITE=SOURCE``), beside the error model's vintages issued at the runs' issue times."""
    if (actual is None) == (reference is None):
        raise UserError(
            "forecast-skill: give one truth to grade the runs against: --actual SITE=FILE "
            "(measured supply or a dated weather file) or --reference SITE=SOURCE (another "
            "source's runs)"
        )
    site_name, archive = _source(forecast, cfg, "--forecast")
    site, slot = cfg.sites[site_name], cfg.forecast.slot_minutes
    model = SupplyModel(cfg.sites, slot_minutes=slot)
    error = forecast_error_of(cfg)
    runs = [
        archive.read(ref, {site_name: site}, slot)[site_name]
        for ref in _runs_issued(archive, first, last)
    ]
    spread = cfg.forecast.nwp.ensemble_spread_factor
    forecasts = {r.issued_at: run_supply(r, site, model, error, spread_factor=spread) for r in runs}
    span = (runs[0].issued_at, max(run.end for run in runs))
    notes: list[str] = []
    if actual is not None:
        truth, truth_text = _actual_supply(actual, site_name, cfg, model, span, notes)
    else:
        truth, truth_text = _reference_supply(str(reference), site_name, cfg, model, error, span)
    pairs = skill.paired(forecasts, truth)
    if pairs.empty:
        raise UserError(
            f"{truth_text}: covers {truth.index[0].isoformat()} to {truth.index[-1].isoformat()}, "
            f"no slot of the {len(runs)} run(s) graded ({span[0].isoformat()} to "
            f"{span[1].isoformat()}); give a truth that covers the runs, or other --from/--to"
        )
    slots = {t: pd.DatetimeIndex(rows["time"]) for t, rows in pairs.groupby("issued_at")}
    seed = cfg.seed if seed is None else seed
    synthetic = skill.error_model_forecasts(truth, site, model, error, seed, slots)
    table = pd.concat(
        [
            skill.skill_by_lead(pairs, site, slot, edges_h).assign(forecast=runs[0].model),
            skill.skill_by_lead(skill.paired(synthetic, truth), site, slot, edges_h).assign(
                forecast=ERROR_MODEL
            ),
        ],
        ignore_index=True,
    ).assign(truth=truth_text)
    table = table[["forecast", "truth", *skill.SKILL_COLUMNS]]
    return Graded(site_name, runs, truth, truth_text, table, sorted(slots), seed, tuple(notes))


def _source(spec: str, cfg: Config, option: str) -> tuple[str, RunArchive]:
    """The site and the runs in files (a ``RunArchive``) named by ``SITE=SOURCE``."""
    from forecasts.nwp.sources import forecast_source
    from scheduler.pipeline import parse_forecast_specs

    site, sep, source = spec.partition("=")
    if not sep:
        raise UserError(f"{option} {spec!r}: expected SITE=SOURCE")
    parse_forecast_specs([spec], cfg, option)  # the form and the site checked
    found = forecast_source(source, cfg.forecast.nwp)
    if not isinstance(found, RunArchive):
        raise UserError(
            f"{option} {spec!r}: forecast-skill grades runs kept in files (a run's file, a "
            "run's directory or a directory of runs); fetch the runs first"
        )
    return site, found


def _utc_day(text: str | None, option: str) -> pd.Timestamp | None:
    """A ``--from``/``--to`` date as midnight UTC (``None`` when not given)."""
    if text is None:
        return None
    try:
        return pd.Timestamp(iso_day(text).isoformat(), tz="UTC")
    except ValueError as error:
        raise UserError(f"{option} {error}") from None


def _runs_issued(archive: RunArchive, first: str | None, last: str | None) -> list[RunRef]:
    """The runs of ``archive`` issued from ``first`` to ``last`` (dates, inclusive, UTC)."""
    start, end = _utc_day(first, "--from"), _utc_day(last, "--to")
    refs = [
        ref
        for ref in archive.runs
        if (start is None or ref.issued_at >= start)
        and (end is None or ref.issued_at < end + pd.Timedelta(days=1))
    ]
    if not refs:
        issued = ", ".join(f"{ref.issued_at:%Y-%m-%d %H}Z" for ref in archive.runs[:8])
        raise UserError(
            f"--forecast {archive.label}: no run issued from {first or 'the first'} to "
            f"{last or 'the last'} (UTC); its runs were issued {issued}"
            + (" ..." if len(archive.runs) > 8 else "")
        )
    return refs


def _actual_supply(
    spec: str, site_name: str, cfg: Config, model: SupplyModel, span, notes: list[str]
) -> tuple[pd.DataFrame, str]:
    """``--actual SITE=FILE`` as the site's supply by slot start, and how it is named:
    measured supply (the measurements table) or a weather file through the supply model (a
    typical year mapped onto the runs' span, with a note: it is no actual)."""
    from forecasts.sources import on_dates, read_site_weather

    site, sep, name = spec.partition("=")
    if not sep or not name:
        raise UserError(f"--actual {spec!r}: expected SITE=FILE")
    if site != site_name:
        raise UserError(f"--actual {spec!r}: site {site!r} is not the graded site {site_name!r}")
    path = Path(name)
    if not path.is_file():
        raise UserError(f"--actual {spec!r}: no such file {name!r}")
    if path.suffix == ".parquet" or _has_supply_header(path):
        measured = read_table(MEASUREMENTS, path)
        return _measured_supply(measured, site, path, cfg.forecast.slot_minutes), (
            f"measured supply in {path}"
        )
    settings = cfg.forecast
    weather = read_site_weather(
        cfg.sites[site], path, max_gap_hours=settings.max_gap_hours,
        far_station_km=settings.far_station_km, time_shift=settings.weather_time_shift,
        dni_rule=settings.dni_rule,
    )  # fmt: skip
    text = f"the actual from {path}"
    if weather.typical_year:
        weather = on_dates(weather, *span)
        text = f"the typical year {path.name} (a climatology, not an actual)"
        notes.append(
            f"{path}: a typical year, mapped onto the runs' dates: the figures compare the runs "
            "with a climatology, not with what came on those days"
        )
    return model.site_actual(cfg.sites[site], weather), text


def _has_supply_header(path: Path) -> bool:
    """Whether the first line of ``path`` names a carrier's column (``pv_mw``, ``wind_mw``:
    measured supply)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            header = handle.readline()
    except OSError as error:
        raise UserError(f"{path}: cannot read: {error.strerror}") from None
    return bool(set(carrier_columns()) & {cell.strip() for cell in header.split(",")})


def _measured_supply(
    measured: pd.DataFrame, site: str, path: Path, slot_minutes: int
) -> pd.DataFrame:
    """The site's rows of a measurements table as supply by slot start; the times checked to be
    slot starts ``slot_minutes`` apart (gaps allowed)."""
    rows = measured[measured["site"] == site].sort_values("time")
    if rows.empty:
        sites = ", ".join(sorted(map(str, measured["site"].unique()))) or "none"
        raise UserError(f"{path}: column site: no row of site {site!r}; the file's sites: {sites}")
    times = pd.DatetimeIndex(rows["time"])
    step = pd.Timedelta(minutes=slot_minutes)
    off = times[times.floor(step) != times]
    if len(off):
        raise UserError(
            f"{path}: column time: {off[0].isoformat()} is not the start of a "
            f"{slot_minutes}-minute slot"
        )
    if len(times) > 1 and (spacing := times.to_series().diff().min()) > step:
        minutes = spacing / pd.Timedelta(minutes=1)
        raise UserError(
            f"{path}: column time: site {site!r}'s rows are {minutes:g} minutes apart or more, "
            f"the slots {slot_minutes} minutes; give --slot-minutes {minutes:g}"
        )
    supply = pd.DataFrame({c: rows[c].to_numpy(float) for c in carrier_columns()}, index=times)
    supply["green_mw"] = green_mw(supply)
    return supply


def _reference_supply(
    spec: str, site_name: str, cfg: Config, model: SupplyModel, error, span
) -> tuple[pd.DataFrame, str]:
    """``--reference SITE=SOURCE``: each slot's supply from the freshest of the source's runs
    issued from a day before ``span`` to its end, and how it is named."""
    site, archive = _source(spec, cfg, "--reference")
    if site != site_name:
        raise UserError(f"--reference {spec!r}: site {site!r} is not the graded site {site_name!r}")
    start, end = span[0] - pd.Timedelta(days=1), span[1]
    refs = [ref for ref in archive.runs if start <= ref.issued_at < end]
    if not refs:
        raise UserError(
            f"--reference {spec!r}: no run issued from {start.isoformat()} to "
            f"{end.isoformat()}, the span of the runs graded"
        )
    slot, supply_site = cfg.forecast.slot_minutes, cfg.sites[site]
    runs = {
        ref.issued_at: run_supply(
            archive.read(ref, {site: supply_site}, slot)[site], supply_site, model, error
        )
        for ref in refs
    }
    return skill.freshest(runs), (
        f"the reference {refs[0].model} ({len(refs)} run(s), {archive.label})"
    )


def skill_view(graded: Graded) -> Table:
    """The skill table as rich rows: per lead band, the runs' figures and the error model's."""

    def cell(value: float, spec: str) -> str:
        return "-" if pd.isna(value) else format(value, spec)

    def pair(row: pd.Series) -> str:
        return f"{cell(row['bias_of_capacity'], '+.3f')} / {cell(row['nrmse_of_capacity'], '.3f')}"

    first, runs = graded.issued[0], graded.runs
    issued = f"{first:%Y-%m-%d %H}Z" + (
        f" to {graded.issued[-1]:%Y-%m-%d %H}Z" if len(graded.issued) > 1 else ""
    )
    members = f", {len(runs[0].members)} members" if runs[0].is_ensemble else ""
    view = Table(
        title=f"forecast skill at {graded.site}: {graded.label} ({len(graded.issued)} run(s) "
        f"issued {issued}{members}) against {graded.truth_text}; bias and NRMSE as fractions "
        "of capacity"
    )
    for column in ("lead h", "forecast", "slots (daylit)", "wind bias / NRMSE", "PV bias / NRMSE",
                   "green bias / NRMSE", "p10-p90", "< p10 / > p90"):  # fmt: skip
        view.add_column(column, justify="left" if column in ("lead h", "forecast") else "right")
    table = graded.table
    for (start, end), band in table.groupby(["lead_from_h", "lead_to_h"], sort=True):
        names = [name for name in (graded.label, ERROR_MODEL) if (band["forecast"] == name).any()]
        for name in names:
            rows = band[band["forecast"] == name].set_index("technology")
            wind, pv, green = rows.loc["wind"], rows.loc["pv"], rows.loc["green"]
            view.add_row(
                f"{start:g}-{end:g}", name, f"{int(wind['slots'])} ({int(pv['slots'])})",
                pair(wind), pair(pv), pair(green), cell(green["p10_p90_coverage"], ".0%"),
                f"{cell(green['below_p10'], '.0%')} / {cell(green['above_p90'], '.0%')}",
                end_section=name == names[-1],
            )  # fmt: skip
    return view


def fit_yaml(graded: Graded, cfg: Config, min_slots: int) -> str:
    """``--fit``: the error model's levels fitted from the runs' skill (and an ensemble's
    spread factor), as YAML to paste into a config."""
    runs, site = graded.runs, cfg.sites[graded.site]
    try:
        fit = skill.fit_lead_levels(
            graded.table[graded.table["forecast"] == graded.label], min_slots=min_slots
        )
    except ValueError as problem:
        raise UserError(f"--fit: {problem} (--min-slots {min_slots})") from None
    lines = [
        f"# fitted from the {graded.label} runs against {graded.truth_text}",
        "forecast:",
        f"  wind_nrmse: {fit.wind_nrmse:.3f}  # day-ahead: measured at leads "
        f"{fit.day_ahead_leads_h[0]:g}-{fit.day_ahead_leads_h[1]:g} h",
        f"  pv_nrmse: {fit.pv_nrmse:.3f}",
        "  intraday:" + ("" if fit.intraday else " []"),
        *(
            f"    - {{lead_hours: {level.lead_hours:g}, wind_nrmse: {level.wind_nrmse:.3f}, "
            f"pv_nrmse: {level.pv_nrmse:.3f}}}"
            for level in fit.intraday
        ),
    ]
    if runs[0].is_ensemble:
        model = SupplyModel(cfg.sites, slot_minutes=cfg.forecast.slot_minutes)
        coverage_at = skill.ensemble_coverage(
            runs, graded.truth, site, model, forecast_error_of(cfg)
        )
        factor, coverage = skill.fit_spread_factor(coverage_at)
        spread = cfg.forecast.nwp.ensemble_spread_factor
        lines += [
            "  nwp:",
            f"    ensemble_spread_factor: {factor:g}  # p10-p90 coverage {coverage:.0%} "
            f"(at {spread:g}: {coverage_at(spread):.0%})",
        ]
        if abs(coverage - skill.TARGET_COVERAGE) > 0.05:
            lines.append(
                f"# no spread factor from {skill.SPREAD_FACTORS[0]:g} to "
                f"{skill.SPREAD_FACTORS[1]:g} brings the coverage near "
                f"{skill.TARGET_COVERAGE:.0%}: the truth lies farther from the members' mean "
                "than their widened spread reaches (a bias, or weather the members missed)"
            )
    else:
        lines.append("# deterministic runs: no ensemble spread factor to fit")
    lines += [f"# {note}" for note in fit.notes]
    return "\n".join(lines)
