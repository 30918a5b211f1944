"""Driver: run a plan directory on Ray (``greensched dispatch``, the run step of ``nightly``).

Reads the plan directory through its contract, checks its manifest against the config, builds
the day's problem from the directory (horizon, slot length and sites come from the manifest),
starts or connects to Ray and walks the day with the settlement engine, the Ray runner and the
chosen clock; the optimizer re-plans when a site loses capacity. Holds no dispatching or
planning logic.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pandas as pd

from clusters.resources import DEFAULT_GPUS_PER_UNIT, connect, start_local
from clusters.runner import RayRunner
from clusters.tasks import ChunkWork, TaskSettings, run_chunk
from forecasts.supply import SupplyModel
from scheduler.clock import Clock, CompressedClock, RealClock
from scheduler.config import Config
from scheduler.contracts.plandir import (
    PlanDirError,
    PlanTables,
    RunReport,
    read_plan_dir,
    write_run_report,
)
from scheduler.horizon import Horizon
from scheduler.pipeline import WEATHER_PAD, load_site_weather, storage_guide_of
from scheduler.policies import get_policy
from scheduler.problem import Problem, caps_from_frame, problem_for
from scheduler.replan import policy_replan
from scheduler.settlement import Settlement, SlotProgress
from scheduler.storage import UNIT_FIELDS, StorageGuide

__all__ = ["Stopped", "dispatch", "plan_dir_problem", "stop_on_sigterm"]

_SITE_FIELDS = ("gpus", "kw_per_gpu", "pue", "base_load_mw", "grid_import_limit_mw",
                "ramp_up_mw_per_min", "ramp_down_mw_per_min")  # fmt: skip
"""Site parameters a plan directory's plan depends on."""


def _same(planned: float, configured: float | None) -> bool:
    """A recorded parameter equals the config's. An empty cell (NaN) is no limit, or a plan
    directory from before ramp limits were recorded: it matches whatever the config says."""
    if math.isnan(planned):
        return True
    if configured is None:
        return False
    return abs(float(planned) - float(configured)) <= 1e-9 * max(1.0, abs(configured))


def _text(value: float | None) -> str:
    return "none" if value is None or math.isnan(value) else f"{value:g}"


def _check_matches(directory: Path, tables: PlanTables, config: Config) -> None:
    """Refuse a plan directory made under another slot length or other sites."""
    manifest = tables.manifest
    differences = []
    if manifest.slot_minutes != config.forecast.slot_minutes:
        differences.append(
            f"slot length {manifest.slot_minutes} min in the plan, "
            f"{config.forecast.slot_minutes} min in the config"
        )
    if set(manifest.sites) != set(config.sites):
        differences.append(
            f"sites {', '.join(manifest.sites)} in the plan, "
            f"{', '.join(config.sites)} in the config"
        )
    else:
        for row in tables.sites.itertuples(index=False):
            site = config.sites[row.site]
            for name in _SITE_FIELDS:
                planned, configured = getattr(row, name), getattr(site, name)
                if not _same(planned, configured):
                    differences.append(
                        f"{row.site}.{name} {_text(planned)} in the plan, {_text(configured)} "
                        "in the config"
                    )
        differences += _asset_differences(tables, config)
    if differences:
        raise PlanDirError(
            f"{directory}: made with another configuration: {'; '.join(differences)}; "
            "dispatch it with the config it was planned with, or plan the day again"
        )


def _asset_differences(tables: PlanTables, config: Config) -> list[str]:
    """How the plan directory's storage units and green purchases differ from the config's
    (none for a directory written before they existed)."""
    out = []
    if tables.storage is not None:
        planned = {(r.site, r.unit): r for r in tables.storage.itertuples(index=False)}
        configured = {(name, unit): spec for name, site in config.sites.items()
                      for unit, spec in site.storage.items()}  # fmt: skip
        for key in sorted(set(planned) ^ set(configured)):
            where = "the plan" if key in planned else "the config"
            out.append(f"storage unit {key[0]}.{key[1]} only in {where}")
        for key in sorted(set(planned) & set(configured)):
            for name in UNIT_FIELDS:
                planned_value = getattr(planned[key], name)
                configured_value = getattr(configured[key], name)
                if not _same(planned_value, configured_value):
                    out.append(f"storage {key[0]}.{key[1]}.{name} {_text(planned_value)} in the "
                               f"plan, {_text(configured_value)} in the config")  # fmt: skip
    if tables.purchases is not None:
        bought = dict(zip(tables.purchases["site"], tables.purchases["price_per_mwh"], strict=True))
        for name, site in config.sites.items():
            price = None if site.green_purchase is None else site.green_purchase.price_per_mwh
            if (name in bought) != (price is not None) or (
                price is not None and not _same(bought[name], price)
            ):
                out.append(f"{name} green purchase at {_text(bought.get(name))} in the plan, "
                           f"{_text(price)} in the config")  # fmt: skip
    return out


