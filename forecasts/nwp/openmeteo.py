"""Weather model runs from the Open-Meteo APIs, through the ``openmeteo-requests`` client.

One class, :class:`OpenMeteo`, for three of Open-Meteo's APIs (``api``):

- ``"forecast"``, the Weather Forecast API (``/v1/forecast``): the model's newest run as the
  service has it now (live). Open-Meteo keeps one series per model that each new run
  overwrites from its initialisation time on, so the hours from the newest run's issue time
  are that run's; an older run is no longer there as issued.
- ``"ensemble"``, the Ensemble API (``/v1/ensemble``): the newest run of an ensemble model,
  every member (one :class:`~forecasts.nwp.process.ModelOutput` each; p10 and p90 then come
  from the members' supply, :mod:`forecasts.nwp.ensemble`). Live, as the forecast API.
- ``"single_runs"``, the Single Runs API (``single-runs-api.open-meteo.com/v1/forecast`` with
  ``run=YYYY-MM-DDTHH:MM``): one past run, chosen by its initialisation time, whole and as it
  was issued: the source for replay (ECMWF IFS archived from March 2024, other models from
  2025-2026, say Open-Meteo's docs; a run not archived is an error from the service).
  Open-Meteo's other archives are not used, as neither gives a run as issued: the Previous
  Runs API gives each valid time's value from a fixed 1 to 7 days before it (every valid
  time from another run, so a plan at T would see runs issued after T), the Historical
  Forecast API the first hours of successive runs stitched into one series (close to an
  analysis).

**Which run.** A model runs on a fixed cycle from 00 UTC, every ``cycle_hours``, and its run
can be fetched a publication delay after its issue time (:data:`MODELS`; Open-Meteo's docs:
typically 4-6 h for global models, 1-3 h for regional ones); the delay may be overridden.
:meth:`OpenMeteo.latest` gives the newest run so published by ``at`` and by now (a run not yet
published cannot be fetched), never one issued later. A live API reads only the run that is
newest now: asked for an older one, it says to use the Single Runs API.

**Variables** (:data:`VARIABLE_MAP`), as Open-Meteo's docs define them: ``shortwave_radiation``
(GHI), ``direct_normal_irradiance`` and ``diffuse_radiation`` [W/m^2] are means over the
preceding hour (the preceding 15 minutes in ``minutely_15`` data), hence
``ModelOutput(irradiance="mean")``; ``temperature_2m`` [C], ``wind_speed_10m`` and the
model's upper wind level [m/s], ``surface_pressure`` [hPa, turned into Pa] and
``cloud_cover`` [%] are instantaneous. Wind is requested in m/s (``wind_speed_unit=ms``:
Open-Meteo's default is km/h) and the unit every variable declares in the response is checked
against :data:`UNITS`. Times are UTC (``timezone=GMT``); values come from the grid cell
nearest the site (``cell_selection=nearest``), temperature at the site's altitude
(``elevation``). DNI, DHI, the upper wind, pressure and cloud cover are used where the model
gives them; temperature, 10 m wind and GHI (else cloud cover) are required.

**Requests.** All sites of a read go in one request. Responses are cached in a SQLite file
(``requests-cache``): a past run's for good, a live API's for ``cache_minutes``; connection
errors and HTTP 500, 502, 503 and 504 are retried with backoff (``retry-requests``), each try
waiting at most ``timeout_s``. Whatever fails (unreachable, HTTP errors, Open-Meteo's JSON
error body, a variable missing from the response) is one
:class:`~forecasts.weather.ForecastSourceError` line naming the source, the URL and why.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
import openmeteo_requests
import pandas as pd
import requests
import requests_cache
import urllib3.exceptions
from openmeteo_sdk.Unit import Unit
from openmeteo_sdk.Variable import Variable
from openmeteo_sdk.VariablesWithTime import VariablesWithTime
from openmeteo_sdk.WeatherApiResponse import WeatherApiResponse
from retry_requests import retry

from forecasts.nwp.grid import MAX_DISTANCE_KM, GridPoint, great_circle_km
from forecasts.nwp.process import ModelOutput
from forecasts.nwp.run import DETERMINISTIC, ForecastRun, site_run
from forecasts.nwp.settings import OpenMeteoSettings
from forecasts.nwp.source import ForecastSource, RunRef
from forecasts.specs import SupplySite
from forecasts.weather import ForecastSourceError

if TYPE_CHECKING:
    import niquests

__all__ = [
    "MODELS",
    "SPEC_KINDS",
    "UNITS",
    "VARIABLE_MAP",
    "OpenMeteo",
    "OpenMeteoApi",
    "OpenMeteoModel",
    "models_of",
    "newest_issue_time",
    "parse_response",
]

log = logging.getLogger(__name__)

OpenMeteoApi = Literal["forecast", "ensemble", "single_runs"]

SPEC_KINDS: dict[str, OpenMeteoApi] = {
    "open-meteo": "forecast",
    "open-meteo-ensemble": "ensemble",
    "open-meteo-runs": "single_runs",
}
"""The first word of a source spec (``open-meteo-runs:MODEL``) -> the API it reads."""


@dataclass(frozen=True)
class OpenMeteoModel:
    """A weather model as Open-Meteo serves it: its name in the API (``models=``), whether it is
    an ensemble, the hours between its runs (a cycle from 00 UTC), the usual delay from a
    run's issue time to when Open-Meteo serves it, the height of the upper wind level it gives
    [m] (``None``: 10 m only) and whether it has native 15-minute output (``minutely_15``)."""

    name: str
    ensemble: bool
    cycle_hours: int
    available_after: pd.Timedelta
    upper_wind_height_m: float | None
    minutely_15: bool = False


def _model(
    name: str,
    ensemble: bool,
    cycle_hours: int,
    delay_hours: float,
    upper_wind_height_m: float | None,
    minutely_15: bool = False,
) -> OpenMeteoModel:
    delay = pd.Timedelta(hours=delay_hours)
    return OpenMeteoModel(name, ensemble, cycle_hours, delay, upper_wind_height_m, minutely_15)


MODELS: dict[str, OpenMeteoModel] = {
    model.name: model
    for model in (
        _model("ncep_gfs_global", False, 6, 4, 80),
        _model("ncep_hrrr_conus", False, 1, 2, 80),
        _model("ncep_nam_conus", False, 6, 3, 80),
        _model("ecmwf_ifs", False, 6, 6, 100),
        _model("ecmwf_ifs025", False, 6, 8, 100),
        _model("ecmwf_aifs025_single", False, 6, 8, 100),
        _model("dwd_icon_global", False, 6, 4, 120),
        _model("dwd_icon_eu", False, 3, 3, 120),
        _model("dwd_icon_d2", False, 3, 2, 120, minutely_15=True),
        _model("ncep_gefs025", True, 6, 6, None),
        _model("ncep_gefs05", True, 6, 6, 100),
        _model("ecmwf_ifs025_ensemble", True, 6, 8, 100),
        _model("ecmwf_aifs025_ensemble", True, 6, 8, 100),
        _model("dwd_icon_global_eps", True, 12, 5, None),
        _model("dwd_icon_eu_eps", True, 6, 4, 80),
        _model("dwd_icon_d2_eps", True, 3, 2, 80),
    )
}
"""The models greensched reads from Open-Meteo, by API name (Open-Meteo's docs: run cycles,
wind levels and 15-minute output per model; publication delays approximate, rounded up).
Seamless models and ``best_match`` are left out: they stitch several models' runs, so a run
has no one issue time."""

VARIABLE_MAP = {
    "shortwave_radiation": "ghi",
    "direct_normal_irradiance": "dni",
    "diffuse_radiation": "dhi",
    "temperature_2m": "temp_air",
    "wind_speed_10m": "wind_speed",
    "surface_pressure": "pressure",
    "cloud_cover": "cloud_cover",
}
"""Open-Meteo variable names -> the weather frame's names; the model's upper wind level
(``wind_speed_80m``, ``_100m`` or ``_120m``) becomes ``wind_speed_upper``."""
_UPPER_WIND = "wind_speed_upper"
_W_M2 = Unit.watt_per_square_metre
UNITS: dict[str, int] = {
    "ghi": _W_M2,
    "dni": _W_M2,
    "dhi": _W_M2,
    "temp_air": Unit.celsius,
    "wind_speed": Unit.metre_per_second,
    _UPPER_WIND: Unit.metre_per_second,
    "pressure": Unit.hectopascal,
    "cloud_cover": Unit.percentage,
}
"""The unit (``openmeteo_sdk.Unit``) each variable must declare in a response."""
_UNIT_NAMES = {value: name for name, value in vars(Unit).items() if not name.startswith("_")}
_RADIATION = ("ghi", "dni", "dhi")
_REQUIRED = ("temp_air", "wind_speed")
_PA_PER_HPA = 100.0
_WIND_HEIGHT_M = 10.0
_LEVEL = re.compile(r"^(?P<base>[a-z_]+?)_(?P<height>\d+)m$")
_TIME = "%Y-%m-%dT%H:%M"
_RETRIED_STATUS = (500, 502, 503, 504)
_CACHE_NAME = "greensched-open-meteo"


def models_of(api: OpenMeteoApi) -> dict[str, OpenMeteoModel]:
    """The models of :data:`MODELS` that ``api`` serves (the ensemble API its ensembles, the
    two others the deterministic models)."""
    return {name: m for name, m in MODELS.items() if m.ensemble == (api == "ensemble")}


def newest_issue_time(
    at: pd.Timestamp, cycle_hours: int, available_after: pd.Timedelta
) -> pd.Timestamp:
    """Issue time (UTC) of the newest run of a model that runs every ``cycle_hours`` from
    00 UTC and is published ``available_after`` its issue time, published by ``at``."""
    return (at - available_after).floor(pd.Timedelta(hours=cycle_hours))


def _variables(model: OpenMeteoModel) -> dict[str, str]:
    """The Open-Meteo variables requested for ``model`` -> the weather frame's names."""
    if model.upper_wind_height_m is None:
        return dict(VARIABLE_MAP)
    return VARIABLE_MAP | {f"wind_speed_{model.upper_wind_height_m:g}m": _UPPER_WIND}


