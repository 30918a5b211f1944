"""Run slot decisions on Ray: sites as custom resources, real inference tasks.

Knows nothing of pvlib or forecasts, and of ``scheduler/`` only its contracts: the settlement
engine decides what runs in each slot and hands the chunks to :class:`RayRunner`.
"""

from clusters.resources import ClusterError, connect, gpus_to_units, site_resource, start_local
from clusters.runner import RayRunner
from clusters.tasks import ChunkRecord, TaskSettings

__all__ = [
    "ChunkRecord",
    "ClusterError",
    "RayRunner",
    "TaskSettings",
    "connect",
    "gpus_to_units",
    "site_resource",
    "start_local",
]
