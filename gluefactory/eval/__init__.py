"""Benchmarks (HPatches, MegaDepth-1500, homographies of an image folder), their
stages and metrics.

:mod:`gluefactory.eval.stages` runs a benchmark as three functions (export, evaluate,
summarize); :mod:`gluefactory.eval.metrics` holds the metric functions and the summary
rules (documented in ``docs/metrics.md``), on the per-pair record of
:mod:`gluefactory.eval.records`; benchmarks are found by module name with
:func:`gluefactory.eval.base.get_benchmark`. Nothing is imported here so that importing
one benchmark does not pull in the others' dependencies.
"""
