"""Fidelity benchmark: greensched's supply from the shared EPW files against direct model runs.

For each real typical-year file (CSWD Shanghai and Urumqi), with the default site's plants moved
onto the station:

- PV yield against a direct pvlib run on the raw file (``pvlib.iotools.read_epw``, the same
  plant, sun at the middle of each hour): greensched hourly with the file's clock and DNI (should
  be 1.00), with ``dni_rule: ghi_dhi`` (DNI rebuilt from GHI - DHI), and the default 15-minute
  run (clock corrected: the yield moves in time, not much in total);
- wind capacity factor against a direct windpowerlib run on the raw file's 10 m wind (same farm);
- the day-ahead forecast over the year, issued day by day on the year's distribution (as
  ``DayPipeline`` issues it): bias of wind and PV [% of capacity], NRMSE against the target
  (the configured level, or 70 % of climatology's RMSE where the site is too calm for it), and
  the share of actual green supply below p10 / above p90;
- intraday vintages at 1 h and 6 h leads (each day, vintages issued so that the hours starting
  at 00, 06, 12 and 18 local time are 0-1 h, resp. 5-6 h ahead): NRMSE and p10-p90 coverage
  over those hours, beside the day-ahead figures over the same hours (24 h);
- the clock offset measured against the sun and the closure of the irradiance components.

Then real weather model runs (the NOAA runs of 2019-05-15 00Z in ``../shared/data/nwp``) at the
Tucson sample site (``configs/tucson.yaml``), graded by lead (:mod:`forecasts.skill`): GFS
(deterministic, p10/p90 from the error model around it), the GEFS ensemble (the members' mean,
p10/p90 from the members), NAM and RAP, against HRRR hourly over its 36 h, beside the error
model's figures on the same slots (its vintages issued at 00Z around the same HRRR supply).
There are no measured actuals for Tucson here, and the EPW years are typical, not dated: HRRR,
the freshest and finest model of that morning, stands in for what came. It is a model too, so
this table measures how far the models disagree with it, not their error.

Ratios matter here, not absolute MWh.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib
from rich.console import Console
from rich.table import Table

from forecasts import skill
from forecasts.error import MAX_SHARE_OF_CLIMATOLOGY
from forecasts.nwp.archive import RunArchive
from forecasts.nwp.ensemble import run_supply
from forecasts.pv import pv_model_chain
from forecasts.sources import load_weather
from forecasts.supply import SupplyModel, sun_factor
from forecasts.weather import Weather
from forecasts.wind import wind_farm_mw
from scheduler.config import Config, load_config
from scheduler.pipeline import forecast_error_of

REAL_WEATHER_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "weather"
NOAA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nwp" / "noaa"
TUCSON_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tucson.yaml"
REAL_SOURCES = ("gfs_0p25", "gefs", "nam_12km", "rap")
REFERENCE = "hrrr_hourly"
ISSUED_AT = pd.Timestamp("2019-05-15T00:00Z")
REAL_LEAD_EDGES_H = (0.0, 1.0, 3.0, 6.0, 12.0, 24.0, 36.0)  # HRRR hourly's leads
FILES = {
    "shanghai": ("CHN_Shanghai.Shanghai.583620_CSWD.epw", "shantou"),
    "urumqi": ("CHN_Xinjiang.Uygur.Urumqi.514630_CSWD.epw", "qingyang"),
}
# the operating year 2026 in Asia/Shanghai, in UTC
YEAR = (pd.Timestamp("2025-12-31T16:00Z"), pd.Timestamp("2026-12-31T16:00Z"))


def _direct_pvlib_mwh(raw: pd.DataFrame, site) -> float:
    """Annual AC energy of the site's plants from a plain pvlib run on the raw EPW [MWh]."""
    weather = raw[["ghi", "dni", "dhi", "temp_air", "wind_speed"]].copy()
    weather.index = weather.index - pd.Timedelta(minutes=30)  # hour-ending label -> mid-hour
    total_mwh = 0.0
    for plant in site.pv.values():
        chain = pv_model_chain(plant, site)
        chain.location = pvlib.location.Location(
            site.latitude, site.longitude, "UTC", site.altitude_m
        )
        chain.run_model(weather.tz_convert("UTC"))
        ac_mw = (pd.Series(chain.results.ac).fillna(0.0) / 1e6).clip(0.0, plant.capacity_mw_ac)
        total_mwh += float(ac_mw.sum())
    return total_mwh


