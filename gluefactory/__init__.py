"""Glue Factory: train and evaluate local feature detectors, descriptors and matchers."""

import logging

__version__ = "0.1.0"

logger = logging.getLogger("gluefactory")
logger.addHandler(logging.NullHandler())
