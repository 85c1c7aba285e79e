"""Where data, outputs and weights live.

Every root is read from an environment variable *at call time* (so tests and users can
change it without re-importing), with defaults relative to the current working directory,
never inside site-packages:

=====================  =======================  ======================================
variable               default                  used for
=====================  =======================  ======================================
``GLUEFACTORY_DATA``     ``./data``               datasets and exported features
``GLUEFACTORY_OUTPUTS``  ``./outputs``            ``training/<exp>`` and ``results/<bench>``
``GLUEFACTORY_WEIGHTS``  torch hub checkpoints    downloaded pretrained weights
=====================  =======================  ======================================
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "GLUEFACTORY_DATA"
OUTPUTS_ENV = "GLUEFACTORY_OUTPUTS"
WEIGHTS_ENV = "GLUEFACTORY_WEIGHTS"


def _from_env(var: str, default: str | Path) -> Path:
    value = os.environ.get(var)
    path = Path(value).expanduser() if value else Path(default)
    return path if path.is_absolute() else Path.cwd() / path


def data_root() -> Path:
    """Root of the datasets (``$GLUEFACTORY_DATA``, default ``./data``)."""
    return _from_env(DATA_ENV, "data")


def outputs_root() -> Path:
    """Root of training runs and results (``$GLUEFACTORY_OUTPUTS``, default ``./outputs``)."""
    return _from_env(OUTPUTS_ENV, "outputs")


def training_root() -> Path:
    """Folder of training experiments: ``<outputs>/training``."""
    return outputs_root() / "training"


def eval_root() -> Path:
    """Folder of benchmark results: ``<outputs>/results``."""
    return outputs_root() / "results"


def weights_dir() -> Path:
    """Cache of pretrained weights (``$GLUEFACTORY_WEIGHTS``, else torch hub's checkpoints)."""
    if os.environ.get(WEIGHTS_ENV):
        return _from_env(WEIGHTS_ENV, "")
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"
