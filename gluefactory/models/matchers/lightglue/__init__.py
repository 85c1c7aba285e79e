"""LightGlue: local feature matching at light speed (Lindenberger et al., ICCV 2023).

One model for training and for inference (official weights included), registered as
``matchers.lightglue``::

    from gluefactory.models.matchers.lightglue import LightGlue
    matcher = LightGlue({"features": "aliked", "depth_confidence": 0.95})
    LightGlue.requires({"features": "sift"})  # what the extractor must provide

Modules:

- :mod:`.model`: the model (forward pass of the paper, loss) and its config;
- :mod:`.layers`: positional encoding, attention blocks, assignment and confidence heads;
- :mod:`.adaptive`: early exit and pruning, and their per-pair bookkeeping in batches;
- :mod:`.presets`: per-feature architectures, config range checks, official weights;
- :mod:`.fast`: how it runs fast (cached derived weights, folded projections, fused
  attention); nothing there changes the results.

Batches: pairs may have different keypoint counts, padded and flagged with
``keypoint_mask{0,1}`` (True = real point). Padded points are masked keys in every
attention, excluded from the assignment softmaxes and never matched; early exit is
decided per pair and pruning removes the points of each pair, so every pair of a batch
gets the matches it gets alone. The loss and metrics ignore padded points.

Keypoints are in the library convention (:mod:`gluefactory.geometry.coordinates`) and
normalised as (k - size / 2) / (max(size) / 2), size = (w, h) of ``view{i}.image_size``.
"""

from __future__ import annotations

from .layers import normalize_keypoints
from .model import LightGlue
from .presets import ARCH_KEYS, FEATURES

#: the registry's entry for ``matchers.lightglue`` (the class lives in .model)
__main_model__ = LightGlue

__all__ = ["ARCH_KEYS", "FEATURES", "LightGlue", "normalize_keypoints"]
