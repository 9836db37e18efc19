"""The benchmarks of diffgrm, as a package run from the repository root: ``python -m bench --help``.

``bench.common`` and ``bench.results_io`` hold what they share; ``bench.experiments`` the one-off
measurements whose tables are committed in ``bench/results``; ``bench.perf`` the performance
benchmarks; ``bench.registry`` names them all.
"""
