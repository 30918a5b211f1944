"""The shared vocabulary: tables, the plan directory, the user-error base class.

A leaf: it imports nothing else of the project, so every package (``forecasts/``, the
scheduling core, its drivers, ``clusters/``) may import it and nothing more of ``scheduler/``
is needed to speak the contracts (``docs/formats.md`` is written from them).
"""

from scheduler.contracts.errors import UserError
from scheduler.contracts.tables import (
    CAP_LIST_SEPARATOR,
    CAPS,
    GREEN_PURCHASES,
    JOBS,
    MEASUREMENTS,
    PLAN,
    RUN,
    RUN_JOBS,
    SITE_LOAD,
    SITES,
    STORAGE_PLAN,
    STORAGE_UNITS,
    SUPPLY,
    UTC_ISO_FORMAT,
    CapType,
    Column,
    JobStatus,
    Kind,
    Schema,
    SupplyBasis,
    TableError,
    check_slot_minutes,
    ensure_dir,
    read_table,
    split_sites,
    write_table,
)

__all__ = [
    "CAPS",
    "CAP_LIST_SEPARATOR",
    "GREEN_PURCHASES",
    "JOBS",
    "MEASUREMENTS",
    "PLAN",
    "RUN",
    "RUN_JOBS",
    "SITES",
    "SITE_LOAD",
    "STORAGE_PLAN",
    "STORAGE_UNITS",
    "SUPPLY",
    "UTC_ISO_FORMAT",
    "CapType",
    "Column",
    "JobStatus",
    "Kind",
    "Schema",
    "SupplyBasis",
    "TableError",
    "UserError",
    "check_slot_minutes",
    "ensure_dir",
    "read_table",
    "split_sites",
    "write_table",
]