def _direct_windpowerlib_cf(raw: pd.DataFrame, site) -> float:
    """Capacity factor of the site's farms from windpowerlib on the raw EPW 10 m wind [-]."""
    frame = raw[["wind_speed", "temp_air"]].assign(pressure=raw["atmospheric_pressure"])
    output_mw = sum(wind_farm_mw(frame, farm, 10.0) for farm in site.wind.values())
    return float(output_mw.mean() / site.wind_capacity_mw)


def _day_by_day_forecast(
    model: SupplyModel, actual: pd.DataFrame, config, references, lead_h: float | None = None
) -> pd.DataFrame:
    """Forecasts one operating day at a time on the year's ``references``: day-ahead
    (``lead_h`` None), or the vintages that see the hours from 00, 06, 12 and 18 local time
    ``lead_h - 1`` to ``lead_h`` hours ahead (only those hours are returned)."""
    local_day = (pd.DatetimeIndex(actual["time"]) + pd.Timedelta(hours=8)).date
    error = forecast_error_of(config)
    hour = pd.Timedelta(hours=1)
    parts = []
    for _, rows in actual.groupby(local_day):
        rows = rows.reset_index(drop=True)
        if lead_h is None:
            parts.append(model.forecast(rows, error, config.seed, reference=references))
            continue
        start = rows["time"].iloc[0]
        for window in (start + k * 6 * hour for k in range(4)):
            forecast = model.forecast(
                rows, error, config.seed, reference=references,
                issued_at=window - (lead_h - 1) * hour,
            )  # fmt: skip
            parts.append(forecast[(rows["time"] >= window) & (rows["time"] < window + hour)])
    return pd.concat(parts, ignore_index=True)


def _forecast_figures(
    forecast: pd.DataFrame, actual: pd.DataFrame, site, daylit: np.ndarray
) -> dict[str, str]:
    """Bias, NRMSE and p10-p90 coverage of forecasts of one site (rows aligned with
    ``actual``)."""
    pv_cap, wind_cap = site.pv_capacity_mw_ac, site.wind_capacity_mw
    wind_error = (forecast["wind_mw"] - actual["wind_mw"]).to_numpy()
    pv_error = (forecast["pv_mw"] - actual["pv_mw"]).to_numpy()
    green = actual["green_mw"].to_numpy()
    p10, p90 = forecast["green_mw_p10"].to_numpy(), forecast["green_mw_p90"].to_numpy()
    below = float(np.mean(green < p10 - 1e-9))
    above = float(np.mean(green > p90 + 1e-9))
    # where the actual has a point mass (calm, dark hours at exactly 0 MW) a calibrated p10 can
    # equal it: then P(actual < p10) <= 10 % <= P(actual <= p10), so both are shown
    at_or_below = float(np.mean(green <= p10 + 1e-9))
    at_or_above = float(np.mean(green >= p90 - 1e-9))
    wind_nrmse = float(np.sqrt(np.mean(wind_error**2))) / wind_cap
    pv_nrmse = float(np.sqrt(np.mean(pv_error[daylit] ** 2))) / pv_cap
    return {
        "bias wind / PV (% cap)": f"{wind_error.mean() / wind_cap:+.2%} / "
        f"{pv_error.mean() / pv_cap:+.2%}",
        "NRMSE wind / PV (daylit)": f"{wind_nrmse:.3f} / {pv_nrmse:.3f}",
        "p10-p90 coverage": f"{1 - below - above:.1%}",
        "below p10 / above p90": f"{below:.1%} / {above:.1%}",
        "at or below p10 / at or above p90": f"{at_or_below:.1%} / {at_or_above:.1%}",
    }


def _lead_rows(model, default, config, references, site, daylit) -> dict[str, str]:
    """NRMSE and coverage per lead over the same hours of every day (module doc)."""
    windows = _day_by_day_forecast(model, default, config, references, lead_h=1.0)
    at = default["time"].isin(windows["time"]).to_numpy()
    day_ahead = _day_by_day_forecast(model, default, config, references)[at]
    rows = {}
    for lead, forecast in (
        ("1 h", windows),
        ("6 h", _day_by_day_forecast(model, default, config, references, lead_h=6.0)),
        ("24 h", day_ahead.reset_index(drop=True)),
    ):
        figures = _forecast_figures(forecast, default[at].reset_index(drop=True), site, daylit[at])
        rows[f"lead {lead}: NRMSE wind / PV"] = figures["NRMSE wind / PV (daylit)"]
        rows[f"lead {lead}: p10-p90 coverage"] = figures["p10-p90 coverage"]
    return rows


