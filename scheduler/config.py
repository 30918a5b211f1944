"""The greensched configuration: one YAML file, loaded and validated in one place.

``load_config(path)`` returns a frozen :class:`Config` or raises :class:`ConfigError` whose
message names the file, the field path and what is allowed. Unknown keys are errors.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forecasts.clock import MAX_OFFSET_MINUTES
from forecasts.error import LeadLevel, check_lead_levels
from forecasts.nwp.settings import NwpSettings
from forecasts.specs import SupplySite
from scheduler.contracts import UserError, check_slot_minutes
from scheduler.storage import StorageUnit

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Config",
    "ConfigError",
    "ForecastSettings",
    "JobClass",
    "LeadLevelSettings",
    "MeasurementSettings",
    "Site",
    "SolverSettings",
    "Workload",
    "format_validation_errors",
    "load_config",
    "parse_config",
]

PolicyName = Literal["fifo", "greedy", "optimizer", "oracle"]


def _default_config_path() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "configs" / "default.yaml", here / "_configs" / "default.yaml"):
        if candidate.exists():
            return candidate
    return here.parent / "configs" / "default.yaml"


DEFAULT_CONFIG_PATH = _default_config_path()


class ConfigError(UserError):
    """A configuration file that cannot be used; the message names file, field and rule."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Tariff = float | list[float] | dict[Literal["weekday", "weekend"], float | list[float]]
"""A per-MWh value of grid energy: constant, 24 hourly values in local time, or one of those per
day type (Monday to Friday, Saturday and Sunday; both required)."""


def check_tariff(value: Tariff) -> Tariff:
    """``value`` as given; raises ``ValueError`` for a profile of other than 24 hours, a day
    type missing, or a value below 0 or not finite."""
    if isinstance(value, dict) and set(value) != {"weekday", "weekend"}:
        raise ValueError("a profile by day type needs both 'weekday' and 'weekend'")
    for day_type, profile in value.items() if isinstance(value, dict) else [("", value)]:
        values = profile if isinstance(profile, list) else [profile]
        where = f"{day_type}: " if day_type else ""
        if isinstance(profile, list) and len(profile) != 24:
            raise ValueError(f"{where}an hourly profile needs 24 values, got {len(profile)}")
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ValueError(f"{where}values must be finite and >= 0")
    return value


class GreenPurchase(_Strict):
    """A direct green-power purchase (a PPA): green energy delivered at the site's connection,
    as a profile or a daily volume (delivered evenly), at a price. Take or pay: every contracted
    MWh is paid whether the site uses it or not; what the load and storage do not take is
    spilled like surplus wind. It counts as green in every metric and in green tokens."""

    profile_mw: Tariff | None = Field(
        default=None,
        description="power delivered [MW]: a constant, 24 hourly values in local time, or "
        "{weekday: ..., weekend: ...} of either",
    )
    mwh_per_day: float | None = Field(
        default=None, ge=0, description="or a volume per day, delivered evenly [MWh]"
    )
    price_per_mwh: float = Field(ge=0, description="contract price [currency/MWh]")

    @field_validator("profile_mw")
    @classmethod
    def _profile(cls, value: Tariff | None) -> Tariff | None:
        return None if value is None else check_tariff(value)

    @model_validator(mode="after")
    def _one_shape(self) -> GreenPurchase:
        if (self.profile_mw is None) == (self.mwh_per_day is None):
            raise ValueError("give exactly one of profile_mw and mwh_per_day")
        return self

    @property
    def delivered_mw(self) -> Tariff:
        """The power delivered, as a profile [MW]."""
        return self.profile_mw if self.profile_mw is not None else (self.mwh_per_day or 0.0) / 24