def _sdk_key(api_name: str) -> tuple[int, int]:
    """``(openmeteo_sdk.Variable, altitude [m])`` a response gives an Open-Meteo variable as:
    ``temperature_2m`` -> ``(Variable.temperature, 2)``, ``cloud_cover`` -> ``(..., 0)``."""
    level = _LEVEL.match(api_name)
    if level is None:
        return getattr(Variable, api_name), 0
    return getattr(Variable, level["base"]), int(level["height"])


def _times(block: VariablesWithTime) -> pd.DatetimeIndex:
    """Valid times (UTC) of a response's hourly or 15-minute block."""
    return pd.date_range(
        pd.Timestamp(block.Time(), unit="s", tz="UTC"),
        pd.Timestamp(block.TimeEnd(), unit="s", tz="UTC"),
        freq=pd.Timedelta(seconds=block.Interval()),
        inclusive="left",
    )


def parse_response(
    response: WeatherApiResponse,
    variables: Mapping[str, str],
    issued_at: pd.Timestamp,
    *,
    minutely_15: bool,
    ensemble: bool,
    where: str,
) -> dict[str, pd.DataFrame]:
    """Each member's values in one location's response (member name -> frame indexed by valid
    time, UTC), with the weather frame's names (``variables``: Open-Meteo name -> ours) and
    units (pressure in Pa), from the issue time on. Radiation labelled at the issue time (a
    mean over the hour before the run) is dropped; so are optional variables without a value.

    Members are named ``m00``, ``m01``, ... (Open-Meteo's member 0 is the control) in an
    ensemble, :data:`~forecasts.nwp.run.DETERMINISTIC` otherwise. Raises
    :class:`ForecastSourceError` starting with ``where`` when a variable comes in another unit
    than :data:`UNITS` or a required one is missing.
    """
    block = response.Minutely15() if minutely_15 else response.Hourly()
    step = "minutely_15" if minutely_15 else "hourly"
    if block is None:
        raise ForecastSourceError(f"{where}: the response has no {step} data")
    times = _times(block)
    by_key = {_sdk_key(name): name for name in variables}
    columns: dict[int, dict[str, np.ndarray]] = {}
    for i in range(block.VariablesLength()):
        variable = block.Variables(i)
        if variable is None:
            continue
        api_name = by_key.get((variable.Variable(), variable.Altitude()))
        if api_name is None:
            continue
        ours = variables[api_name]
        if variable.Unit() != UNITS[ours]:
            raise ForecastSourceError(
                f"{where}: {api_name} comes in {_UNIT_NAMES.get(variable.Unit(), '?')}, not "
                f"{_UNIT_NAMES[UNITS[ours]]}"
            )
        values = variable.ValuesAsNumpy().astype(float)
        if len(values) != len(times):
            raise ForecastSourceError(
                f"{where}: {api_name} has {len(values)} values for {len(times)} {step} times"
            )
        columns.setdefault(variable.EnsembleMember(), {})[ours] = values
    if not columns:
        raise ForecastSourceError(f"{where}: the response has none of {', '.join(variables)}")
    names = {ours: api_name for api_name, ours in variables.items()}
    out = {}
    for member in sorted(columns):
        frame = pd.DataFrame(columns[member], index=times).loc[times >= issued_at]
        frame.loc[frame.index == issued_at, [c for c in _RADIATION if c in frame]] = np.nan
        if "pressure" in frame:
            frame["pressure"] *= _PA_PER_HPA
        frame = frame.dropna(axis="columns", how="all")
        required = [*_REQUIRED, "ghi" if "cloud_cover" not in frame else "cloud_cover"]
        missing = [names[c] for c in required if c not in frame]
        if missing:
            raise ForecastSourceError(
                f"{where}: the response has no {', '.join(missing)}"
                f"{f' for member {member}' if ensemble else ''} from {issued_at:%Y-%m-%d %H:%M}Z"
            )
        out[f"m{member:02d}" if ensemble else DETERMINISTIC] = frame
    return out


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _reason(error: BaseException, timeout_s: float, retries: int) -> str:
    """Why a request failed, in a few words, from the client's error and its cause."""
    cause = error.__cause__ or error
    body = cause.args[0] if cause.args else None
    if isinstance(body, dict):  # Open-Meteo's JSON error body: {"error": true, "reason": ...}
        return f"refused: {body.get('reason', body)}"
    inner = getattr(body, "reason", None)  # urllib3's MaxRetryError after the retries
    if isinstance(inner, urllib3.exceptions.NewConnectionError):  # refused, no such host
        text = re.sub(r"^<[^>]*>: ", "", str(inner))  # without urllib3's connection object
        return f"unreachable: {text} (after {retries} retries)"
    if isinstance(cause, requests.Timeout) or isinstance(inner, urllib3.exceptions.TimeoutError):
        return f"no answer within {timeout_s:g} s (after {retries} retries)"
    if isinstance(cause, requests.exceptions.RetryError):
        return f"{inner} (after {retries} retries)"
    if isinstance(cause, requests.ConnectionError):
        return f"unreachable: {inner or cause} (after {retries} retries)"
    if isinstance(cause, requests.HTTPError) and cause.response is not None:
        return f"HTTP {cause.response.status_code} {cause.response.reason}"
    return str(cause)


