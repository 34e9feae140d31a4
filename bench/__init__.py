"""Benchmark suite of imagecatcher (``make benchmarks``, ``make benchmarks-short``).

Not part of the installed package: run from the project root as
``python -m bench.run --mode short|full``.
"""