def _row(config, name: str, path, site_name: str) -> dict[str, str]:
    raw, meta = pvlib.iotools.read_epw(path)
    base = config.sites[site_name]
    site = base.model_copy(
        update={"name": name, "latitude": meta["latitude"], "longitude": meta["longitude"],
                "altitude_m": meta["altitude"]}
    )  # fmt: skip
    sites = {name: site}

    def supply(slot_minutes: int, **options) -> tuple[pd.DataFrame, Weather]:
        weather = load_weather(
            site, path, *YEAR, freq_minutes=slot_minutes, seed=config.seed, **options
        )
        return SupplyModel(sites, slot_minutes=slot_minutes).actual({name: weather}), weather

    def pv_mwh(table: pd.DataFrame) -> float:
        slot_h = (table["time"].iloc[1] - table["time"].iloc[0]) / pd.Timedelta(hours=1)
        return float(table["pv_mw"].sum() * slot_h)

    direct_pv = _direct_pvlib_mwh(raw, site)
    kept, _ = supply(60, time_shift=0, dni_rule="file")
    rebuilt, _ = supply(60, time_shift=0, dni_rule="ghi_dhi")
    default, weather = supply(15)
    model = SupplyModel(sites, slot_minutes=15)
    daylit = sun_factor(pd.DatetimeIndex(default["time"]), site.latitude, site.longitude) > 0.05
    references = model.references(default)
    on_year = _forecast_figures(
        _day_by_day_forecast(model, default, config, references), default, site, daylit
    )
    climatology = float(default["wind_mw"].std()) / site.wind_capacity_mw
    wind_target = min(config.forecast.wind_nrmse, MAX_SHARE_OF_CLIMATOLOGY * climatology)
    wind_cf = float(default["wind_mw"].mean() / site.wind_capacity_mw)
    return {
        "file": name,
        "clock offset (min)": f"{weather.clock_offset_minutes:+.1f}",
        "closure": f"{weather.closure:.3f}",
        "PV / pvlib (hourly, file clock)": f"{pv_mwh(kept) / direct_pv:.3f}",
        "PV / pvlib (ghi_dhi rule)": f"{pv_mwh(rebuilt) / direct_pv:.3f}",
        "PV / pvlib (15 min, default)": f"{pv_mwh(default) / direct_pv:.3f}",
        "wind CF / windpowerlib": f"{wind_cf:.3f} / {_direct_windpowerlib_cf(raw, site):.3f}",
        "wind NRMSE target (capped at 0.7 x climatology)": f"{wind_target:.3f}",
        **{f"day-ahead {k}": v for k, v in on_year.items()},
        **_lead_rows(model, default, config, references, site, daylit),
    }


def _site_supply(archive: RunArchive, config: Config, model: SupplyModel) -> pd.DataFrame:
    """The Tucson site's supply from ``archive``'s run issued at :data:`ISSUED_AT`."""
    ref = next(ref for ref in archive.runs if ref.issued_at == ISSUED_AT)
    site = config.sites["tucson"]
    run = archive.read(ref, {"tucson": site}, model.slot_minutes)["tucson"]
    error = forecast_error_of(config)
    spread = config.forecast.nwp.ensemble_spread_factor
    return run_supply(run, site, model, error, spread_factor=spread)


def _real_source_skill(config: Config) -> tuple[pd.DataFrame, dict[str, float]]:
    """Skill by lead of each of :data:`REAL_SOURCES` and of the error model against HRRR
    hourly (module doc), one table with a ``forecast`` column; and the lead [h] at which each
    source's comparison ends."""
    site = config.sites["tucson"]
    model = SupplyModel(config.sites, slot_minutes=config.forecast.slot_minutes)
    truth = skill.freshest({ISSUED_AT: _site_supply(RunArchive(NOAA_DIR / REFERENCE), config,
                                                    model)})  # fmt: skip
    parts, last_lead_h, slots = [], {}, pd.DatetimeIndex([])
    for source in REAL_SOURCES:
        pairs = skill.paired({ISSUED_AT: _site_supply(RunArchive(NOAA_DIR / source), config,
                                                       model)}, truth)  # fmt: skip
        by_lead = skill.skill_by_lead(pairs, site, model.slot_minutes, REAL_LEAD_EDGES_H)
        parts.append(by_lead.assign(forecast=source))
        last_lead_h[source] = float(pairs["lead_h"].max()) + model.slot_minutes / 60
        slots = slots.union(pd.DatetimeIndex(pairs["time"]))
    synthetic = skill.error_model_forecasts(
        truth, site, model, forecast_error_of(config), config.seed, {ISSUED_AT: slots}
    )
    pairs = skill.paired(synthetic, truth)
    by_lead = skill.skill_by_lead(pairs, site, model.slot_minutes, REAL_LEAD_EDGES_H)
    parts.append(by_lead.assign(forecast="error model"))
    return pd.concat(parts, ignore_index=True), last_lead_h


