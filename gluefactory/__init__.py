"""Glue Factory: train and evaluate local feature detectors, descriptors and matchers."""

import logging

__version__ = "0.1.0"

logger = logging.getLogger("gluefactory")
logger.addHandler(logging.NullHandler())


def __getattr__(name: str):
    """``gluefactory.load_experiment`` as upstream, imported on first use."""
    if name in ("load_experiment", "experiment_conf"):
        from . import experiments

        return getattr(experiments, name)
    raise AttributeError(f"module 'gluefactory' has no attribute {name!r}")
