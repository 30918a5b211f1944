import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PayloadType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYLOAD_TYPE_UNSPECIFIED: _ClassVar[PayloadType]
    IMPORT_CAPACITY_LIMIT: _ClassVar[PayloadType]
    LOAD_LIMIT: _ClassVar[PayloadType]
    PRICE: _ClassVar[PayloadType]

class Opt(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPT_UNSPECIFIED: _ClassVar[Opt]
    OPT_IN: _ClassVar[Opt]
    OPT_OUT: _ClassVar[Opt]
    SCHEDULED: _ClassVar[Opt]

class EventStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_STATUS_UNSPECIFIED: _ClassVar[EventStatus]
    ACTIVE: _ClassVar[EventStatus]
    CANCELLED: _ClassVar[EventStatus]

class OperatingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATING_STATE_UNSPECIFIED: _ClassVar[OperatingState]
    NORMAL: _ClassVar[OperatingState]
    RUNNING_CURTAILED: _ClassVar[OperatingState]
PAYLOAD_TYPE_UNSPECIFIED: PayloadType
IMPORT_CAPACITY_LIMIT: PayloadType
LOAD_LIMIT: PayloadType
PRICE: PayloadType
OPT_UNSPECIFIED: Opt
OPT_IN: Opt
OPT_OUT: Opt
SCHEDULED: Opt
EVENT_STATUS_UNSPECIFIED: EventStatus
ACTIVE: EventStatus
CANCELLED: EventStatus
OPERATING_STATE_UNSPECIFIED: OperatingState
NORMAL: OperatingState
RUNNING_CURTAILED: OperatingState

class Interval(_message.Message):
    __slots__ = ("start", "duration", "type", "value_mw")
    START_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_MW_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    type: PayloadType
    value_mw: float
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., type: _Optional[_Union[PayloadType, str]] = ..., value_mw: _Optional[float] = ...) -> None: ...