def plan_dir_problem(
    directory: Path, config: Config, actual_weather: Mapping[str, str] | None = None
) -> tuple[Problem, pd.DataFrame]:
    """The problem a plan directory's day settles on, and its plan.

    The horizon comes from the manifest; the day settles on ``supply_actual.csv`` (the forecast
    when absent), with the sites in ``actual_weather`` (site -> weather file) computed from
    those files instead.
    """
    tables = read_plan_dir(directory)
    _check_matches(directory, tables, config)
    manifest = tables.manifest
    horizon = Horizon(manifest.day_start, manifest.slot_minutes, manifest.n_slots)
    actual = tables.settle_supply
    if actual_weather:
        weather = load_site_weather(
            config,
            horizon,
            actual_weather,
            seed=manifest.seed,
            only=actual_weather,
            pad=WEATHER_PAD,
        )
        computed = SupplyModel(config.sites, slot_minutes=horizon.slot_minutes).actual(weather)
        computed = computed[(computed["time"] >= horizon.start) & (computed["time"] < horizon.end)]
        kept = actual[~actual["site"].isin(list(weather))]
        actual = pd.concat([kept, computed[kept.columns.intersection(computed.columns)]],
                           ignore_index=True)  # fmt: skip
    problem = replace(
        problem_for(
            config, horizon, tables.jobs, tables.forecast,
            caps=tuple(caps_from_frame(tables.caps)), actual_supply=actual,
            sites=tuple(config.sites[name] for name in manifest.sites),
            limits_on=None if "green_mw_p10" in tables.forecast else "forecast",
        ),
        initial_load_mw=(
            None
            if manifest.initial_load_mw is None
            else tuple(manifest.initial_load_mw[name] for name in manifest.sites)
        ),
        initial_soc_mwh=(
            None
            if tables.storage is None
            else tuple(tables.storage["state_of_charge_start"].astype(float))
        ),
    )  # fmt: skip
    return problem, tables.plan


def plan_dir_guide(directory: Path, problem: Problem) -> StorageGuide | None:
    """How the plan in ``directory`` runs ``problem``'s storage units (its ``storage_plan.csv``;
    ``None``: the storage rule)."""
    table = read_plan_dir(directory).storage_plan
    return None if table is None else storage_guide_of(problem, table)


class Stopped(BaseException):
    """A dispatch stopped by SIGTERM before its day ended (nothing is written). A
    ``BaseException``, as ``KeyboardInterrupt``: no handler of errors (Ray's start is retried on
    any ``Exception``) takes it for a failure."""


def _stop(signum: int, frame: object) -> None:
    raise Stopped(signal.Signals(signum).name)


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Inside, SIGTERM raises :class:`Stopped` in the main thread (elsewhere nothing changes);
    the handler before is put back on leaving."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _start_ray(address: str | None, gpus: dict[str, int], gpus_per_unit: float, here: bool) -> None:
    """Connect to the cluster at ``address``, or start one ``here``; a SIGTERM meanwhile is
    :class:`Stopped` once Ray is up (:func:`_sigterm_noted`)."""
    with _sigterm_noted() as noted:
        if address:
            connect(address, gpus, gpus_per_unit)
        elif here:
            start_local(gpus, gpus_per_unit, log_to_driver=False)
    if noted:
        raise Stopped(signal.SIGTERM.name)


@contextmanager
def _sigterm_noted() -> Iterator[list[int]]:
    """Inside (in the main thread), a SIGTERM is only noted in the list yielded, and Ray's start
    sets no SIGTERM handler of its own. Ray's, ``sys.exit(15)``, raised wherever the signal
    landed: inside the logging module's lock, whose release it broke, and the process hung
    instead of exiting (2 of 12 SIGTERMs during the start). Ray's private hook is put back on
    leaving."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    import ray._private.utils as ray_utils

    noted: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: noted.append(signum))
    ray_sets = ray_utils.set_sigterm_handler
    ray_utils.set_sigterm_handler = lambda handler: None
    try:
        yield noted
    finally:
        ray_utils.set_sigterm_handler = ray_sets
        signal.signal(signal.SIGTERM, before)


def dispatch(
    directory: Path,
    config: Config,
    *,
    actual_weather: Mapping[str, str] | None = None,
    ray_address: str | None = None,
    speedup: float = 1.0,
    gpus_per_unit: float = DEFAULT_GPUS_PER_UNIT,
    progress: Callable[[SlotProgress], None] | None = None,
    clock: Clock | None = None,
    work: ChunkWork = run_chunk,
) -> RunReport:
    """Run the plan in ``directory`` on Ray; write ``run.csv``, ``run_jobs.csv`` and
    ``run_report.json`` there. SIGTERM raises :class:`Stopped`, also while Ray starts."""
    import ray

    problem, plan = plan_dir_problem(directory, config, actual_weather)
    guide = plan_dir_guide(directory, problem)
    gpus = {site.name: site.gpus for site in problem.sites}
    started_here = not ray.is_initialized()
    settings = TaskSettings(gpus_per_unit=gpus_per_unit)
    if clock is None:
        clock = RealClock() if speedup == 1.0 else CompressedClock(speedup)
    with stop_on_sigterm():
        try:
            _start_ray(ray_address, gpus, gpus_per_unit, started_here)
            runner = RayRunner(gpus, settings, work=work)
            replan = policy_replan(problem, get_policy("optimizer", config.solver))
            report = Settlement(
                problem,
                plan,
                runner=runner,
                clock=clock,
                replan=replan,
                progress=progress,
                guide=guide,
            ).run()
        finally:
            if started_here and ray.is_initialized():
                ray.shutdown()
    report = replace(
        report,
        settings={
            "gpus_per_unit": settings.gpus_per_unit,
            "num_cpus_per_task": settings.num_cpus,
            "tokens_per_real_token": settings.tokens_per_real_token,
            "max_retries": runner.max_retries,
        },
    )
    write_run_report(directory, report)
    return report
