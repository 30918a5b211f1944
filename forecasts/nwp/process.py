"""From a weather model's output at one point to the weather frame on scheduling slots.

Pure functions over pandas objects; the readers (:mod:`forecasts.nwp.noaa`,
:mod:`forecasts.nwp.grib`, :mod:`forecasts.nwp.openmeteo`) hand over a :class:`ModelOutput`
and :func:`to_slot_weather` wires the named steps:

1. **Un-averaging** (done by the readers with :func:`unmix_running_means` or
   :func:`deaccumulate`): NOAA's GFS and GEFS give radiation as a mean since the last 6-hourly
   reset, ECMWF as energy accumulated since the run started; both become interval means
   labelled at the interval end.
2. **Slots**: the run's valid span cut into slots of ``slot_minutes``; every value is a mean
   over its slot, labelled at the slot start (the weather frame contract,
   :mod:`forecasts.weather`).
3. **Irradiance to slots, by clear-sky index** (pvlib Ineichen clear sky at slot midpoints):
   interval means (hourly, 3-hourly, mixed) keep each interval's energy (:func:`means_to_slots`);
   instantaneous samples (HRRR, NAM, 15-minute HRRR sub-hourly) give each slot the value at its
   midpoint (:func:`instants_to_slots`); a model without radiation gets GHI from total cloud
   cover (:func:`ghi_from_cloud_cover`, Larson et al. 2016).
4. **Components**: the model's own beam and diffuse where it gives them (HRRR), else GHI split
   into DNI and DHI by pvlib's Erbs model (:func:`erbs_components`).
5. **Other variables** (air temperature, wind speed, pressure): linear in time between the
   model's instants, at slot midpoints; pressure from the site's altitude when not given.
6. **Wind height**: one level is kept with its height (the wind model brings it to hub height
   with the farm's logarithmic profile); with two levels the upper one is kept and the power-law
   (Hellman) exponent between them goes into ``wind_shear_exponent`` (:func:`shear_exponent`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd
import pvlib

from forecasts.solar import solar_position
from forecasts.weather import Weather

__all__ = [
    "LARSON_OFFSET",
    "ModelOutput",
    "SlotSun",
    "covered_span",
    "deaccumulate",
    "erbs_components",
    "ghi_from_cloud_cover",
    "instants_to_slots",
    "interval_starts",
    "means_to_slots",
    "members_to_slot_weather",
    "shear_exponent",
    "to_slot_weather",
    "unmix_running_mean_values",
    "unmix_running_means",
]

LARSON_OFFSET = 0.35
"""GHI under full cloud cover as a share of the clear sky (Larson et al. 2016, J. Renewable
Sustainable Energy 8, the linear model pvlib's forecast module used) [-]."""
_MIN_CLEAR_W_M2 = 5.0  # below this clear-sky irradiance the clear-sky index is not defined
_MAX_CLEAR_SKY_INDEX = 1.5
_MIN_GHI_W_M2 = 5.0  # below this GHI the diffuse fraction is not defined
_MAX_SHEAR_EXPONENT = 0.6  # strongly stable nights; larger values come from calm lower levels
_NEUTRAL_SHEAR_EXPONENT = 1.0 / 7.0
_MIN_SHEAR_WIND_M_S = 1.0  # below this lower wind the exponent is not defined (neutral used)

IrradianceKind = Literal["instant", "mean"]


@dataclass(frozen=True)
class ModelOutput:
    """One member's output at one point, as the model gives it.

    ``values`` is indexed by valid time (UTC) and holds any of: ``ghi``, ``dni``, ``dhi``
    [W/m^2], ``temp_air`` [C], ``wind_speed`` [m/s] at ``wind_height_m``,
    ``wind_speed_upper`` [m/s] at ``upper_wind_height_m``, ``pressure`` [Pa], ``cloud_cover``
    [%]. ``irradiance`` says how the radiation columns are labelled: ``"instant"`` (the value
    at the valid time) or ``"mean"`` (the mean over the interval that ends at the valid time,
    starting at the row before; the first row's interval starts at ``issued_at``). Other
    columns are instantaneous. Rows with a NaN are dropped per column.
    """

    values: pd.DataFrame
    irradiance: IrradianceKind
    wind_height_m: float
    upper_wind_height_m: float | None = None

    @cached_property
    def times_s(self) -> np.ndarray:
        """Valid times [s since 1970]."""
        return _seconds(self.values.index)

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        """Each column as floats [its unit], NaN where missing (read once, not per step)."""
        table = self.values.to_numpy(dtype=float)
        return {str(name): table[:, i] for i, name in enumerate(self.values.columns)}


def _ns(times: pd.DatetimeIndex | pd.Index) -> np.ndarray:
    """Nanoseconds since 1970 (int64), whatever the index's resolution."""
    index = times if isinstance(times, pd.DatetimeIndex) else pd.DatetimeIndex(times)
    return (index if index.unit == "ns" else index.as_unit("ns")).asi8


def _seconds(times: pd.DatetimeIndex | pd.Index) -> np.ndarray:
    """Seconds since 1970 as floats."""
    return _ns(times) / 1e9


def unmix_running_means(
    values: pd.Series, issued_at: pd.Timestamp, reset_hours: float = 6.0
) -> pd.Series:
    """Interval means of a NOAA running mean (GFS, GEFS radiation) [same unit].

    NOAA labels radiation at the end of its averaging window, which starts at the run's issue
    time and restarts every ``reset_hours``: the value at ``t`` is the mean since the last
    reset before ``t``. The mean over ``(t_prev, t]`` is then
    ``(v_t (t - r) - v_prev (t_prev - r)) / (t - t_prev)`` while ``t_prev`` is inside the same
    window (``r`` its reset), else ``v_t`` itself; steps longer than a window are taken as
    their own mean. The file's rounding makes some dusk intervals slightly negative: they are
    set to 0 and the window's other intervals lowered in proportion, so each window keeps the
    file's mean. NaN rows (the analysis at lead 0) are dropped.
    """
    series = values.dropna()
    times = pd.DatetimeIndex(series.index)
    kept = unmix_running_mean_values(
        _ns(times), series.to_numpy(dtype=float), issued_at, reset_hours
    )
    return pd.Series(kept, index=times, name=values.name)


def unmix_running_mean_values(
    times_ns: np.ndarray, values: np.ndarray, issued_at: pd.Timestamp, reset_hours: float = 6.0
) -> np.ndarray:
    """:func:`unmix_running_means` over arrays: ``values`` [any unit] at ``times_ns``
    [ns since 1970], increasing, no NaN; the interval means [same unit]."""
    window = pd.Timedelta(hours=reset_hours)
    issued_ns, window_ns = pd.Timestamp(issued_at).as_unit("ns").value, window.value
    reset_s = (issued_ns + ((times_ns - issued_ns - 1) // window_ns) * window_ns) / 1e9
    now_s = times_ns / 1e9
    before_s = np.concatenate([[-np.inf], now_s[:-1]])
    previous = np.concatenate([[np.nan], values[:-1]])
    same_window = (before_s > reset_s) & (now_s - before_s <= window.total_seconds())
    with np.errstate(invalid="ignore"):
        unmixed = (values * (now_s - reset_s) - previous * (before_s - reset_s)) / (
            now_s - before_s
        )
    out = np.where(same_window, unmixed, values)
    # per window: the energy the file gives, spread over its non-negative intervals
    window_id = np.cumsum(~same_window)
    duration = np.where(same_window, now_s - before_s, now_s - np.maximum(before_s, reset_s))
    duration = np.where(np.isfinite(duration), duration, window.total_seconds())
    energy = np.bincount(window_id, weights=out * duration)
    positive = np.bincount(window_id, weights=np.maximum(out, 0.0) * duration)
    scale = np.divide(energy, positive, out=np.zeros_like(energy), where=positive > 0)
    return np.maximum(out, 0.0) * np.clip(scale, 0.0, None)[window_id]


def deaccumulate(accumulated_j_m2: pd.Series, issued_at: pd.Timestamp) -> pd.Series:
    """Interval means [W/m^2] of energy accumulated since ``issued_at`` [J/m^2] (ECMWF
    ``ssrd``): ``(A_t - A_prev) / (t - t_prev)``, the first interval starting at the issue
    time (where the accumulation is 0)."""
    series = accumulated_j_m2.dropna()
    times = pd.DatetimeIndex(series.index)
    keep = times > issued_at
    times, energy = times[keep], series.to_numpy(dtype=float)[keep]
    starts = np.concatenate([[_seconds(pd.DatetimeIndex([issued_at]))[0]], _seconds(times)[:-1]])
    previous = np.concatenate([[0.0], energy[:-1]])
    mean_w_m2 = (energy - previous) / (_seconds(times) - starts)
    return pd.Series(np.clip(mean_w_m2, 0.0, None), index=times, name=accumulated_j_m2.name)


def ghi_from_cloud_cover(cloud_cover_percent: np.ndarray, ghi_clear_w_m2: np.ndarray) -> np.ndarray:
    """GHI [W/m^2] from total cloud cover [%] and the clear-sky GHI [W/m^2]: Larson et al.'s
    linear model, ``(offset + (1 - offset)(1 - cc/100)) ghi_clear`` with
    :data:`LARSON_OFFSET`."""
    cover = np.clip(np.asarray(cloud_cover_percent, dtype=float), 0.0, 100.0) / 100.0
    return (LARSON_OFFSET + (1.0 - LARSON_OFFSET) * (1.0 - cover)) * ghi_clear_w_m2


def shear_exponent(
    lower_m_s: np.ndarray, lower_height_m: float, upper_m_s: np.ndarray, upper_height_m: float
) -> np.ndarray:
    """Power-law (Hellman) exponent between two wind levels,
    ``ln(u_up / u_low) / ln(h_up / h_low)`` [-], clipped to [0, 0.6]; the neutral 1/7 where the
    lower wind is under 1 m/s (no exponent is defined there)."""
    lower = np.asarray(lower_m_s, dtype=float)
    upper = np.asarray(upper_m_s, dtype=float)
    defined = (lower >= _MIN_SHEAR_WIND_M_S) & (upper > 0)
    alpha = np.full(lower.shape, _NEUTRAL_SHEAR_EXPONENT)
    alpha[defined] = np.log(upper[defined] / lower[defined]) / np.log(
        upper_height_m / lower_height_m
    )
    return np.clip(alpha, 0.0, _MAX_SHEAR_EXPONENT)


def erbs_components(
    ghi_w_m2: np.ndarray, zenith_deg: np.ndarray, day_of_year: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """DNI and DHI [W/m^2] from GHI by pvlib's Erbs decomposition (sun's zenith [deg] at the
    slot midpoints, their day of year). The day of year goes in as numbers: the same
    extraterrestrial irradiance (Spencer's, by day of year), without pvlib building a Series
    per call."""
    split = pvlib.irradiance.erbs(ghi_w_m2, zenith_deg, day_of_year)
    dni = np.nan_to_num(np.asarray(split["dni"], dtype=float))
    dhi = np.nan_to_num(np.asarray(split["dhi"], dtype=float))
    return dni, dhi


class SlotSun:
    """Slots of a span and the sun at them, computed once per site and span and shared by every
    member of an ensemble: slot starts, midpoints (also as seconds since 1970), solar zenith
    [deg] and Ineichen clear-sky GHI and DNI [W/m^2] at the midpoints."""

    def __init__(
        self,
        start: pd.Timestamp,
        end: pd.Timestamp,
        slot_minutes: int,
        latitude: float,
        longitude: float,
        altitude_m: float,
    ) -> None:
        step = pd.Timedelta(minutes=slot_minutes)
        self.starts = pd.date_range(start, end, freq=step, inclusive="left", name="time")
        self.step = step
        self.mids = self.starts + step / 2
        self.location = pvlib.location.Location(latitude, longitude, "UTC", altitude_m)
        position = solar_position(self.mids, latitude, longitude, altitude_m)
        self.zenith_deg = position["zenith"].to_numpy()
        clear = self.location.get_clearsky(self.mids, model="ineichen", solar_position=position)
        self.ghi_clear = clear["ghi"].to_numpy()
        self.dni_clear = clear["dni"].to_numpy()
        self.start_s = _seconds(self.starts)
        self.mid_s = _seconds(self.mids)
        self.day_of_year = np.asarray(self.mids.day_of_year, dtype=float)

    def clear_at(self, times: pd.DatetimeIndex) -> pd.DataFrame:
        """Ineichen clear-sky ``ghi``, ``dni`` [W/m^2] at arbitrary ``times`` (UTC)."""
        return self.location.get_clearsky(times, model="ineichen")


def _interp(target_s: np.ndarray, source_s: np.ndarray, values: np.ndarray, empty: float):
    """Linear interpolation held at the ends; ``empty`` everywhere without points."""
    if source_s.size == 0:
        return np.full(target_s.shape, empty)
    return np.interp(target_s, source_s, values)


def interval_starts(ends: pd.DatetimeIndex, issued_at: pd.Timestamp) -> pd.DatetimeIndex:
    """Starts of intervals labelled at their ``ends``: each starts at the label before; the
    first is as long as the second, but never starts before the run's issue time."""
    if len(ends) == 1:
        return pd.DatetimeIndex([issued_at])
    return ends[:-1].insert(0, _first_start(ends[0], ends[1], issued_at))


def _first_start(first_end, second_end, issued_at):
    """Start of the first of intervals labelled at their ends (:func:`interval_starts`), as
    Timestamps or as ns since 1970."""
    return max(first_end - (second_end - first_end), issued_at)


def _interval_start_seconds(ends_ns: np.ndarray, issued_at: pd.Timestamp) -> np.ndarray:
    """:func:`interval_starts` of ends given as ns since 1970, in s since 1970."""
    issued_ns = pd.Timestamp(issued_at).as_unit("ns").value
    if len(ends_ns) == 1:
        return np.array([issued_ns]) / 1e9
    first_ns = _first_start(ends_ns[0], ends_ns[1], issued_ns)
    return np.concatenate([[first_ns], ends_ns[:-1]]) / 1e9


def means_to_slots(
    means_w_m2: pd.Series, starts: pd.DatetimeIndex, clear_w_m2: np.ndarray, sun: SlotSun
) -> np.ndarray:
    """Slot values [W/m^2] of an irradiance given as means over intervals from ``starts`` to
    its labels, its clear-sky value at the slot midpoints ``clear_w_m2``: the clear-sky index
    of each daylit interval (clipped to [0, 1.5]) is interpolated from interval midpoints to
    slot midpoints, times the clear sky, then scaled so that each interval keeps its mean (its
    energy). Interval boundaries fall on slot boundaries and the slots lie inside the
    intervals."""
    values = means_w_m2.to_numpy(dtype=float)
    ends_s = _seconds(pd.DatetimeIndex(means_w_m2.index))
    return _means_to_slots(values, _seconds(starts), ends_s, clear_w_m2, sun)


def _means_to_slots(
    values: np.ndarray, starts_s: np.ndarray, ends_s: np.ndarray, clear_w_m2: np.ndarray,
    sun: SlotSun,
) -> np.ndarray:  # fmt: skip
    """:func:`means_to_slots` of means [W/m^2] over intervals from ``starts_s`` to ``ends_s``
    [s since 1970]."""
    interval = np.searchsorted(ends_s, sun.start_s, side="right")
    counts = np.bincount(interval, minlength=len(ends_s)).astype(float)
    per_slot = np.maximum(counts, 1.0)
    clear_mean = np.bincount(interval, weights=clear_w_m2, minlength=len(ends_s)) / per_slot
    daylit = (clear_mean > _MIN_CLEAR_W_M2) & (counts > 0)
    index = np.clip(values[daylit] / clear_mean[daylit], 0.0, _MAX_CLEAR_SKY_INDEX)
    mids_s = (starts_s + ends_s) / 2
    slots = _interp(sun.mid_s, mids_s[daylit], index, empty=0.0) * clear_w_m2
    slot_mean = np.bincount(interval, weights=slots, minlength=len(ends_s)) / per_slot
    scale = np.divide(values, slot_mean, out=np.zeros_like(values), where=slot_mean > 0)
    return slots * scale[interval]


def instants_to_slots(
    instants_w_m2: pd.Series, clear_at_samples_w_m2: np.ndarray, clear_w_m2: np.ndarray,
    sun: SlotSun,
) -> np.ndarray:  # fmt: skip
    """Slot values of an irradiance sampled at instants: its clear-sky index at the daylit
    samples (clipped to [0, 1.5]) interpolated to the slot midpoints, times the clear sky
    there (zero at night by construction) [W/m^2]."""
    times_s = _seconds(pd.DatetimeIndex(instants_w_m2.index))
    values = instants_w_m2.to_numpy(dtype=float)
    return _instants_to_slots(values, times_s, clear_at_samples_w_m2, clear_w_m2, sun)


def _instants_to_slots(
    values: np.ndarray, times_s: np.ndarray, clear_at_samples_w_m2: np.ndarray,
    clear_w_m2: np.ndarray, sun: SlotSun,
) -> np.ndarray:  # fmt: skip
    """:func:`instants_to_slots` of samples [W/m^2] at ``times_s`` [s since 1970]."""
    daylit = clear_at_samples_w_m2 > _MIN_CLEAR_W_M2
    index = np.clip(values[daylit] / clear_at_samples_w_m2[daylit], 0.0, _MAX_CLEAR_SKY_INDEX)
    return _interp(sun.mid_s, times_s[daylit], index, empty=0.0) * clear_w_m2


def covered_span(
    output: ModelOutput, issued_at: pd.Timestamp, step: pd.Timedelta
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The slot-aligned span ``[start, end)`` (UTC) that every variable of ``output`` covers:
    instants from the first to the last sample, interval means from the first interval's
    start to the last label."""
    arrays, times = output.arrays, _ns(output.values.index)
    others = [arrays[name] for name in arrays if name not in ("ghi", "dni", "dhi")]
    at = times[~np.isnan(np.column_stack(others)).all(axis=1)]
    first, last = pd.Timestamp(at.min(), tz="UTC"), pd.Timestamp(at.max(), tz="UTC")
    if "ghi" in arrays:
        ghi = pd.DatetimeIndex(output.values.index[~np.isnan(arrays["ghi"])])
        if output.irradiance == "mean":
            first = max(first, interval_starts(ghi, issued_at)[0])
        else:
            first = max(first, ghi[0])
        last = min(last, ghi[-1])
    return first.ceil(step), last.floor(step)


Components = tuple[np.ndarray, np.ndarray] | None
"""DNI and DHI on the slots [W/m^2], or ``None`` when they come from GHI by Erbs."""


def _irradiance(
    output: ModelOutput, sun: SlotSun, issued_at: pd.Timestamp
) -> tuple[np.ndarray, Components, str]:
    """GHI on the slots [W/m^2], the model's DNI and DHI on the slots where it gives them (else
    ``None``: :func:`erbs_components` of the GHI, done for all members at once) and a note
    naming the method."""
    values, arrays = output.values, output.arrays
    if "ghi" not in arrays:
        cover = ~np.isnan(arrays["cloud_cover"])
        cloud = _interp(sun.mid_s, output.times_s[cover], arrays["cloud_cover"][cover], 0.0)
        ghi = ghi_from_cloud_cover(cloud, sun.ghi_clear)
        return ghi, None, "GHI from total cloud cover (Larson et al. 2016); DNI, DHI by Erbs"
    known = ~np.isnan(arrays["ghi"])  # the rows with radiation
    ghi_w_m2, times_ns = arrays["ghi"][known], _ns(values.index)[known]
    if output.irradiance == "mean":
        starts_s, ends_s = _interval_start_seconds(times_ns, issued_at), times_ns / 1e9
        at_s = (starts_s + ends_s) / 2  # where each mean stands
        ghi = _means_to_slots(ghi_w_m2, starts_s, ends_s, sun.ghi_clear, sun)
        method = "interval means to slots by clear-sky index (energy kept per interval)"
    else:
        at_s = times_ns / 1e9
        clear = sun.clear_at(pd.DatetimeIndex(values.index[known]))
        ghi = _instants_to_slots(ghi_w_m2, at_s, clear["ghi"].to_numpy(), sun.ghi_clear, sun)
        method = "instants to slot midpoints by clear-sky index"
    if "dni" not in arrays or "dhi" not in arrays:
        return ghi, None, f"{method}; DNI, DHI by Erbs"
    dni_w_m2 = np.where(np.isnan(arrays["dni"][known]), 0.0, arrays["dni"][known])
    if output.irradiance == "mean":
        dni = _means_to_slots(dni_w_m2, starts_s, ends_s, sun.dni_clear, sun)
    else:
        dni = _instants_to_slots(dni_w_m2, at_s, clear["dni"].to_numpy(), sun.dni_clear, sun)
    dhi_w_m2 = arrays["dhi"][known]
    lit = (ghi_w_m2 > _MIN_GHI_W_M2) & ~np.isnan(dhi_w_m2)
    fraction = np.clip(dhi_w_m2[lit] / ghi_w_m2[lit], 0.0, 1.0)
    dhi = _interp(sun.mid_s, at_s[lit], fraction, empty=1.0) * ghi
    return ghi, (dni, dhi), f"{method}; the model's DNI, DHI by diffuse fraction"


def _erbs_by_member(
    ghi_w_m2: Mapping[str, np.ndarray], sun: SlotSun
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`erbs_components` of each member's GHI on the slots [W/m^2], in one call for all
    (the same values as one call each: Erbs is elementwise)."""
    if not ghi_w_m2:
        return {}
    dni, dhi = erbs_components(np.stack(list(ghi_w_m2.values())), sun.zenith_deg,
                               sun.day_of_year)  # fmt: skip
    return {member: (dni[row], dhi[row]) for row, member in enumerate(ghi_w_m2)}


def _instant(output: ModelOutput, column: str, sun: SlotSun) -> np.ndarray:
    """An instantaneous variable linear in time at the slot midpoints."""
    values = output.arrays[column]
    known = ~np.isnan(values)
    return np.interp(sun.mid_s, output.times_s[known], values[known])


def to_slot_weather(
    output: ModelOutput,
    *,
    issued_at: pd.Timestamp,
    slot_minutes: int,
    latitude: float,
    longitude: float,
    altitude_m: float,
    source: str,
    station: tuple[float, float] | None = None,
    sun: SlotSun | None = None,
) -> Weather:
    """The weather frame (:mod:`forecasts.weather`) of one member on ``slot_minutes`` slots over
    the span the run covers (steps in the module doc). ``sun`` may be shared between members of
    one run at one site (it must cover the same span); :func:`members_to_slot_weather` does all
    members of a run at once."""
    if sun is None:
        start, end = covered_span(output, issued_at, pd.Timedelta(minutes=slot_minutes))
        sun = SlotSun(start, end, slot_minutes, latitude, longitude, altitude_m)
    return members_to_slot_weather(
        {"": output}, issued_at=issued_at, altitude_m=altitude_m, sources={"": source},
        station=station, sun=sun,
    )[""]  # fmt: skip


def members_to_slot_weather(
    outputs: Mapping[str, ModelOutput],
    *,
    issued_at: pd.Timestamp,
    altitude_m: float,
    sources: Mapping[str, str],
    station: tuple[float, float] | None,
    sun: SlotSun,
) -> dict[str, Weather]:
    """:func:`to_slot_weather` of each member of a run at one site (member -> its output, its
    source) on the slots of ``sun``, which every member covers; what the members share is done
    once for all of them (the Erbs split)."""
    irradiance = {member: _irradiance(output, sun, issued_at) for member, output in outputs.items()}
    erbs = _erbs_by_member(
        {member: ghi for member, (ghi, components, _) in irradiance.items() if components is None},
        sun,
    )
    weather = {}
    for member, output in outputs.items():
        ghi, components, note = irradiance[member]
        weather[member] = _weather(
            output, sun, ghi, erbs[member] if components is None else components, note,
            altitude_m=altitude_m, source=sources[member], station=station,
        )  # fmt: skip
    return weather


def _weather(
    output: ModelOutput,
    sun: SlotSun,
    ghi_w_m2: np.ndarray,
    components: tuple[np.ndarray, np.ndarray],
    irradiance_note: str,
    *,
    altitude_m: float,
    source: str,
    station: tuple[float, float] | None,
) -> Weather:
    """One member's weather frame on the slots of ``sun`` from its irradiance on the slots
    (GHI, DNI and DHI [W/m^2]) and its other variables (steps 5 and 6 of the module doc)."""
    dni, dhi = components
    columns = {
        "ghi": ghi_w_m2,
        "dni": dni,
        "dhi": dhi,
        "temp_air": _instant(output, "temp_air", sun),
        "wind_speed": _instant(output, "wind_speed", sun),
    }
    columns["pressure"] = (
        _instant(output, "pressure", sun)
        if "pressure" in output.arrays and not np.isnan(output.arrays["pressure"]).all()
        else np.full(len(sun.starts), pvlib.atmosphere.alt2pres(altitude_m))
    )
    wind_height_m = output.wind_height_m
    notes = [irradiance_note]
    if output.upper_wind_height_m is not None and "wind_speed_upper" in output.values:
        upper = _instant(output, "wind_speed_upper", sun)
        columns["wind_shear_exponent"] = shear_exponent(
            columns["wind_speed"], wind_height_m, upper, output.upper_wind_height_m
        )
        columns["wind_speed"] = upper
        wind_height_m = output.upper_wind_height_m
        notes.append(
            f"wind at {wind_height_m:g} m with the power-law exponent between "
            f"{output.wind_height_m:g} and {wind_height_m:g} m"
        )
    else:
        notes.append(f"wind at {wind_height_m:g} m (the farms' logarithmic profile to hub height)")
    data = pd.DataFrame(np.column_stack(list(columns.values())), index=sun.starts,
                        columns=list(columns))  # fmt: skip
    return Weather(
        data=data,
        wind_height_m=wind_height_m,
        source=source,
        station=station,
        notes=tuple(notes),
    )
