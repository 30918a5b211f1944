"""``docs/formats.md`` is what the code defines: a table, file or key added or changed in the
code without the document written again fails here."""

from __future__ import annotations

from pathlib import Path

from scheduler.drivers.docs import formats_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "formats.md"


def test_the_formats_document_is_fresh():
    assert DOC.read_text(encoding="utf-8") == formats_markdown(), (
        "docs/formats.md is stale: python -m scheduler.drivers.docs > docs/formats.md"
    )


def test_it_names_every_table_column_and_study_key():
    text = DOC.read_text(encoding="utf-8")
    for needle in ("`supply_basis`", "`measured_load_mw`", "### measurements", "`gpu_hours`",
                   "`replan_every_minutes`", "`forecast` |", "manifest.json"):  # fmt: skip
        assert needle in text
