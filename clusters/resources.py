"""Sites as Ray custom resources: ``site:<name>``, one unit standing for ``gpus_per_unit`` GPUs.

Two ways to get a cluster, the same code afterwards:

- :func:`start_local` starts an embedded Ray on this machine with one resource per site;
- :func:`connect` joins a running cluster (``auto`` or ``HOST:PORT``) whose nodes were started
  with ``ray start --resources='{"site:qingyang": 16}'`` and checks every site has capacity.

Ray only accepts resource requests above one unit as whole numbers, so GPUs become units by
:func:`gpus_to_units`: below one unit the fraction is kept (to Ray's 1e-4 resolution), above one
unit it is rounded to the nearest whole unit, and a chunk never asks for 0.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import ray

from scheduler.contracts import UserError

__all__ = [
    "DEFAULT_GPUS_PER_UNIT",
    "ClusterError",
    "connect",
    "gpus_to_units",
    "ray_environment_defaults",
    "site_capacity_units",
    "site_resource",
    "start_local",
    "start_with_retries",
]

log = logging.getLogger(__name__)

DEFAULT_GPUS_PER_UNIT = 1000  # GPUs one unit of a site resource stands for [GPU/unit]
_RAY_RESOLUTION = 1e-4  # smallest fractional resource Ray tracks [unit]
_PREFIX = "site:"


START_ATTEMPTS = 3
"""Tries at starting an embedded Ray before giving up."""
START_BACKOFF_S = 2.0
"""Wait before the next try, times the tries so far [s]."""


class ClusterError(UserError):
    """A Ray cluster that cannot run the plan (missing or short site resources)."""


def ray_environment_defaults() -> None:
    """Token auth off and usage stats off, unless the environment already says otherwise.

    Ray 2.60 turns token authentication on by default and writes ``~/.ray/auth_token``; setting
    ``RAY_AUTH_MODE`` explicitly makes a fresh machine and CI behave the same.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def site_resource(site: str) -> str:
    """The Ray resource name of ``site``: ``site:<name>``."""
    return f"{_PREFIX}{site}"


def gpus_to_units(gpus: float, gpus_per_unit: float = DEFAULT_GPUS_PER_UNIT) -> float:
    """Ray units a chunk of ``gpus`` GPUs requests.

    ``gpus / gpus_per_unit`` when that is below one unit (rounded up to Ray's 1e-4 resolution),
    otherwise rounded to the nearest whole unit; never 0. Raises ``ValueError`` for
    ``gpus <= 0``.
    """
    if not gpus > 0 or not gpus_per_unit > 0:
        raise ValueError(f"gpus ({gpus}) and gpus_per_unit ({gpus_per_unit}) must be > 0")
    units = gpus / gpus_per_unit
    if units < 1:
        return max(_RAY_RESOLUTION, math.ceil(units / _RAY_RESOLUTION - 1e-9) * _RAY_RESOLUTION)
    return float(math.floor(units + 0.5))


def _site_units(sites: dict[str, int], gpus_per_unit: float) -> dict[str, float]:
    """Whole units per site for ``sites`` (GPUs); a site needs at least one unit."""
    if gpus_per_unit <= 0:
        raise ValueError(f"gpus_per_unit must be > 0, got {gpus_per_unit}")
    units = {}
    for site, gpus in sites.items():
        if gpus <= 0:
            raise ValueError(f"site {site!r} has {gpus} GPUs; a site needs > 0")
        units[site] = float(max(1, math.floor(gpus / gpus_per_unit)))
    return units


def site_capacity_units(sites: list[str] | dict[str, int]) -> dict[str, float]:
    """Units of each site's resource the connected cluster has now (0 when absent)."""
    total = ray.cluster_resources()
    return {site: float(total.get(site_resource(site), 0.0)) for site in sites}


def _start_hint(site: str, units: float) -> str:
    resources = json.dumps({site_resource(site): int(units)})
    return f"ray start --resources='{resources}' --address=<head host:port>"


