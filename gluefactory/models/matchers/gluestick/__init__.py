"""GlueStick: joint point and line matching (Pautrat, Suárez et al., ICCV 2023).

Registered as ``matchers.gluestick``; it reads a wireframe (``lines.wireframe``:
points, lines and the junction index of each line endpoint)::

    from gluefactory.models.matchers.gluestick import GlueStick
    matcher = GlueStick({"weights": "gluestick-md"})  # the official checkpoint

Modules:

- :mod:`.model`: the model (forward pass of the paper, loss) and its config;
- :mod:`.layers`: encoders, attention and line layers, the dual softmax with dustbin.

The attention runs through LightGlue's fused two-image attention
(:func:`~gluefactory.models.matchers.lightglue.fast.attend_both`), and the matches and
padding masks through its helpers; the layers themselves keep SuperGlue's design
(separate q/k/v projections, BatchNorm MLPs), which the official weights need.

Batches: padded keypoints (``keypoint_mask{0,1}`` False) and lines (``line_mask{0,1}``
False, padding last) are masked keys in every attention, left out of the batch
statistics and of the line messages, and never matched.
"""

from __future__ import annotations

from .model import GlueStick

#: the registry's entry for ``matchers.gluestick`` (the class lives in .model)
__main_model__ = GlueStick

__all__ = ["GlueStick"]