class Site(SupplySite):
    """A GPU site: its renewable plants (from :class:`SupplySite`) plus load and grid terms."""

    gpus: int = Field(gt=0, le=10_000_000, description="GPUs the scheduler may use [-]")
    kw_per_gpu: float = Field(gt=0.05, le=5.0, description="server power per busy GPU [kW]")
    pue: float = Field(ge=1.0, le=3.0, description="power usage effectiveness [-]")
    base_load_mw: float = Field(ge=0, description="load drawn whatever runs (idle, cooling) [MW]")
    grid_import_limit_mw: float = Field(gt=0, description="most the site may draw from grid [MW]")
    carbon_kg_per_mwh: Tariff = Field(
        description="grid carbon intensity [kg CO2/MWh]: a constant, 24 hourly values in the "
        "site's local time, or {weekday: ..., weekend: ...} of either"
    )
    price_per_mwh: Tariff = Field(
        default=0.0,
        description="grid energy price [currency/MWh], a time-of-use tariff: a constant, 24 "
        "hourly values in local time, or {weekday: ..., weekend: ...} of either",
    )
    latency_ms: dict[str, float] = Field(
        default_factory=dict, description="round-trip latency to user regions [ms]"
    )
    ramp_up_mw_per_min: float | None = Field(
        default=None,
        gt=0,
        description="fastest rise of the site's load the grid accepts [MW/min]; null = no limit",
    )
    ramp_down_mw_per_min: float | None = Field(
        default=None,
        gt=0,
        description="fastest fall of the site's load the grid accepts [MW/min]; null = no limit",
    )
    storage: dict[str, StorageUnit] = Field(
        default_factory=dict,
        description="storage units (batteries) by name, PyPSA's StorageUnit attributes "
        "(scheduler/storage.py)",
    )
    green_purchase: GreenPurchase | None = Field(
        default=None, description="a direct green-power purchase (PPA) delivered at the site"
    )

    @field_validator("carbon_kg_per_mwh", "price_per_mwh")
    @classmethod
    def _profile(cls, value: Tariff) -> Tariff:
        return check_tariff(value)

    @model_validator(mode="after")
    def _grid_can_carry_base_load(self) -> Site:
        if self.base_load_mw >= self.grid_import_limit_mw:
            raise ValueError(
                f"grid_import_limit_mw ({self.grid_import_limit_mw}) must exceed base_load_mw "
                f"({self.base_load_mw}), or the site could not run at night without wind"
            )
        return self

    @property
    def mw_per_gpu(self) -> float:
        """Site power per busy GPU, PUE included [MW]."""
        return self.kw_per_gpu * self.pue / 1000.0

    @property
    def full_load_mw(self) -> float:
        """Site load with every GPU busy [MW]."""
        return self.base_load_mw + self.gpus * self.mw_per_gpu


class JobClass(_Strict):
    """A class of inference jobs from which a workload is drawn with a seed.

    Ranges are ``[low, high]`` and drawn uniformly per job; hours are relative to the start of
    the operating day.
    """

    jobs: int = Field(ge=0, le=1_000_000, description="jobs of this class per day")
    gpu_hours: tuple[float, float] = Field(description="work per job [GPU-h]")
    max_gpus: tuple[int, int] = Field(description="most GPUs a job may use at once")
    release_hour: tuple[float, float] = Field(
        default=(0.0, 0.0), description="release, hours after the day starts [h]"
    )
    window_hours: tuple[float, float] = Field(description="deadline minus release [h]")
    sites: list[str] = Field(default_factory=list, description="allowed sites; empty = any")
    preemptible: bool = Field(default=True, description="may pause and resume between slots")
    tokens_per_gpu_hour: float = Field(gt=0, description="tokens produced per GPU-hour")

    @field_validator("gpu_hours", "max_gpus", "release_hour", "window_hours")
    @classmethod
    def _ordered_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not (0 <= low <= high):
            raise ValueError(f"range [{low}, {high}] must satisfy 0 <= low <= high")
        return value

    @model_validator(mode="after")
    def _fits_a_day(self) -> JobClass:
        if self.release_hour[1] + self.window_hours[0] > 24 + 1e-9:
            raise ValueError(
                "latest release_hour plus shortest window_hours reaches past the 24 h day"
            )
        if self.window_hours[0] <= 0:
            raise ValueError("window_hours must be > 0")
        if self.max_gpus[0] < 1:
            raise ValueError("max_gpus must be >= 1")
        return self


class Workload(_Strict):
    """The default daily workload: job classes drawn with a seed."""

    user_region: str = Field(
        default="singapore", description="region whose latency ranks sites for the fifo baseline"
    )
    classes: dict[str, JobClass] = Field(default_factory=dict)


class LeadLevelSettings(_Strict):
    """Forecast error at leads up to ``lead_hours`` (one row of ``forecast.intraday``)."""

    lead_hours: float = Field(gt=0, le=72, description="longest lead this level covers [h]")
    wind_nrmse: float = Field(ge=0, le=1, description="wind RMSE / capacity, all hours [-]")
    pv_nrmse: float = Field(ge=0, le=1, description="PV RMSE / capacity, daylit hours [-]")


