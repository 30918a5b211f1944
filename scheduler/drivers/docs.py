"""``docs/formats.md``: the table and file formats, written from their one definition.

Every table's columns, kinds, units and rules come from its :class:`~scheduler.contracts.Schema`,
the plan directory's files from :data:`~scheduler.contracts.plandir.FILES`, the manifest's fields
from :class:`~scheduler.contracts.plandir.Manifest` and the study file's from
:class:`~scheduler.drivers.study.StudySpec`, so the document cannot drift from the code
(``tests/test_docs.py`` fails when it is stale). Write it with::

    python -m scheduler.drivers.docs > docs/formats.md
"""

from __future__ import annotations

import dataclasses
import sys

from pydantic import BaseModel

from scheduler.contracts import (
    CAPS,
    JOBS,
    MEASUREMENTS,
    PLAN,
    RUN,
    RUN_JOBS,
    SITE_LOAD,
    SITES,
    SUPPLY,
    Schema,
)
from scheduler.contracts.plandir import FILES, Manifest
from scheduler.drivers.study import StudySpec, Sweep

__all__ = ["formats_markdown"]

TABLES: tuple[tuple[Schema, str], ...] = (
    (SUPPLY, "`supply.csv` (a forecast, with `green_mw_p10` and `green_mw_p90` [MW] beside), "
     "`supply_actual.csv` of a plan directory; `greensched forecast --out`"),
    (JOBS, "`--jobs` of plan and serve; `jobs.csv` of a plan directory"),
    (PLAN, "`plan.csv`, `plan-<policy>.csv`"),
    (SITES, "`sites.csv`"),
    (CAPS, "`--caps` of plan and nightly; `caps.csv`"),
    (SITE_LOAD, "`site_load.csv`"),
    (RUN, "`run.csv` after a run (dispatch, nightly, serve)"),
    (RUN_JOBS, "`run_jobs.csv` after a run"),
    (MEASUREMENTS, "serve's `--measurements` file feed, `greensched measure submit --file`, "
     "`forecast-skill --actual`"),
)  # fmt: skip


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(schema: Schema, used: str) -> list[str]:
    lines = [f"### {schema.name}", "", f"Used as: {used}.", ""]
    if schema.unique:
        lines += [f"One row per {', '.join(f'`{k}`' for k in schema.unique)}.", ""]
    lines += [
        "| column | kind | unit | required | rule | meaning |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for column in schema.columns:
        required = "yes" if column.required else f"no (default {column.default!r})"
        lines.append(
            f"| `{column.name}` | {column.kind.value} | {_cell(column.unit)} | {required} | "
            f"{_cell(column.rule()) or '-'} | {_cell(column.description)} |"
        )
    return [*lines, ""]


def _model(model: type[BaseModel], title: str) -> list[str]:
    lines = [f"### {title}", "", "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        key = field.alias or name
        value = None if field.is_required() else field.get_default(call_default_factory=True)
        default = (
            "required"
            if field.is_required()
            else ("(below)" if isinstance(value, BaseModel) else repr(value))
        )
        kind = getattr(field.annotation, "__name__", None) or str(field.annotation)
        lines.append(
            f"| `{key}` | {_cell(kind.replace('typing.', ''))} | {_cell(default)} | "
            f"{_cell(field.description or '')} |"
        )
    return [*lines, ""]


def formats_markdown() -> str:
    """The whole document."""
    lines = [
        "# Table and file formats",
        "",
        "Written by `python -m scheduler.drivers.docs` from the definitions in the code "
        "(`scheduler/contracts/`, `scheduler/drivers/study.py`); a test fails when this file "
        "is stale. Tables are CSV (times ISO 8601 in UTC, `Z`) or Parquet; a reader names the "
        "file, line and column of every bad cell.",
        "",
        "## Tables",
        "",
    ]
    for schema, used in TABLES:
        lines += _table(schema, used)
    lines += ["## The plan directory", "", "| file | holds |", "| --- | --- |"]
    lines += [f"| `{name}` | {_cell(what)} |" for name, what in FILES.items()]
    lines += ["", "### manifest.json", "", "| field | type |", "| --- | --- |"]
    lines += [
        f"| `{f.name}` | {_cell(str(f.type).replace('pd.', ''))} |"
        for f in dataclasses.fields(Manifest)
    ]
    lines += [
        "",
        "## Study files (`greensched study FILE`)",
        "",
        "YAML; every key checked (an unknown key or a bad value names the field). The scenarios "
        "are the cartesian product of the `sweep` lists.",
        "",
    ]
    lines += _model(StudySpec, "top level")
    lines += _model(Sweep, "sweep")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(formats_markdown())