def start_local(
    sites: dict[str, int],
    gpus_per_unit: float = DEFAULT_GPUS_PER_UNIT,
    num_cpus: int = 2,
    max_workers: int | None = None,
    **init_kwargs: Any,
) -> dict[str, float]:
    """Start an embedded Ray with one resource per site; return units per site.

    ``sites`` maps site name to GPUs; each site gets ``floor(gpus / gpus_per_unit)`` units (at
    least 1). ``max_workers`` is how many idle worker processes Ray keeps (default
    ``4 * num_cpus``, one per task asking for 0.25 CPU): Ray's own default (``num_cpus``) kills
    and restarts the extra workers every slot, which made dispatch 30x slower here.
    ``init_kwargs`` go to ``ray.init`` (the dashboard is off unless asked for). Token
    authentication is disabled unless ``RAY_AUTH_MODE`` is already set.
    """
    units = _site_units(sites, gpus_per_unit)
    ray_environment_defaults()
    init_kwargs.setdefault("include_dashboard", False)
    workers = 4 * num_cpus if max_workers is None else max_workers
    init_kwargs.setdefault("_system_config", {"num_workers_soft_limit": workers})
    resources = {site_resource(s): u for s, u in units.items()}
    start_with_retries(lambda: ray.init(num_cpus=num_cpus, resources=resources, **init_kwargs))
    log.info("embedded Ray started with %s", resources)
    return units


def start_with_retries(
    init: Callable[[], object], attempts: int = START_ATTEMPTS, backoff_s: float = START_BACKOFF_S
) -> None:
    """Call ``init`` (starting Ray) up to ``attempts`` times, ``backoff_s`` x the attempt apart:
    Ray's start times out when several start together on a loaded machine ("The current node
    timed out during startup"). Raises :class:`ClusterError` naming the cause after the last."""
    for attempt in range(1, attempts + 1):
        running = ray.is_initialized()
        try:
            init()
            return
        except Exception as error:  # Ray raises bare Exception and RuntimeError at start-up
            if not running and ray.is_initialized():
                ray.shutdown()  # what the failed start left behind, not a Ray already running
            if attempt == attempts:
                raise ClusterError(
                    f"could not start an embedded Ray ({attempts} tries): {error}; another Ray "
                    "or greensched may have been starting on this machine: try again, or give "
                    "--ray-address HOST:PORT of a running cluster"
                ) from None
            wait_s = backoff_s * attempt
            log.warning("embedded Ray did not start (%s); trying again in %.0f s", error, wait_s)
            time.sleep(wait_s)


def connect(
    address: str, sites: dict[str, int], gpus_per_unit: float = DEFAULT_GPUS_PER_UNIT
) -> dict[str, float]:
    """Connect to the Ray cluster at ``address`` (``auto`` or ``HOST:PORT``); return its units.

    Every site must have at least ``floor(gpus / gpus_per_unit)`` units (at least 1) of
    ``site:<name>``; otherwise raises :class:`ClusterError` naming the site, the resource, what
    the cluster has and the ``ray start`` line that would add it. A cluster with fewer units than
    the config is an error because the plan assumed every site's GPUs. When Ray is already
    initialised in this process the existing connection is checked.
    """
    needed = _site_units(sites, gpus_per_unit)
    ray_environment_defaults()
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError) as error:
            raise ClusterError(f"cannot connect to Ray at {address!r}: {error}") from error
    have = site_capacity_units(list(sites))
    problems = [
        f"site {site!r} needs {units:g} units of resource {site_resource(site)!r} "
        f"({sites[site]} GPUs at {gpus_per_unit:g} GPUs per unit) but the cluster has "
        f"{have[site]:g}; add a node with: {_start_hint(site, units - have[site])}"
        for site, units in needed.items()
        if have[site] < units
    ]
    if problems:
        site_resources = {
            k: v for k, v in sorted(ray.cluster_resources().items()) if k.startswith(_PREFIX)
        }
        raise ClusterError(
            f"Ray cluster at {address!r} cannot run the plan:\n  "
            + "\n  ".join(problems)
            + f"\n  site resources it has: {site_resources or 'none'}"
        )
    log.info("connected to Ray at %s with %s", address, have)
    return have