_DEFAULT_INTRADAY = (
    LeadLevelSettings(lead_hours=1, wind_nrmse=0.05, pv_nrmse=0.04),
    LeadLevelSettings(lead_hours=3, wind_nrmse=0.08, pv_nrmse=0.055),
    LeadLevelSettings(lead_hours=6, wind_nrmse=0.10, pv_nrmse=0.065),
    LeadLevelSettings(lead_hours=12, wind_nrmse=0.13, pv_nrmse=0.075),
)


class ForecastSettings(_Strict):
    """How weather becomes a supply forecast."""

    slot_minutes: int = Field(default=15, description="slot length [min]; a divisor of 60")
    wind_nrmse: float = Field(
        default=0.15, ge=0, le=1, description="day-ahead wind error, std / capacity [-]"
    )
    pv_nrmse: float = Field(
        default=0.08, ge=0, le=1, description="day-ahead PV RMSE over daylit hours / capacity [-]"
    )
    error_correlation_hours: float = Field(
        default=6.0, gt=0, le=72, description="e-folding time of forecast errors [h]"
    )
    intraday: tuple[LeadLevelSettings, ...] = Field(
        default=_DEFAULT_INTRADAY,
        description="errors of forecasts issued at shorter leads, by increasing lead; leads "
        "beyond the last take the day-ahead wind_nrmse / pv_nrmse",
    )
    max_gap_hours: float = Field(
        default=3.0, ge=0, le=48, description="longest NaN run in a weather file we interpolate [h]"
    )
    far_station_km: float = Field(
        default=100.0, gt=0, description="warn when a weather file's station is farther [km]"
    )
    weather_time_shift: Literal["auto"] | float = Field(
        default="auto",
        description="move a weather file's irradiance back onto the sun's clock: 'auto' by the "
        "offset measured against the clear sky when it is 15 min or more, a number of minutes, "
        "or 0 to keep the file's clock [min]",
    )
    nwp: NwpSettings = Field(
        default_factory=NwpSettings,
        description="weather model runs as forecasts: the source of each site, how runs are read",
    )
    dni_rule: Literal["file", "ghi_dhi"] = Field(
        default="file",
        description="irradiance components that do not close: 'file' keeps the file's DNI and "
        "DHI (as a direct pvlib run), 'ghi_dhi' rebuilds DNI = (GHI - DHI) / cos Z",
    )

    @field_validator("weather_time_shift")
    @classmethod
    def _shift_within_search(cls, value: str | float) -> str | float:
        if (isinstance(value, str) and value != "auto") or (
            not isinstance(value, str) and abs(value) > MAX_OFFSET_MINUTES
        ):
            raise ValueError(f"must be 'auto' or within +-{MAX_OFFSET_MINUTES} minutes")
        return value

    @field_validator("slot_minutes")
    @classmethod
    def _divides_day(cls, value: int) -> int:
        return check_slot_minutes(value)

    @property
    def lead_levels(self) -> tuple[LeadLevel, ...]:
        """``intraday`` as the error model's levels."""
        return tuple(LeadLevel(**level.model_dump()) for level in self.intraday)

    @model_validator(mode="after")
    def _errors_grow_with_lead(self) -> ForecastSettings:
        try:
            check_lead_levels(self.lead_levels, self.wind_nrmse, self.pv_nrmse)
        except ValueError as error:
            raise ValueError(f"intraday: {error}") from None
        return self


