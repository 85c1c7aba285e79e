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
- :meth:`describe`: what the extractor outputs (descriptor size, scales, orientations,
  lines), from the config alone, so that a pipeline can check its
  matcher before any download;
- :meth:`extract_dense`: the outputs plus :class:`DenseDescriptors`, descriptors at any
  point of the images, computed exactly as the extractor computes its own (the
  ``describe`` function each extractor hands to :meth:`batch`). The wireframe samples
  its junction descriptors there.

Subclasses set the class attributes below, implement :meth:`_build` (layers and
weights) and :meth:`_extract` (the converted image -> outputs, usually through
:meth:`batch`) and the classmethod :meth:`_describe`.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...utils.data import check_data_keys
from ...utils.errors import ConfigError
from ...utils.image import check_image_tensor, rgb_to_grayscale
from ...weights import load_weights
from ..base_model import BaseModel, load_state_dict_strict
from ..utils.keypoints import (
    batch_features,
    check_extractor_conf,
    resolve_threshold,
)

logger = logging.getLogger(__name__)

#: per-image description function(s) that :meth:`BaseExtractor.batch` records while
#: :meth:`BaseExtractor.extract_dense` runs (a context variable: thread-safe)
_DESCRIBERS: ContextVar[list | None] = ContextVar(
    "gluefactory_describers", default=None
)


@dataclass(frozen=True)
class DenseDescriptors:
    """Descriptors anywhere in the images of one forward pass of an extractor.

    ``describe(i, keypoints (N, 2)) -> {"descriptors": (N, D), ...}`` is the
    extractor's own description of image ``i`` (its feature maps, its interpolation,
    its normalisation), so a point sampled here gets the descriptor the extractor
    would give a keypoint detected there.
    """

    describe: Callable[[int, torch.Tensor], dict]
    batch_size: int

    def sample_one(self, i: int, keypoints: torch.Tensor) -> torch.Tensor:
        """Descriptors (N, D) of image ``i`` at ``keypoints`` (N, 2) (library pixels)."""
        if (
            len(keypoints) == 0
        ):  # not every model handles N = 0: describe one, keep none
            return self.describe(i, keypoints.new_ones((1, 2)))["descriptors"][:0]
        return self.describe(i, keypoints)["descriptors"]

    def sample(self, keypoints: torch.Tensor) -> torch.Tensor:
        """Descriptors (B, N, D) at ``keypoints`` (B, N, 2) (library pixels)."""
        if keypoints.dim() != 3 or len(keypoints) != self.batch_size:
            raise ValueError(
                f"DenseDescriptors.sample expects keypoints ({self.batch_size}, N, 2), "
                f"got {tuple(keypoints.shape)}."
            )
        return torch.stack([self.sample_one(i, k) for i, k in enumerate(keypoints)])


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
        ``dict(descriptor_dim=int, scales=bool, orientations=bool)``; extractors of
        lines add ``lines=True`` (docs/extractors.md)."""
        return cls._describe(cls.build_conf(conf))

    @classmethod
    def has_dense_descriptors(cls, conf: Any = None) -> bool:
        """Whether :meth:`extract_dense` works for ``conf`` (from the config alone)."""
        return cls._has_dense_descriptors(cls.build_conf(conf))

    @classmethod
    def _has_dense_descriptors(cls, conf) -> bool:
        """True when the extractor describes its keypoints with a function of their
        positions (given to :meth:`batch`); False for descriptors of detections only."""
        return True

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

    def extract_dense(self, data: dict) -> tuple[dict, DenseDescriptors]:
        """The outputs of ``self(data)`` and the :class:`DenseDescriptors` of the same
        pass (one network run). A ConfigError for an extractor whose descriptors exist
        only at its detections (:meth:`has_dense_descriptors` is False)."""
        name = type(self).__name__
        if not self._has_dense_descriptors(self.conf):
            raise ConfigError(
                f"{name} with this configuration has no dense descriptors (its "
                "descriptors are computed at its own detections only); choose another "
                "extractor or configuration."
            )
        check_data_keys(name, self.required_data_keys, data)
        sink: list = []
        token = _DESCRIBERS.set(sink)
        try:
            pred = self._forward(data)
        finally:
            _DESCRIBERS.reset(token)
        if len(sink) != 1:
            raise RuntimeError(f"{name}: batch() got no describe function.")
        return pred, DenseDescriptors(sink[0], len(pred["keypoints"]))

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
        (:func:`~gluefactory.models.utils.keypoints.batch_features`). ``describe``
        is also what :meth:`extract_dense` returns."""
        sink = _DESCRIBERS.get()
        if sink is not None and describe is not None:
            sink.append(describe)
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