def _real_source_table(table: pd.DataFrame) -> Table:
    """Rows: per forecast, its slots, wind, PV and green bias / NRMSE and green's p10-p90
    coverage (shares below p10 / above p90); columns: the lead bands."""
    bands = table[["lead_from_h", "lead_to_h"]].drop_duplicates().sort_values("lead_from_h")
    view = Table(
        title="real runs at Tucson, issued 2019-05-15 00Z, against HRRR hourly (a model, not a "
        "measurement): bias / NRMSE as fractions of capacity, by lead [h]"
    )
    view.add_column("forecast")
    view.add_column("measure")
    for band in bands.itertuples():
        view.add_column(f"{band.lead_from_h:g}-{band.lead_to_h:g} h", justify="right")

    def cell(row: pd.Series | None, measure: str) -> str:
        if row is None:
            return ""
        if measure == "slots":
            return f"{int(row['slots'])}"
        if measure == "coverage":
            return (f"{row['p10_p90_coverage']:.0%} ({row['below_p10']:.0%} / "
                    f"{row['above_p90']:.0%})")  # fmt: skip
        if not row["slots"]:
            return "-"
        return f"{row['bias_of_capacity']:+.3f} / {row['nrmse_of_capacity']:.3f}"

    measures = (
        ("slots (daylit)", "wind", "slots", "pv"),
        ("wind", "wind", "error", None),
        ("PV (daylit)", "pv", "error", None),
        ("green", "green", "error", None),
        ("p10-p90 (< p10 / > p90)", "green", "coverage", None),
    )
    for forecast, rows in table.groupby("forecast", sort=False):
        for i, (label, technology, measure, daylit) in enumerate(measures):
            cells = []
            for band in bands.itertuples():
                at = rows[(rows["lead_from_h"] == band.lead_from_h)].set_index("technology")
                row = at.loc[technology] if technology in at.index else None
                text = cell(row, measure)
                if daylit and row is not None:
                    text += f" ({int(at.loc[daylit]['slots'])})"
                cells.append(text)
            view.add_row(str(forecast) if i == 0 else "", label, *cells,
                         end_section=i == len(measures) - 1)  # fmt: skip
    return view


def _print_real_sources(console: Console) -> None:
    """The real-source part (module doc), or why it is skipped."""
    missing = [s for s in (*REAL_SOURCES, REFERENCE) if not (NOAA_DIR / s).is_dir()]
    if missing:
        console.print(f"no NOAA runs {', '.join(missing)} in {NOAA_DIR}; real sources skipped")
        return
    config = load_config(TUCSON_CONFIG)
    table, last_lead_h = _real_source_skill(config)
    wide = Console(width=max(console.width, 150))  # a column per lead band
    wide.print(_real_source_table(table))
    wide.print(
        "The reference is HRRR hourly 2019-05-15 00Z (3 km, the freshest and finest run of "
        "that morning): a model, not a measurement, so the figures measure how far each model "
        "disagrees with it, not forecast error. GFS's p10/p90 come from the error model around "
        "it, GEFS's from its 21 members (forecast.nwp.ensemble_spread_factor "
        f"{config.forecast.nwp.ensemble_spread_factor:g}). Leads compared: "
        + ", ".join(f"{source} to {lead:g} h" for source, lead in last_lead_h.items())
        + "; the error model on the union of those slots (vintages issued at 00Z around the "
        "same HRRR supply, its distribution taken from it, forecast levels of "
        f"{TUCSON_CONFIG.name})."
    )


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("forecasts").setLevel(logging.ERROR)
    config = load_config()
    console = Console()
    weather_dir = REAL_WEATHER_DIR
    rows = [
        _row(config, name, weather_dir / file, site_name)
        for name, (file, site_name) in FILES.items()
        if (weather_dir / file).exists()
    ]
    if not rows:
        console.print(f"no EPW files in {weather_dir}; nothing to compare")
    else:
        table = Table(
            title="fidelity on the shared EPW files (year 2026, default plants at the station)"
        )
        table.add_column("measure")
        for row in rows:
            table.add_column(row["file"], justify="right")
        for measure in list(rows[0])[1:]:
            table.add_row(measure, *(row[measure] for row in rows))
        console.print(table)
    _print_real_sources(console)


if __name__ == "__main__":
    main()
