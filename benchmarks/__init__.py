"""The benchmark suite: ``python -m benchmarks`` runs every ``bench_*.py`` and writes the report."""
