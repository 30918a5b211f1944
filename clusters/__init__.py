"""Run a plan on Ray: sites as custom resources, real inference tasks, a run report.

Knows nothing of pvlib or forecasts: it takes plain tables (plan, jobs, sites, supply, caps)
and an optional re-planning callable.
"""

from clusters.clock import CompressedClock, InstantClock, RealClock
from clusters.dispatcher import Dispatcher, Replan, SlotProgress
from clusters.report import RunReport, write_run_report
from clusters.resources import ClusterError, connect, gpus_to_units, site_resource, start_local
from clusters.tasks import Chunk, ChunkRecord, TaskSettings

__all__ = [
    "Chunk",
    "ChunkRecord",
    "ClusterError",
    "CompressedClock",
    "Dispatcher",
    "InstantClock",
    "RealClock",
    "Replan",
    "RunReport",
    "SlotProgress",
    "TaskSettings",
    "connect",
    "gpus_to_units",
    "site_resource",
    "start_local",
    "write_run_report",
]
