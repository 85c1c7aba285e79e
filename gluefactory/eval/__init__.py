"""Benchmarks (HPatches, MegaDepth-1500, ...) and their metrics.

:mod:`gluefactory.eval.metrics` holds the metric functions and the summary rules
(documented in ``docs/metrics.md``); benchmarks are found by module name with
:func:`gluefactory.eval.base.get_benchmark`. Nothing is imported here so that importing
one benchmark does not pull in the others' dependencies.
"""
