"""Benchmarks: each ``bench_*.py`` module has a ``main()`` that prints a comparison table."""