class OpenMeteo(ForecastSource):
    """Runs of ``model`` from Open-Meteo's ``api`` (module doc), reached as ``settings`` say.

    ``available_after`` overrides the model's publication delay; ``max_distance_km`` bounds a
    site's distance from its grid cell; ``clock`` gives the time now (UTC), which bounds the
    runs published and, for the live APIs, the one run they serve.
    """

    def __init__(
        self,
        api: OpenMeteoApi,
        model: OpenMeteoModel,
        settings: OpenMeteoSettings,
        *,
        available_after: pd.Timedelta | None = None,
        max_distance_km: float = MAX_DISTANCE_KM,
        clock: Callable[[], pd.Timestamp] = _utc_now,
    ) -> None:
        if model.ensemble != (api == "ensemble"):
            raise ValueError(f"the {api} API does not serve {model.name}")
        self.api = api
        self.model = model
        self.settings = settings
        self.available_after = model.available_after if available_after is None else available_after
        self.max_distance_km = max_distance_km
        self.clock = clock
        kind = next(kind for kind, of in SPEC_KINDS.items() if of == api)
        self.label = f"{kind}:{model.name}"
        self.url = {
            "forecast": settings.forecast_url,
            "ensemble": settings.ensemble_url,
            "single_runs": settings.single_runs_url,
        }[api]

    @cached_property
    def _client(self) -> openmeteo_requests.Client:
        """The client on a cached session that retries (opened at the first request)."""
        expire_after = (
            requests_cache.NEVER_EXPIRE
            if self.api == "single_runs"
            else dt.timedelta(minutes=self.settings.cache_minutes)
        )
        cache_dir = self.settings.cache_dir
        session = requests_cache.CachedSession(
            str(Path(cache_dir) / _CACHE_NAME) if cache_dir else _CACHE_NAME,
            backend="sqlite",
            use_cache_dir=cache_dir is None,
            expire_after=expire_after,
        )
        retry(
            session,
            retries=self.settings.retries,
            backoff_factor=self.settings.backoff_s,
            status_to_retry=_RETRIED_STATUS,
        )
        # the client calls session.get(url, params=, verify=, timeout=) and reads status_code,
        # content, json() and raise_for_status(): a requests session serves for its niquests one
        return openmeteo_requests.Client(session=cast("niquests.Session", session))

    def refresh(self) -> None:
        """Nothing to scan: which runs exist follows from the model's cycle and the clock."""

    def latest(self, at: pd.Timestamp) -> RunRef:
        issued = newest_issue_time(
            min(at, self.clock()), self.model.cycle_hours, self.available_after
        )
        return RunRef(self.model.name, issued, issued + self.available_after)

    def _where(self) -> str:
        return f"{self.label}: {self.url}"

    def _check_served(self, ref: RunRef) -> None:
        """A live API serves only the run that is newest now."""
        newest = self.latest(self.clock())
        if self.api != "single_runs" and newest.issued_at != ref.issued_at:
            raise ForecastSourceError(
                f"{self._where()}: the {self.api} API serves only the newest run (issued "
                f"{newest.issued_at:%Y-%m-%d %H:%M}Z), not the one issued "
                f"{ref.issued_at:%Y-%m-%d %H:%M}Z; past runs as issued: "
                f"'open-meteo-runs:{self.model.name}'"
            )

    def _params(self, ref: RunRef, sites: Mapping[str, SupplySite]) -> dict[str, str]:
        """The request for run ``ref`` at ``sites``: from its issue time over
        ``horizon_hours``."""
        step = "minutely_15" if self.model.minutely_15 else "hourly"
        window = "minutely_15" if self.model.minutely_15 else "hour"
        end = ref.issued_at + pd.Timedelta(hours=self.settings.horizon_hours)
        params = {
            "latitude": ",".join(f"{site.latitude:.4f}" for site in sites.values()),
            "longitude": ",".join(f"{site.longitude:.4f}" for site in sites.values()),
            "elevation": ",".join(f"{site.altitude_m:.0f}" for site in sites.values()),
            step: ",".join(_variables(self.model)),
            "models": self.model.name,
            f"start_{window}": f"{ref.issued_at:{_TIME}}",
            f"end_{window}": f"{end:{_TIME}}",
            "wind_speed_unit": "ms",
            "timezone": "GMT",
            "cell_selection": "nearest",
        }
        if self.api == "single_runs":
            params["run"] = f"{ref.issued_at:{_TIME}}"
        return params

    def _fetch(self, params: dict[str, str]) -> list[WeatherApiResponse]:
        try:
            return self._client.weather_api(self.url, params, timeout=self.settings.timeout_s)
        except openmeteo_requests.OpenMeteoRequestsError as error:
            reason = _reason(error, self.settings.timeout_s, self.settings.retries)
            raise ForecastSourceError(" ".join(f"{self._where()}: {reason}".split())) from None

    def _grid_point(self, response: WeatherApiResponse, site: SupplySite) -> GridPoint:
        latitude, longitude = float(response.Latitude()), float(response.Longitude())
        distance = float(great_circle_km(site.latitude, site.longitude, latitude, longitude))
        if distance > self.max_distance_km:
            raise ForecastSourceError(
                f"{self._where()}: the site {site.name!r} is {distance:.0f} km from the "
                f"{self.model.name} grid cell served (at most {self.max_distance_km:g} km)"
            )
        return GridPoint(latitude, longitude, distance, "nearest")

    def read(
        self, ref: RunRef, sites: Mapping[str, SupplySite], slot_minutes: int
    ) -> dict[str, ForecastRun]:
        self._check_served(ref)
        responses = self._fetch(self._params(ref, sites))
        if len(responses) != len(sites):
            raise ForecastSourceError(
                f"{self._where()}: {len(responses)} location(s) answered for {len(sites)} sites"
            )
        variables = _variables(self.model)
        runs = {}
        for (name, site), response in zip(sites.items(), responses, strict=True):
            members = parse_response(
                response,
                variables,
                ref.issued_at,
                minutely_15=self.model.minutely_15,
                ensemble=self.model.ensemble,
                where=f"{self._where()} (site {name!r})",
            )
            upper_m = self.model.upper_wind_height_m
            outputs = {
                member: ModelOutput(frame, "mean", _WIND_HEIGHT_M, upper_m)
                for member, frame in members.items()
            }
            runs[name] = site_run(
                outputs,
                model=self.model.name,
                issued_at=ref.issued_at,
                source=self.label,
                site=site,
                slot_minutes=slot_minutes,
                grid_point=self._grid_point(response, site),
            )
        log.info(
            "read %s run issued %s from %s for %s", self.model.name,
            ref.issued_at.isoformat(), self.url, ", ".join(sites),
        )  # fmt: skip
        return runs
