"""Keypoint utilities shared by the extractors, by concern:

- :mod:`.selection`: NMS (SuperPoint's max-pool NMS, strict local maxima), borders,
  top-k, SuperPoint-style selection on a score map;
- :mod:`.padding`: ``force_num_keypoints`` padding, the batched output every extractor
  returns (:func:`batch_features`, with ``keypoint_mask``) and :func:`stack_features`;
- :mod:`.sampling`: descriptors sampled from dense maps at keypoints;
- :mod:`.config`: checks of the common configuration keys, the threshold rule;
- :mod:`.channels`: the input shape check and channel conversion.

Everything is re-exported here (``from gluefactory.models.utils.keypoints import
batch_features`` keeps working). Keypoints are (x, y) in the library convention of
:mod:`gluefactory.geometry.coordinates`: the centre of pixel (i, j) is (i + 0.5, j + 0.5).
"""

from .channels import RGB_TO_GREY, check_image, to_grey, to_rgb
from .config import check_extractor_conf, check_range, resolve_threshold
from .padding import (
    batch_features,
    pad_keypoints,
    random_keypoints,
    stack_features,
)
from .sampling import sample_descriptors
from .selection import (
    border_mask,
    remove_borders,
    select_keypoints,
    simple_nms,
    simple_nms_mask,
    strict_local_maxima,
    top_k_keypoints,
)

__all__ = [
    "RGB_TO_GREY",
    "batch_features",
    "border_mask",
    "check_extractor_conf",
    "check_image",
    "check_range",
    "pad_keypoints",
    "random_keypoints",
    "remove_borders",
    "resolve_threshold",
    "sample_descriptors",
    "select_keypoints",
    "simple_nms",
    "simple_nms_mask",
    "strict_local_maxima",
    "stack_features",
    "to_grey",
    "to_rgb",
    "top_k_keypoints",
]
