"""The base of every local-feature extractor: what all of them share.

- the common configuration keys (``max_num_keypoints``, ``detection_threshold``,
  ``nms_radius``, ``remove_borders``, ``force_num_keypoints``, ``seed``, ``trainable``),
  range-checked with the key named before anything is built (no weights loaded for a
  bad config), and the threshold rule (-1 / None: top-k only);
- ``weights``: a registry name or path of the weights to load; ``None`` means random
  initialisation (training from scratch), logged. Each extractor's default names its
  official file;
- the input rule (:func:`gluefactory.utils.image.check_image_tensor`: (B, C, H, W) float
  in [0, 1], uint8 converted with a warning, anything else an ``InputError``; a warning
  for images below the model's ``min_image_size``) and the channel conversion
  (``input_channels``: "rgb" repeats grey, "grey" applies the library's luma
  conversion, "any" passes 1 or 3 channels);
- the batched output (:meth:`batch`: top-k, ``force_num_keypoints`` padding with
  ``keypoint_mask``, seeds);
- :meth:`describe`: what the extractor outputs (descriptor size, scales, orientations),
  from the config alone, so that a pipeline can check its matcher before any download.

Subclasses set the class attributes below, implement :meth:`_build` (layers and
weights) and :meth:`_extract` (the converted image -> outputs, usually through
:meth:`batch`) and the classmethod :meth:`_describe`.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ...utils.image import check_image_tensor, rgb_to_grayscale
from ...weights import load_weights
from ..base_model import BaseModel, load_state_dict_strict
from ..utils.keypoints import (
    batch_features,
    check_extractor_conf,
    resolve_threshold,
)

logger = logging.getLogger(__name__)


class BaseExtractor(BaseModel):
    """Base of the extractors; see the module docstring."""

    default_conf = {
        "max_num_keypoints": -1,  # -1, 0 or None: no limit
        "detection_threshold": None,  # on the model's score scale; -1 / None: top-k
        "nms_radius": 0,
        "remove_borders": 0,
        "force_num_keypoints": False,  # exactly max_num_keypoints, + keypoint_mask
        "seed": None,  # padding keypoints: None: global RNG; int: seeded per image
        "trainable": False,
    }
    required_data_keys = ["image"]

    #: what :meth:`_extract` receives: "rgb" (B, 3, H, W), "grey" (B, 1, H, W) or
    #: "any" (B, 1 or 3, H, W)
    input_channels: str = "rgb"
    #: the scores thresholded are logits (0 is then a real threshold)
    threshold_on_logits: bool = False
    #: top of the score range (a threshold there keeps nothing); None: unbounded
    threshold_max: float | None = 1.0
    min_nms_radius: int = 0
    nms_optional: bool = False  # nms_radius None allowed
    #: a smaller height or width is an InputError (the model cannot run there, or
    #: finds keypoints only in its own padding)
    min_image_size: int = 16

    # ------------------------------------------------------------------ config
    @classmethod
    def check_conf(cls, conf) -> None:
        """The common keys, then the model's own (:meth:`_check_conf`): a ConfigError
        naming the key, from ``build_conf`` (before anything is built or loaded)."""
        super().check_conf(conf)
        cls._check_common(conf)
        cls._check_conf(conf)

    @classmethod
    def _check_common(cls, conf) -> int:
        """Check the common keys; ``max_num_keypoints`` as an int (-1: no limit)."""
        return check_extractor_conf(
            conf,
            cls.__name__,
            min_nms_radius=cls.min_nms_radius,
            nms_optional=cls.nms_optional,
            threshold_max=None if cls.threshold_on_logits else cls.threshold_max,
        )

    @classmethod
    def _check_conf(cls, conf) -> None:
        """Model-specific checks (ConfigError naming the key)."""

    def _init(self, conf) -> None:
        self.max_num = self._check_common(conf)
        self.threshold = resolve_threshold(
            conf.detection_threshold, logits=self.threshold_on_logits
        )
        self._build(conf)

    @abstractmethod
    def _build(self, conf) -> None:
        """Build the layers and load the weights."""

    def load_weights_into(
        self,
        module: nn.Module,
        weights: str | None,
        transform: Callable[[Any], dict] | None = None,
    ) -> None:
        """Load registered weights (a name or a path) strictly into ``module``;
        ``None``: keep the random initialisation (training from scratch), logged.
        ``transform`` maps the loaded object to the state dict (official layouts)."""
        name = type(self).__name__
        if weights is None:
            logger.info(
                "%s: weights null: random initialisation (training from scratch).",
                name,
            )
            return
        state = load_weights(weights)
        if transform is not None:
            state = transform(state)
        load_state_dict_strict(module, state, source=f"'{weights}'")

    # ------------------------------------------------------------------ describe
    @classmethod
    def describe(cls, conf: Any = None) -> dict:
        """What the extractor outputs for ``conf``, from the config alone (no weights):
        ``dict(descriptor_dim=int, scales=bool, orientations=bool)``."""
        return cls._describe(cls.build_conf(conf))

    @classmethod
    @abstractmethod
    def _describe(cls, conf) -> dict:
        """:meth:`describe` of the merged, frozen ``conf``."""

    # ------------------------------------------------------------------ forward
    def prepare_image(self, image: Any) -> torch.Tensor:
        """Validate ``data['image']`` (the library's input rule) and convert it to
        :attr:`input_channels`."""
        name = type(self).__name__
        image = check_image_tensor(image, name, min_size=self.min_image_size)
        param = next(self.parameters(), None)
        if (
            param is not None
            and param.is_floating_point()
            and param.dtype != image.dtype
        ):
            image = image.to(param.dtype)
        return self.convert_channels(image)

    def convert_channels(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1 or 3, H, W) -> the channels :meth:`_extract` expects."""
        if self.input_channels == "rgb":
            return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
        if self.input_channels == "grey":
            return rgb_to_grayscale(image)
        return image

    def _forward(self, data: dict) -> dict:
        return self._extract(self.prepare_image(data["image"]), data)

    @abstractmethod
    def _extract(self, image: torch.Tensor, data: dict) -> dict:
        """Keypoints and descriptors of the converted ``image`` (B, C, H, W); ``data``
        holds the other inputs (``image_size``)."""

    def batch(
        self,
        keypoints: Sequence[torch.Tensor],
        scores: Sequence[torch.Tensor],
        image_hw: tuple[int, int],
        image_size: torch.Tensor | None = None,
        describe: Callable[[int, torch.Tensor], dict] | None = None,
        fields: Sequence[Mapping[str, torch.Tensor]] | None = None,
        fill: Mapping[str, float] | None = None,
    ) -> dict:
        """Per-image keypoints -> the batched output, with this extractor's
        ``max_num_keypoints``, ``force_num_keypoints`` and ``seed``
        (:func:`~gluefactory.models.utils.keypoints.batch_features`)."""
        return batch_features(
            keypoints,
            scores,
            image_hw,
            self.max_num,
            self.conf.force_num_keypoints,
            image_size,
            self.conf.seed,
            describe,
            fields,
            fill,
        )