class SubmitLoadCapRequest(_message.Message):
    __slots__ = ("event_id", "modification_number", "program", "priority", "targets", "intervals", "dry_run")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODIFICATION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    modification_number: int
    program: str
    priority: int
    targets: _containers.RepeatedScalarFieldContainer[str]
    intervals: _containers.RepeatedCompositeFieldContainer[Interval]
    dry_run: bool
    def __init__(self, event_id: _Optional[str] = ..., modification_number: _Optional[int] = ..., program: _Optional[str] = ..., priority: _Optional[int] = ..., targets: _Optional[_Iterable[str]] = ..., intervals: _Optional[_Iterable[_Union[Interval, _Mapping]]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class CapCost(_message.Message):
    __slots__ = ("late_jobs", "late_jobs_total", "late_gpu_hours", "moved_mwh", "green_share_change", "grid_mwh_change", "grid_cost_change")
    LATE_JOBS_FIELD_NUMBER: _ClassVar[int]
    LATE_JOBS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    LATE_GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    MOVED_MWH_FIELD_NUMBER: _ClassVar[int]
    GREEN_SHARE_CHANGE_FIELD_NUMBER: _ClassVar[int]
    GRID_MWH_CHANGE_FIELD_NUMBER: _ClassVar[int]
    GRID_COST_CHANGE_FIELD_NUMBER: _ClassVar[int]
    late_jobs: _containers.RepeatedScalarFieldContainer[str]
    late_jobs_total: int
    late_gpu_hours: float
    moved_mwh: float
    green_share_change: float
    grid_mwh_change: float
    grid_cost_change: float
    def __init__(self, late_jobs: _Optional[_Iterable[str]] = ..., late_jobs_total: _Optional[int] = ..., late_gpu_hours: _Optional[float] = ..., moved_mwh: _Optional[float] = ..., green_share_change: _Optional[float] = ..., grid_mwh_change: _Optional[float] = ..., grid_cost_change: _Optional[float] = ...) -> None: ...

class SubmitLoadCapResponse(_message.Message):
    __slots__ = ("accepted", "opt", "opt_reason", "cost", "plan_version", "replayed")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    OPT_FIELD_NUMBER: _ClassVar[int]
    OPT_REASON_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    opt: Opt
    opt_reason: str
    cost: CapCost
    plan_version: int
    replayed: bool
    def __init__(self, accepted: _Optional[bool] = ..., opt: _Optional[_Union[Opt, str]] = ..., opt_reason: _Optional[str] = ..., cost: _Optional[_Union[CapCost, _Mapping]] = ..., plan_version: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...

class CancelLoadCapRequest(_message.Message):
    __slots__ = ("event_id", "reason")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    reason: str
    def __init__(self, event_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelLoadCapResponse(_message.Message):
    __slots__ = ("cancelled", "plan_version")
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    cancelled: bool
    plan_version: int
    def __init__(self, cancelled: _Optional[bool] = ..., plan_version: _Optional[int] = ...) -> None: ...

class ListLoadCapsRequest(_message.Message):
    __slots__ = ("sites", "to", "include_cancelled")
    SITES_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CANCELLED_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedScalarFieldContainer[str]
    to: _timestamp_pb2.Timestamp
    include_cancelled: bool
    def __init__(self, sites: _Optional[_Iterable[str]] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., include_cancelled: _Optional[bool] = ..., **kwargs) -> None: ...

class LoadCapEvent(_message.Message):
    __slots__ = ("event_id", "modification_number", "program", "priority", "targets", "intervals", "status", "coordinator", "received_at", "opt", "plan_version")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODIFICATION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    OPT_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    modification_number: int
    program: str
    priority: int
    targets: _containers.RepeatedScalarFieldContainer[str]
    intervals: _containers.RepeatedCompositeFieldContainer[Interval]
    status: EventStatus
    coordinator: str
    received_at: _timestamp_pb2.Timestamp
    opt: Opt
    plan_version: int
    def __init__(self, event_id: _Optional[str] = ..., modification_number: _Optional[int] = ..., program: _Optional[str] = ..., priority: _Optional[int] = ..., targets: _Optional[_Iterable[str]] = ..., intervals: _Optional[_Iterable[_Union[Interval, _Mapping]]] = ..., status: _Optional[_Union[EventStatus, str]] = ..., coordinator: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., opt: _Optional[_Union[Opt, str]] = ..., plan_version: _Optional[int] = ...) -> None: ...

class ListLoadCapsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[LoadCapEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[LoadCapEvent, _Mapping]]] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("sites",)
    SITES_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sites: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchPlanRequest(_message.Message):
    __slots__ = ("sites", "summary_only")
    SITES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_ONLY_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedScalarFieldContainer[str]
    summary_only: bool
    def __init__(self, sites: _Optional[_Iterable[str]] = ..., summary_only: _Optional[bool] = ...) -> None: ...

class PlanMetrics(_message.Message):
    __slots__ = ("green_share", "grid_mwh", "energy_used_mwh", "co2_t", "jobs_unfinished", "unfinished_gpu_hours", "cap_violations")
    GREEN_SHARE_FIELD_NUMBER: _ClassVar[int]
    GRID_MWH_FIELD_NUMBER: _ClassVar[int]
    ENERGY_USED_MWH_FIELD_NUMBER: _ClassVar[int]
    CO2_T_FIELD_NUMBER: _ClassVar[int]
    JOBS_UNFINISHED_FIELD_NUMBER: _ClassVar[int]
    UNFINISHED_GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    CAP_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    green_share: float
    grid_mwh: float
    energy_used_mwh: float
    co2_t: float
    jobs_unfinished: int
    unfinished_gpu_hours: float
    cap_violations: int
    def __init__(self, green_share: _Optional[float] = ..., grid_mwh: _Optional[float] = ..., energy_used_mwh: _Optional[float] = ..., co2_t: _Optional[float] = ..., jobs_unfinished: _Optional[int] = ..., unfinished_gpu_hours: _Optional[float] = ..., cap_violations: _Optional[int] = ...) -> None: ...

class SiteSlot(_message.Message):
    __slots__ = ("site", "start", "gpus_busy", "load_mw", "green_mw", "grid_mw", "grid_cap_mw", "load_cap_mw", "price_per_mwh")
    SITE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    GPUS_BUSY_FIELD_NUMBER: _ClassVar[int]
    LOAD_MW_FIELD_NUMBER: _ClassVar[int]
    GREEN_MW_FIELD_NUMBER: _ClassVar[int]
    GRID_MW_FIELD_NUMBER: _ClassVar[int]
    GRID_CAP_MW_FIELD_NUMBER: _ClassVar[int]
    LOAD_CAP_MW_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_MWH_FIELD_NUMBER: _ClassVar[int]
    site: str
    start: _timestamp_pb2.Timestamp
    gpus_busy: int
    load_mw: float
    green_mw: float
    grid_mw: float
    grid_cap_mw: float
    load_cap_mw: float
    price_per_mwh: float
    def __init__(self, site: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gpus_busy: _Optional[int] = ..., load_mw: _Optional[float] = ..., green_mw: _Optional[float] = ..., grid_mw: _Optional[float] = ..., grid_cap_mw: _Optional[float] = ..., load_cap_mw: _Optional[float] = ..., price_per_mwh: _Optional[float] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("version", "created_at", "reason", "replanned", "horizon_start", "slot_minutes", "caps_in_force", "solver_status", "plan_seconds", "metrics", "slots", "clock")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REPLANNED_FIELD_NUMBER: _ClassVar[int]
    HORIZON_START_FIELD_NUMBER: _ClassVar[int]
    SLOT_MINUTES_FIELD_NUMBER: _ClassVar[int]
    CAPS_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    SOLVER_STATUS_FIELD_NUMBER: _ClassVar[int]
    PLAN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    version: int
    created_at: _timestamp_pb2.Timestamp
    reason: str
    replanned: bool
    horizon_start: _timestamp_pb2.Timestamp
    slot_minutes: int
    caps_in_force: int
    solver_status: str
    plan_seconds: float
    metrics: PlanMetrics
    slots: _containers.RepeatedCompositeFieldContainer[SiteSlot]
    clock: _timestamp_pb2.Timestamp
    def __init__(self, version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., replanned: _Optional[bool] = ..., horizon_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., slot_minutes: _Optional[int] = ..., caps_in_force: _Optional[int] = ..., solver_status: _Optional[str] = ..., plan_seconds: _Optional[float] = ..., metrics: _Optional[_Union[PlanMetrics, _Mapping]] = ..., slots: _Optional[_Iterable[_Union[SiteSlot, _Mapping]]] = ..., clock: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("sites", "to")
    SITES_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedScalarFieldContainer[str]
    to: _timestamp_pb2.Timestamp
    def __init__(self, sites: _Optional[_Iterable[str]] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., **kwargs) -> None: ...

class WatchReportRequest(_message.Message):
    __slots__ = ("sites",)
    SITES_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sites: _Optional[_Iterable[str]] = ...) -> None: ...

class ReportSlot(_message.Message):
    __slots__ = ("site", "start", "usage_mw", "demand_mw", "baseline_mw", "operating_state", "grid_cap_mw", "load_cap_mw", "supply_basis", "forecast_age_h", "storage_charge_level_mwh", "storage_charge_mw", "storage_discharge_mw")
    SITE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    USAGE_MW_FIELD_NUMBER: _ClassVar[int]
    DEMAND_MW_FIELD_NUMBER: _ClassVar[int]
    BASELINE_MW_FIELD_NUMBER: _ClassVar[int]
    OPERATING_STATE_FIELD_NUMBER: _ClassVar[int]
    GRID_CAP_MW_FIELD_NUMBER: _ClassVar[int]
    LOAD_CAP_MW_FIELD_NUMBER: _ClassVar[int]
    SUPPLY_BASIS_FIELD_NUMBER: _ClassVar[int]
    FORECAST_AGE_H_FIELD_NUMBER: _ClassVar[int]
    STORAGE_CHARGE_LEVEL_MWH_FIELD_NUMBER: _ClassVar[int]
    STORAGE_CHARGE_MW_FIELD_NUMBER: _ClassVar[int]
    STORAGE_DISCHARGE_MW_FIELD_NUMBER: _ClassVar[int]
    site: str
    start: _timestamp_pb2.Timestamp
    usage_mw: float
    demand_mw: float
    baseline_mw: float
    operating_state: OperatingState
    grid_cap_mw: float
    load_cap_mw: float
    supply_basis: str
    forecast_age_h: float
    storage_charge_level_mwh: float
    storage_charge_mw: float
    storage_discharge_mw: float
    def __init__(self, site: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., usage_mw: _Optional[float] = ..., demand_mw: _Optional[float] = ..., baseline_mw: _Optional[float] = ..., operating_state: _Optional[_Union[OperatingState, str]] = ..., grid_cap_mw: _Optional[float] = ..., load_cap_mw: _Optional[float] = ..., supply_basis: _Optional[str] = ..., forecast_age_h: _Optional[float] = ..., storage_charge_level_mwh: _Optional[float] = ..., storage_charge_mw: _Optional[float] = ..., storage_discharge_mw: _Optional[float] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("clock", "slot_minutes", "slots")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    SLOT_MINUTES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    clock: _timestamp_pb2.Timestamp
    slot_minutes: int
    slots: _containers.RepeatedCompositeFieldContainer[ReportSlot]
    def __init__(self, clock: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., slot_minutes: _Optional[int] = ..., slots: _Optional[_Iterable[_Union[ReportSlot, _Mapping]]] = ...) -> None: ...

class GetForecastRequest(_message.Message):
    __slots__ = ("sites",)
    SITES_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sites: _Optional[_Iterable[str]] = ...) -> None: ...

class SupplySlot(_message.Message):
    __slots__ = ("site", "start", "pv_mw", "wind_mw", "green_mw")
    SITE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    PV_MW_FIELD_NUMBER: _ClassVar[int]
    WIND_MW_FIELD_NUMBER: _ClassVar[int]
    GREEN_MW_FIELD_NUMBER: _ClassVar[int]
    site: str
    start: _timestamp_pb2.Timestamp
    pv_mw: float
    wind_mw: float
    green_mw: float
    def __init__(self, site: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pv_mw: _Optional[float] = ..., wind_mw: _Optional[float] = ..., green_mw: _Optional[float] = ...) -> None: ...

class Forecast(_message.Message):
    __slots__ = ("horizon_start", "slot_minutes", "slots")
    HORIZON_START_FIELD_NUMBER: _ClassVar[int]
    SLOT_MINUTES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    horizon_start: _timestamp_pb2.Timestamp
    slot_minutes: int
    slots: _containers.RepeatedCompositeFieldContainer[SupplySlot]
    def __init__(self, horizon_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., slot_minutes: _Optional[int] = ..., slots: _Optional[_Iterable[_Union[SupplySlot, _Mapping]]] = ...) -> None: ...

class Measurement(_message.Message):
    __slots__ = ("site", "start", "pv_mw", "wind_mw", "load_mw")
    SITE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    PV_MW_FIELD_NUMBER: _ClassVar[int]
    WIND_MW_FIELD_NUMBER: _ClassVar[int]
    LOAD_MW_FIELD_NUMBER: _ClassVar[int]
    site: str
    start: _timestamp_pb2.Timestamp
    pv_mw: float
    wind_mw: float
    load_mw: float
    def __init__(self, site: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pv_mw: _Optional[float] = ..., wind_mw: _Optional[float] = ..., load_mw: _Optional[float] = ...) -> None: ...

class ReportMeasurementsRequest(_message.Message):
    __slots__ = ("measurements",)
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    measurements: _containers.RepeatedCompositeFieldContainer[Measurement]
    def __init__(self, measurements: _Optional[_Iterable[_Union[Measurement, _Mapping]]] = ...) -> None: ...

class ReportMeasurementsResponse(_message.Message):
    __slots__ = ("stored", "replayed")
    STORED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    replayed: int
    def __init__(self, stored: _Optional[int] = ..., replayed: _Optional[int] = ...) -> None: ...

class ListMeasurementsRequest(_message.Message):
    __slots__ = ("sites", "to")
    SITES_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedScalarFieldContainer[str]
    to: _timestamp_pb2.Timestamp
    def __init__(self, sites: _Optional[_Iterable[str]] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., **kwargs) -> None: ...

class StoredMeasurement(_message.Message):
    __slots__ = ("measurement", "received_at", "reported_by")
    MEASUREMENT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    REPORTED_BY_FIELD_NUMBER: _ClassVar[int]
    measurement: Measurement
    received_at: _timestamp_pb2.Timestamp
    reported_by: str
    def __init__(self, measurement: _Optional[_Union[Measurement, _Mapping]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reported_by: _Optional[str] = ...) -> None: ...

class ListMeasurementsResponse(_message.Message):
    __slots__ = ("measurements",)
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    measurements: _containers.RepeatedCompositeFieldContainer[StoredMeasurement]
    def __init__(self, measurements: _Optional[_Iterable[_Union[StoredMeasurement, _Mapping]]] = ...) -> None: ...

class GetFlexibilityRequest(_message.Message):
    __slots__ = ("sites", "to", "shed_levels_mw")
    SITES_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    SHED_LEVELS_MW_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedScalarFieldContainer[str]
    to: _timestamp_pb2.Timestamp
    shed_levels_mw: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, sites: _Optional[_Iterable[str]] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., shed_levels_mw: _Optional[_Iterable[float]] = ..., **kwargs) -> None: ...

class FlexibilitySlot(_message.Message):
    __slots__ = ("start", "baseline_mw", "floor_mw", "ceiling_mw")
    START_FIELD_NUMBER: _ClassVar[int]
    BASELINE_MW_FIELD_NUMBER: _ClassVar[int]
    FLOOR_MW_FIELD_NUMBER: _ClassVar[int]
    CEILING_MW_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    baseline_mw: float
    floor_mw: float
    ceiling_mw: float
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., baseline_mw: _Optional[float] = ..., floor_mw: _Optional[float] = ..., ceiling_mw: _Optional[float] = ...) -> None: ...

class ShedCost(_message.Message):
    __slots__ = ("shed_mw", "shed_mwh", "cap_mw", "opt", "extra_co2_kg", "extra_cost", "grid_mwh_change", "late_gpu_hours", "late_jobs_total", "provisional")
    SHED_MW_FIELD_NUMBER: _ClassVar[int]
    SHED_MWH_FIELD_NUMBER: _ClassVar[int]
    CAP_MW_FIELD_NUMBER: _ClassVar[int]
    OPT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_CO2_KG_FIELD_NUMBER: _ClassVar[int]
    EXTRA_COST_FIELD_NUMBER: _ClassVar[int]
    GRID_MWH_CHANGE_FIELD_NUMBER: _ClassVar[int]
    LATE_GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    LATE_JOBS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PROVISIONAL_FIELD_NUMBER: _ClassVar[int]
    shed_mw: float
    shed_mwh: float
    cap_mw: _containers.RepeatedScalarFieldContainer[float]
    opt: Opt
    extra_co2_kg: float
    extra_cost: float
    grid_mwh_change: float
    late_gpu_hours: float
    late_jobs_total: int
    provisional: bool
    def __init__(self, shed_mw: _Optional[float] = ..., shed_mwh: _Optional[float] = ..., cap_mw: _Optional[_Iterable[float]] = ..., opt: _Optional[_Union[Opt, str]] = ..., extra_co2_kg: _Optional[float] = ..., extra_cost: _Optional[float] = ..., grid_mwh_change: _Optional[float] = ..., late_gpu_hours: _Optional[float] = ..., late_jobs_total: _Optional[int] = ..., provisional: _Optional[bool] = ...) -> None: ...

class SiteFlexibility(_message.Message):
    __slots__ = ("site", "slots", "largest_on_time_shed_mw", "shed_costs")
    SITE_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    LARGEST_ON_TIME_SHED_MW_FIELD_NUMBER: _ClassVar[int]
    SHED_COSTS_FIELD_NUMBER: _ClassVar[int]
    site: str
    slots: _containers.RepeatedCompositeFieldContainer[FlexibilitySlot]
    largest_on_time_shed_mw: float
    shed_costs: _containers.RepeatedCompositeFieldContainer[ShedCost]
    def __init__(self, site: _Optional[str] = ..., slots: _Optional[_Iterable[_Union[FlexibilitySlot, _Mapping]]] = ..., largest_on_time_shed_mw: _Optional[float] = ..., shed_costs: _Optional[_Iterable[_Union[ShedCost, _Mapping]]] = ...) -> None: ...

class Flexibility(_message.Message):
    __slots__ = ("clock", "plan_version", "slot_minutes", "sites")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    SLOT_MINUTES_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    clock: _timestamp_pb2.Timestamp
    plan_version: int
    slot_minutes: int
    sites: _containers.RepeatedCompositeFieldContainer[SiteFlexibility]
    def __init__(self, clock: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., plan_version: _Optional[int] = ..., slot_minutes: _Optional[int] = ..., sites: _Optional[_Iterable[_Union[SiteFlexibility, _Mapping]]] = ...) -> None: ...