class SolverSettings(_Strict):
    """Optimizer settings (data, never hard-coded)."""

    policy: PolicyName = Field(default="optimizer", description="policy whose plan is the plan")
    compare: list[PolicyName] = Field(
        default=["fifo", "greedy"], description="policies planned beside it for comparison"
    )
    time_limit_s: float = Field(default=30.0, gt=0, le=86_400)
    replan_every_minutes: int = Field(
        default=60,
        ge=1,
        le=1440,
        description="the control loop re-plans the work left at least this often [min]",
    )
    look_ahead_days: int = Field(
        default=1,
        ge=0,
        le=1,
        description="the control loop's horizon runs to the end of this many operating days "
        "after the current one: a cap inside it is planned at once (0: the current day only)",
    )
    relative_gap: float = Field(default=0.01, ge=0, le=1)
    max_site_moves: int | None = Field(
        default=None, ge=0, description="most times a job may change site; null = no limit"
    )
    limits_on: Literal["forecast", "p10"] = Field(
        default="p10",
        description="green supply the grid import limit and caps are planned against: the "
        "forecast's p10 (a margin against forecast error; costs still use the forecast), or "
        "the forecast itself. Replaying 60 synthetic days (2026-03/04) p10 halved the work cut "
        "at settlement (11,127 -> 5,274 GPU-h) for the same green share",
    )
    objective: Literal["carbon", "cost", "weighted"] = Field(
        default="carbon",
        description="what the policies minimise on grid energy: its CO2 [kg], its cost at each "
        "site's price_per_mwh [currency], or CO2 + cost_weight x cost",
    )
    cost_weight: float = Field(
        default=1.0,
        ge=0,
        description="with objective 'weighted': kg CO2 one unit of currency is worth [kg/currency]",
    )

    def objective_weights(self) -> tuple[float, float]:
        """``(carbon, cost)`` weights of a grid MWh's CO2 [kg] and cost [currency]."""
        return {"carbon": (1.0, 0.0), "cost": (0.0, 1.0)}.get(
            self.objective, (1.0, self.cost_weight)
        )


class MeasurementSettings(_Strict):
    """What the control plane settles a running day's slots on."""

    settle_on: Literal["weather", "measurements"] = Field(
        default="weather",
        description="'weather': the weather source is what the sites see (a simulated day, the "
        "offline default); 'measurements': what each site measured and reported (over gRPC, "
        "the file feed or `greensched measure`), a slot without a measurement in time settled "
        "on the newest forecast for it and flagged 'estimated'",
    )
    grace_minutes: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="a slot's measurement counts when it arrives by the slot's end plus this [min]",
    )
    file: str | None = Field(
        default=None,
        description="a measurements CSV or Parquet file (time, site, pv_mw, wind_mw, optional "
        "load_mw) that a SCADA export appends; `serve` reads its new rows every slot",
    )


