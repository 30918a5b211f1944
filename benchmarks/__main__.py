"""`python -m benchmarks [NAME ...]`: run each `bench_*.py` main(), or only those named."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(names: list[str]) -> None:
    found = sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    chosen = [f"bench_{n.removeprefix('bench_')}" for n in names] or found
    unknown = sorted(set(chosen) - set(found))
    if unknown:
        sys.exit(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(found)}")
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(f"benchmarks.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
