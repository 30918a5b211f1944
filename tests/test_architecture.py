"""The one-way flow of DESIGN.md holds in the imports: each package stays in its room.

- ``scheduler.contracts`` is a leaf: it imports nothing else of the project;
- ``forecasts/`` knows nothing of Ray, gRPC or the scheduler (its contracts aside);
- the scheduling core (``scheduler/`` outside ``drivers/``) knows nothing of Ray, gRPC,
  Prometheus, ``clusters/`` or its drivers;
- ``clusters/`` knows nothing of pvlib or forecasts, and of ``scheduler/`` only its contracts;
- no module imports another module's private (underscored) names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` for every import in ``path`` (names empty for ``import x``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [alias.name for alias in node.names]))
    return out


def _in(module: str, *roots: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in roots)


def _core_files() -> list[Path]:
    drivers = REPO / "scheduler" / "drivers"
    return [p for p in _modules("scheduler") if drivers not in p.parents]


RULES = {
    "contracts": (
        lambda: _modules("scheduler/contracts"),
        lambda m: (
            _in(m, "scheduler", "forecasts", "clusters") and not _in(m, "scheduler.contracts")
        ),
    ),
    "forecasts": (
        lambda: _modules("forecasts"),
        lambda m: (
            _in(m, "ray", "grpc", "clusters")
            or (_in(m, "scheduler") and not _in(m, "scheduler.contracts"))
        ),
    ),
    "core": (
        _core_files,
        lambda m: _in(
            m, "ray", "grpc", "clusters", "scheduler.drivers", "typer", "rich", "prometheus_client"
        ),
    ),
    "clusters": (
        lambda: _modules("clusters"),
        lambda m: (
            _in(m, "pvlib", "windpowerlib", "forecasts", "grpc")
            or (_in(m, "scheduler") and not _in(m, "scheduler.contracts"))
        ),
    ),
}


@pytest.mark.parametrize("room", list(RULES))
def test_each_package_imports_only_what_its_room_allows(room):
    files, forbidden = RULES[room]
    wrong = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in files()
        for module, _ in _imports(path)
        if forbidden(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_private_names_of_another():
    wrong = []
    for package in ("scheduler", "forecasts", "clusters"):
        for path in _modules(package):
            if "/pb/" in path.as_posix():  # generated gRPC stubs
                continue
            for module, names in _imports(path):
                if not _in(module, "scheduler", "forecasts", "clusters"):
                    continue
                private = [n for n in names if n.startswith("_") and n != "__version__"]
                if private or any(part.startswith("_") for part in module.split(".")):
                    wrong.append(f"{path.relative_to(REPO)}: from {module} import {names}")
    assert not wrong, "\n".join(wrong)