class Config(_Strict):
    """Everything greensched needs to forecast, plan and run a day."""

    seed: int = Field(default=1, ge=0, description="seed for synthetic weather and workloads")
    forecast: ForecastSettings = Field(default_factory=ForecastSettings)
    solver: SolverSettings = Field(default_factory=SolverSettings)
    sites: dict[str, Site]
    workload: Workload = Field(default_factory=Workload)
    measurements: MeasurementSettings = Field(default_factory=MeasurementSettings)

    @model_validator(mode="before")
    @classmethod
    def _name_sites(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("sites"), dict):
            sites = {}
            for key, body in data["sites"].items():
                if isinstance(body, dict):
                    if "name" in body and body["name"] != key:
                        raise ValueError(
                            f"sites.{key}.name: {body['name']!r} differs from its key {key!r}; "
                            "omit it, the key is the name"
                        )
                    body = {**body, "name": key}
                sites[key] = body
            data = {**data, "sites": sites}
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if not self.sites:
            raise ValueError("sites: at least one site is needed")
        zones = {s.timezone for s in self.sites.values()}
        if len(zones) > 1:
            raise ValueError(
                f"sites use different time zones ({', '.join(sorted(zones))}); the operating day "
                "is defined in one zone, so all sites must share it"
            )
        known = sorted(self.sites)
        for site in self.forecast.nwp.sources:
            if site not in self.sites:
                raise ValueError(
                    f"forecast.nwp.sources: unknown site {site!r}; known sites: {', '.join(known)}"
                )
        for name, job_class in self.workload.classes.items():
            for site in job_class.sites:
                if site not in self.sites:
                    raise ValueError(
                        f"workload.classes.{name}.sites: unknown site {site!r}; "
                        f"known sites: {', '.join(known)}"
                    )
        return self

    @property
    def timezone(self) -> str:
        """The zone in which operating days are counted (shared by all sites)."""
        return next(iter(self.sites.values())).timezone

    def sha256(self) -> str:
        """A hash of every setting (hex), recorded in plan directories."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    def updated(self, changes: dict[str, Any], source: str = "<config change>") -> Config:
        """This config with ``changes`` merged in (nested by section), validated again."""
        return parse_config(_merge(self.model_dump(), changes), source)

    def with_solver(self, **changes: Any) -> Config:
        """This config with some solver settings changed (e.g. ``time_limit_s``), validated."""
        return self.updated({"solver": changes})

    def with_jobs_scaled(self, factor: float, min_window_hours: float = 0.0) -> Config:
        """This config with the jobs per class times ``factor`` (rounded), for the classes
        whose shortest window is at least ``min_window_hours``; validated."""
        classes = {
            name: {"jobs": round(cls.jobs * factor)}
            for name, cls in self.workload.classes.items()
            if cls.window_hours[0] >= min_window_hours
        }
        return self.updated({"workload": {"classes": classes}})

    def with_prices_scaled(self, factor: float) -> Config:
        """This config with every site's grid price (each value of its tariff) times
        ``factor``; validated."""

        def scaled(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: scaled(v) for k, v in value.items()}
            if isinstance(value, list):
                return [v * factor for v in value]
            return value * factor

        sites = {n: {"price_per_mwh": scaled(s.price_per_mwh)} for n, s in self.sites.items()}
        return self.updated({"sites": sites})

    def mean_load_mw(self) -> dict[str, float]:
        """Each site's mean load under the workload [MW], estimated from the config alone: the
        day's GPU-hours (jobs x mean GPU-hours per class) shared among the sites by their GPUs,
        over 24 h, at each site's MW per GPU, plus its base load. Jobs restricted to some sites
        are shared like the others (a study's scale, not a forecast)."""
        gpu_h = sum(
            c.jobs * (c.gpu_hours[0] + c.gpu_hours[1]) / 2 for c in self.workload.classes.values()
        )
        gpus = sum(site.gpus for site in self.sites.values())
        return {
            name: site.base_load_mw + gpu_h * site.gpus / gpus * site.mw_per_gpu / 24.0
            for name, site in self.sites.items()
        }

    def with_storage_hours(self, hours: float, efficiency: float = 0.95) -> Config:
        """This config with one battery per site (replacing any) of ``p_nom`` its mean load
        (:meth:`mean_load_mw`) and ``max_hours`` = ``hours``, ``efficiency`` each way, empty at
        the start; ``hours`` 0: no storage. Validated."""
        sites = self.model_dump()["sites"]
        for name, mean_mw in self.mean_load_mw().items():
            battery = {"p_nom": mean_mw, "max_hours": hours, "efficiency_store": efficiency,
                       "efficiency_dispatch": efficiency}  # fmt: skip
            sites[name]["storage"] = {"battery": battery} if hours > 0 else {}
        return parse_config({**self.model_dump(), "sites": sites}, "<storage hours>")


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def format_validation_errors(source: str, error: ValidationError) -> str:
    """One line per pydantic error: the field path and what is wrong, under ``source``."""
    lines = []
    for item in error.errors(include_url=False):
        path = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (not a field of this section)"
        elif item["type"] == "missing":
            message = "required field is missing"
        elif "input" in item and item["type"] not in ("model_type",):
            message = (
                f"{item['input']!r}: {message}" if not isinstance(item["input"], dict) else message
            )
        lines.append(f"{path}: {message}")
    return f"{source}: invalid configuration\n  " + "\n  ".join(lines)


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate an already-parsed mapping; ``source`` names it in errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_errors(source, error)) from None


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a YAML config; ``None`` means the embedded default."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(_files_beside(data, path.parent), str(path))


def _beside(spec: object, folder: Path) -> object:
    """``spec`` made absolute when it is a path relative to ``folder`` that exists there."""
    if not isinstance(spec, str) or Path(spec).is_absolute():
        return spec
    beside = folder / spec
    return str(beside) if beside.exists() else spec


def _files_beside(data: Any, folder: Path) -> Any:
    """``forecast.nwp.sources`` and ``measurements.file`` naming a file or directory relative
    to the config's folder, made absolute (other specs unchanged)."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    forecast = data.get("forecast")
    nwp = forecast.get("nwp") if isinstance(forecast, dict) else None
    if isinstance(nwp, dict) and isinstance(nwp.get("sources"), dict):
        sources = {site: _beside(spec, folder) for site, spec in nwp["sources"].items()}
        out["forecast"] = {**data["forecast"], "nwp": {**nwp, "sources": sources}}
    measurements = data.get("measurements")
    if isinstance(measurements, dict) and measurements.get("file"):
        out["measurements"] = {**measurements, "file": _beside(measurements["file"], folder)}
    return out
