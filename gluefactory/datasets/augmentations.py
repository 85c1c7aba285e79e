"""Photometric augmentation presets for training views: ``identity``, ``lg``, ``dark``.

Each view of a training pair is augmented independently, after it has been warped (the
geometry is never changed here, so keypoints and ground truth are unaffected).

The transforms are those of ``kornia.augmentation`` (Apache-2.0, pure PyTorch), an
optional dependency (``pip install gluefactory[augment]``); ``identity`` needs nothing.
Glue Factory used albumentations; its MIT-licensed line stopped at 2.0.8 (the project
continues as the AGPL-licensed AlbumentationsX) and 2.0 pulls opencv 5 and pydantic,
while kornia is already the library's reference dependency. Only the small composition
layer (``Compose`` with a probability, ``OneOf``) is ours, because kornia's containers
draw their choices from a generator we could not seed per item.

Determinism: :meth:`Augmentation.__call__` takes a ``seed`` and runs the transforms
inside ``torch.random.fork_rng`` seeded with it, so the same (image, seed) always gives
the same output, in any worker, without disturbing the caller's random state.

Presets (facts 4.1; probabilities as in Glue Factory, transforms as close as kornia has):

- ``lg`` (LightGlue configs; applied with probability ``p``, default 0.95):
  RandomGamma p 0.1 (gamma 0.15-0.65, brightening); darkening of the value channel p 0.1
  (brightness shift -0.39..-0.16); one of (Gaussian blur up to 9 px, motion blur 3-25 px,
  Gaussian noise (for ISONoise), JPEG compression) p 0.1; Gaussian blur p 0.1; motion
  blur p 0.1; brightness -0.4..0 with contrast x0.7..1 p 0.5; CLAHE p 0.2.
- ``dark`` (GlueStick; default p 0.75): rain p 0.2; darkening brightness/contrast p 0.5;
  one of the blurs p 0.1; RandomGamma p 0.1; one of (equalize, CLAHE, grey, sepia, value
  darkening) p 0.5.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..utils.errors import ConfigError

Transform = Callable[[torch.Tensor], torch.Tensor]  # (1, 3, H, W) -> (1, 3, H, W)


def _kornia():
    try:
        import kornia.augmentation as K
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "Photometric augmentation presets 'lg' and 'dark' need kornia: "
            "pip install 'gluefactory[augment]' (or set photometric.name=identity)."
        ) from e
    return K


@dataclass
class Maybe:
    """Apply ``transform`` with probability ``p``."""

    transform: Transform
    p: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform(x) if float(torch.rand(())) < self.p else x


@dataclass
class OneOf:
    """Apply one of ``transforms`` (uniformly chosen) with probability ``p``."""

    transforms: Sequence[Transform]
    p: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(())) >= self.p:
            return x
        i = int(torch.randint(len(self.transforms), ()))
        return self.transforms[i](x)


@dataclass
class Compose:
    """Apply every transform in order, the whole with probability ``p``."""

    transforms: Sequence[Transform]
    p: float = 1.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(())) >= self.p:
            return x
        for t in self.transforms:
            x = t(x)
        return x


def _sepia(x: torch.Tensor) -> torch.Tensor:
    from kornia.color import sepia

    return sepia(x).clamp(0, 1)


def _grey(x: torch.Tensor) -> torch.Tensor:
    from ..utils.image import rgb_to_grayscale

    return rgb_to_grayscale(x).expand_as(x).contiguous()


def _blurs(K) -> list[Transform]:
    return [
        K.RandomGaussianBlur(9, (0.5, 2.5), p=1.0),
        K.RandomMotionBlur((3, 25), angle=180.0, direction=0.0, p=1.0),
    ]


def _lg(p: float) -> Transform:
    K = _kornia()
    value_dark = K.RandomBrightness((1 - 100 / 255, 1 - 40 / 255), p=1.0)
    return Compose(
        [
            Maybe(K.RandomGamma((0.15, 0.65), p=1.0), 0.1),
            Maybe(value_dark, 0.1),
            OneOf(
                [
                    *_blurs(K),
                    K.RandomGaussianNoise(std=0.03, p=1.0),
                    K.RandomJPEG((30.0, 90.0), p=1.0),
                ],
                0.1,
            ),
            Maybe(K.RandomGaussianBlur(9, (0.5, 2.5), p=1.0), 0.1),
            Maybe(K.RandomMotionBlur((3, 25), 180.0, 0.0, p=1.0), 0.1),
            Maybe(
                Compose(
                    [
                        K.RandomBrightness((0.6, 1.0), p=1.0),
                        K.RandomContrast((0.7, 1.0), p=1.0),
                    ]
                ),
                0.5,
            ),
            Maybe(K.RandomClahe((1.0, 4.0), p=1.0), 0.2),
        ],
        p,
    )


def _dark(p: float) -> Transform:
    K = _kornia()
    return Compose(
        [
            Maybe(K.RandomRain((200, 800), (5, 20), (-3, 3), p=1.0), 0.2),
            Maybe(
                Compose(
                    [
                        K.RandomBrightness((0.5, 0.9), p=1.0),
                        K.RandomContrast((0.5, 0.9), p=1.0),
                    ]
                ),
                0.5,
            ),
            OneOf(_blurs(K), 0.1),
            Maybe(K.RandomGamma((0.15, 0.65), p=1.0), 0.1),
            OneOf(
                [
                    K.RandomEqualize(p=1.0),
                    K.RandomClahe((1.0, 4.0), p=1.0),
                    _grey,
                    _sepia,
                    K.RandomBrightness((1 - 100 / 255, 1 - 40 / 255), p=1.0),
                ],
                0.5,
            ),
        ],
        p,
    )


PRESETS: dict[str, tuple[Callable[[float], Transform] | None, float]] = {
    "identity": (None, 1.0),
    "lg": (_lg, 0.95),
    "dark": (_dark, 0.75),
}


class Augmentation:
    """A photometric preset by name; ``p`` None = the preset's default probability."""

    def __init__(self, name: str = "identity", p: float | None = None):
        if name not in PRESETS:
            raise ConfigError(
                f"Unknown photometric augmentation {name!r}; known: {', '.join(PRESETS)}."
            )
        build, default_p = PRESETS[name]
        self.name = name
        self.p = default_p if p is None else float(p)
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(f"photometric.p must be in [0, 1], got {p}.")
        self.transform = None if build is None else build(self.p)

    def __call__(self, image: torch.Tensor, seed: int) -> torch.Tensor:
        """(3, H, W) float image in [0, 1] -> augmented copy, deterministic in ``seed``."""
        if self.transform is None:
            return image
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"Expected a (3, H, W) image, got {tuple(image.shape)}.")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed) % 2**63)
            out = self.transform(image[None].float())
        return out[0].clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"Augmentation({self.name!r}, p={self.p})"
