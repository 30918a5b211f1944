"""From weather to the supply table: one object that wires the steps, each step replaceable.

``SupplyModel`` follows pvlib's and windpowerlib's ModelChain: ``resample`` (weather to slot
length) and ``models`` (one per carrier of :data:`~scheduler.contracts.carriers.CARRIERS`,
run per plant; :data:`CARRIER_MODELS` by default) are callables chosen when the object is
built. ``actual`` gives the supply table of ``DESIGN.md``; ``forecast`` adds the error model
to it (the day-ahead forecast, or the vintage issued at a given time); ``vintages`` prepares
that once for the many vintages a re-planning loop asks of one table.

Supply table: one row per site and slot, columns ``time`` (slot start, UTC), ``site``, one
``<carrier>_mw`` per carrier (``pv_mw``, ``wind_mw``), ``green_mw`` (their sum) [MW, AC
delivered to the site], and for a forecast optionally ``green_mw_p10`` / ``green_mw_p90``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from forecasts.error import ForecastError, SiteReference, SiteVintages, site_reference
from forecasts.pv import pv_ac_mw
from forecasts.resample import to_slots
from forecasts.solar import solar_position
from forecasts.specs import PVPlant, SupplySite, WindFarm
from forecasts.weather import Weather
from forecasts.wind import wind_farm_mw
from scheduler.contracts import SUPPLY
from scheduler.contracts.carriers import CARRIERS, capacities_mw, green_mw

__all__ = [
    "CARRIER_MODELS",
    "SupplyModel",
    "Vintages",
    "pv_model",
    "site_summary",
    "sun_factor",
    "wind_model",
]


CarrierModel = Callable[[Weather, Any, SupplySite], pd.Series]
"""One plant's output [MW] on slot weather: ``model(slots, plant, site)``."""
Resampler = Callable[[Weather, int, float, float, float], Weather]


def pv_model(slots: Weather, plant: PVPlant, site: SupplySite) -> pd.Series:
    """A PV plant's AC output [MW]: pvlib's PVWatts chain, :func:`~forecasts.pv.pv_ac_mw`."""
    return pv_ac_mw(slots.data, plant, site)


def wind_model(slots: Weather, farm: WindFarm, site: SupplySite) -> pd.Series:
    """A wind farm's output [MW]: windpowerlib's turbine-cluster chain,
    :func:`~forecasts.wind.wind_farm_mw`, on the rows by position (wind does not depend on the
    time of day; stacked ensemble members repeat times)."""
    output_mw = wind_farm_mw(slots.data.reset_index(drop=True), farm, slots.wind_height_m)
    return pd.Series(output_mw.to_numpy(), index=slots.data.index, name="wind_mw")


CARRIER_MODELS: Mapping[str, CarrierModel] = MappingProxyType({"pv": pv_model, "wind": wind_model})
"""The default model of each carrier of :data:`~scheduler.contracts.carriers.CARRIERS`."""


def sun_factor(
    index: pd.DatetimeIndex, latitude: float, longitude: float, altitude_m: float = 0.0
) -> np.ndarray:
    """cos(solar zenith) at interval midpoints, clipped to [0, 1] [-]."""
    step = pd.Timedelta(index[1] - index[0]) if len(index) > 1 else pd.Timedelta(hours=1)
    zenith_deg = solar_position(index + step / 2, latitude, longitude, altitude_m)["zenith"]
    return np.clip(np.cos(np.radians(zenith_deg.to_numpy())), 0.0, 1.0)


