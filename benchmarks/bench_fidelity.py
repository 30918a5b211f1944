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

from forecasts.error import MAX_SHARE_OF_CLIMATOLOGY
from forecasts.pv import pv_model_chain
from forecasts.sources import load_weather
from forecasts.supply import SupplyModel, sun_factor
from forecasts.wind import wind_farm_mw
from scheduler.config import load_config
from scheduler.pipeline import forecast_error_of

REAL_WEATHER_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "weather"
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

    def supply(slot_minutes: int, **options) -> tuple[pd.DataFrame, object]:
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
        return
    table = Table(
        title="fidelity on the shared EPW files (year 2026, default plants at the station)"
    )
    table.add_column("measure")
    for row in rows:
        table.add_column(row["file"], justify="right")
    for measure in list(rows[0])[1:]:
        table.add_row(measure, *(row[measure] for row in rows))
    console.print(table)


if __name__ == "__main__":
    main()