@dataclass
class SupplyModel:
    """Turns per-site weather into the supply table at ``slot_minutes`` resolution."""

    sites: Mapping[str, SupplySite]
    slot_minutes: int = 15
    models: Mapping[str, CarrierModel] = field(default_factory=lambda: dict(CARRIER_MODELS))
    resample: Resampler = to_slots
    timings_s: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c.name for c in CARRIERS if c.name not in self.models]
        if missing:
            raise TypeError(f"SupplyModel.models has no model for carrier(s) {missing}")
        for name, step in [*self.models.items(), ("resample", self.resample)]:
            if not callable(step):
                raise TypeError(f"SupplyModel model {name!r} must be callable, got {step!r}")

    def _timed(self, step: str, started: float) -> None:
        self.timings_s[step] = self.timings_s.get(step, 0.0) + time.perf_counter() - started

    def site_actual(
        self,
        site: SupplySite,
        weather: Weather,
        rows: Callable[[pd.DatetimeIndex], np.ndarray] | None = None,
    ) -> pd.DataFrame:
        """Supply of one site indexed by slot start: each carrier's ``<carrier>_mw`` and
        ``green_mw``; with ``rows`` (slot starts -> bool mask) only the slots it keeps are
        modelled."""
        started = time.perf_counter()
        slots = self.resample(
            weather, self.slot_minutes, site.latitude, site.longitude, site.altitude_m
        )
        if rows is not None:
            slots = replace(slots, data=slots.data[rows(pd.DatetimeIndex(slots.data.index))])
        self._timed("resample", started)
        frame = pd.DataFrame(self._carriers_mw(site, slots), index=slots.data.index)
        frame.index.name = "time"
        frame["green_mw"] = green_mw(frame)
        return frame

    def _carriers_mw(self, site: SupplySite, slots: Weather) -> dict[str, np.ndarray]:
        """Each carrier's output at ``site`` on ``slots`` [MW]: its model summed over the
        site's plants of that carrier (timed per carrier)."""
        out = {}
        for carrier in CARRIERS:
            started = time.perf_counter()
            model = self.models[carrier.name]
            plants = carrier.plants(site).values()
            mw = [model(slots, plant, site).to_numpy() for plant in plants]
            out[carrier.column] = np.sum(mw, axis=0) if mw else np.zeros(len(slots.data))
            self._timed(carrier.name, started)
        return out

    def site_members(self, site: SupplySite, members: Sequence[Weather]) -> list[pd.DataFrame]:
        """:meth:`site_actual` of each of ``members`` (an ensemble's weather on the same slots),
        modelled in one pass: the members are stacked so the PV and wind models run once."""
        started = time.perf_counter()
        slots = [
            self.resample(w, self.slot_minutes, site.latitude, site.longitude, site.altitude_m)
            for w in members
        ]
        heights = {w.wind_height_m for w in slots}
        if len(heights) > 1:
            raise ValueError(f"members give wind at different heights: {sorted(heights)}")
        index = pd.DatetimeIndex(slots[0].data.index, name="time")
        stacked = replace(slots[0], data=pd.concat([w.data for w in slots]))
        self._timed("resample", started)
        by_member = {
            column: values.reshape(len(slots), -1)
            for column, values in self._carriers_mw(site, stacked).items()
        }
        frames = []
        for member in range(len(slots)):
            frame = pd.DataFrame({c: mw[member] for c, mw in by_member.items()}, index=index)
            frame["green_mw"] = green_mw(frame)
            frames.append(frame)
        return frames

    def actual(self, weather: Mapping[str, Weather]) -> pd.DataFrame:
        """The supply table for every site in ``weather`` (actual output, no forecast error)."""
        parts = []
        for name, site_weather in weather.items():
            if name not in self.sites:
                raise KeyError(
                    f"weather given for unknown site {name!r}; known: {', '.join(self.sites)}"
                )
            parts.append(
                self.site_actual(self.sites[name], site_weather).reset_index().assign(site=name)
            )
        return _tidy(pd.concat(parts, ignore_index=True))

    def forecast(
        self,
        actual: pd.DataFrame,
        error: ForecastError,
        seed: int,
        quantiles: bool = True,
        reference: pd.DataFrame | Mapping[str, SiteReference] | None = None,
        issued_at: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """A forecast of ``actual`` (a supply table) under the ``error`` model.

        ``reference`` is what the error model takes each site's distribution from: a supply
        table (e.g. a whole year of the same sites), or its :meth:`references` prepared once
        when forecasting many days; by default ``actual`` itself. ``issued_at`` (UTC) gives the
        vintage issued at that time (slots starting before it are the actual); ``None`` the
        day-ahead forecast. Errors are drawn per operating day in each site's time zone, so a
        day's forecast does not depend on the range asked for. Many vintages of the same
        table: :meth:`vintages`.
        """
        return self.vintages(actual, error, seed, quantiles, reference).at(issued_at)

    def vintages(
        self,
        actual: pd.DataFrame,
        error: ForecastError,
        seed: int,
        quantiles: bool = True,
        reference: pd.DataFrame | Mapping[str, SiteReference] | None = None,
    ) -> Vintages:
        """Every vintage of the forecast of ``actual`` (arguments as in :meth:`forecast`), with
        what does not depend on the issue time prepared once."""
        started = time.perf_counter()
        if not isinstance(reference, Mapping):
            reference = self.references(actual if reference is None else reference)
        sites = actual["site"].to_numpy().astype(str)
        times = pd.DatetimeIndex(actual["time"])
        order = np.lexsort((times.asi8, sites))  # the supply table's order: site, time
        sites, times = sites[order], times[order]
        carriers_mw = {c.column: actual[c.column].to_numpy(float)[order] for c in CARRIERS}
        parts = []
        for name in np.unique(sites):
            site = self.sites[str(name)]
            at = np.flatnonzero(sites == name)
            site_vintages = SiteVintages(
                pd.DataFrame({c: mw[at] for c, mw in carriers_mw.items()}, index=times[at]),
                capacities_mw=capacities_mw(site),
                sun_factor=self._sun_factor(times[at], site),
                error=error,
                seed=seed,
                key=site.name,
                reference=reference[str(name)],
                timezone=site.timezone,
            )
            parts.append(site_vintages)
        self._timed("forecast_error", started)
        keys = pd.DataFrame({"time": times, "site": sites.astype(object)})
        return Vintages(keys, parts, quantiles, self._timed)

    def site_reference(self, site: SupplySite, supply: pd.DataFrame) -> SiteReference:
        """The error model's reference of one site from its supply rows indexed by slot start."""
        return site_reference(supply, self._sun_factor(supply.index, site), capacities_mw(site))

    def references(self, supply: pd.DataFrame) -> dict[str, SiteReference]:
        """Each site's error-model reference from a supply table (prepare once, reuse)."""
        return {
            str(name): self.site_reference(self.sites[str(name)], rows.set_index("time"))
            for name, rows in supply.groupby("site", sort=False)
        }

    @staticmethod
    def _sun_factor(index: pd.Index, site: SupplySite) -> np.ndarray:
        times = pd.DatetimeIndex(index)
        if len(times) > 1 and (np.diff(times.asi8) == times.asi8[1] - times.asi8[0]).all():
            return _regular_sun_factor(
                times[0], len(times), times[1] - times[0], site.latitude, site.longitude,
                site.altitude_m,
            )  # fmt: skip
        return sun_factor(times, site.latitude, site.longitude, site.altitude_m)


class Vintages:
    """Every vintage of the forecast of one supply table (:meth:`SupplyModel.vintages`).

    ``keys`` are the table's ``time`` and ``site`` columns in the supply table's order (site,
    time); ``sites`` each site's :class:`~forecasts.error.SiteVintages` over its rows, in the
    same order; ``timed(step, started)`` books the time a vintage takes.
    """

    def __init__(
        self,
        keys: pd.DataFrame,
        sites: Sequence[SiteVintages],
        quantiles: bool,
        timed: Callable[[str, float], None],
    ) -> None:
        self._keys = {name: keys[name].array for name in keys.columns}  # no per-vintage parsing
        self._sites = tuple(sites)
        self._quantiles = quantiles
        self._timed = timed

    def at(self, issued_at: pd.Timestamp | None = None) -> pd.DataFrame:
        """The forecast issued at ``issued_at`` (UTC; slots starting before it are the actual),
        ``None`` the day-ahead forecast: a supply table, with ``green_mw_p10`` /
        ``green_mw_p90`` when the vintages have quantiles."""
        started = time.perf_counter()
        columns: dict[str, list[np.ndarray]] = {}
        for site in self._sites:
            for column, values in site.columns(issued_at, self._quantiles).items():
                columns.setdefault(column, []).append(values)
        frame = pd.DataFrame(
            self._keys | {column: np.concatenate(parts) for column, parts in columns.items()}
        )
        self._timed("forecast_error", started)
        return frame


@lru_cache(maxsize=1024)
def _regular_sun_factor(
    start: pd.Timestamp,
    periods: int,
    step: pd.Timedelta,
    latitude: float,
    longitude: float,
    altitude_m: float,
) -> np.ndarray:
    """:func:`sun_factor` of a regular index, computed once (vintages of a day reuse it)."""
    index = pd.date_range(start, periods=periods, freq=step)
    values = sun_factor(index, latitude, longitude, altitude_m)
    values.flags.writeable = False
    return values


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    extra = [c for c in frame.columns if c not in SUPPLY.names]
    return frame[[*SUPPLY.names, *extra]].sort_values(["site", "time"], ignore_index=True)


def site_summary(supply: pd.DataFrame, sites: Mapping[str, SupplySite]) -> pd.DataFrame:
    """Per site: each carrier's energy (``<carrier>_mwh``) and the total's [MWh], peak [MW] and
    capacity factor [-].

    Energy integrates MW over each row's slot length, taken from the ``time`` column.
    """
    rows = []
    for name, part in supply.groupby("site", sort=False):
        times = pd.DatetimeIndex(part["time"])
        slot_h = (times[1] - times[0]) / pd.Timedelta(hours=1) if len(times) > 1 else 1.0
        capacity = sum(capacities_mw(sites[str(name)]).values())
        energy = {f"{c.name}_mwh": part[c.column].sum() * slot_h for c in CARRIERS}
        rows.append(
            {
                "site": name,
                **energy,
                "green_mwh": part["green_mw"].sum() * slot_h,
                "peak_mw": part["green_mw"].max(),
                "capacity_mw": capacity,
                "capacity_factor": part["green_mw"].mean() / capacity if capacity else 0.0,
            }
        )
    return pd.DataFrame(rows)
