"""Checks of the configuration keys every extractor shares, and the threshold rule."""

from __future__ import annotations

from numbers import Real

from ....utils.errors import ConfigError


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_extractor_conf(
    conf,
    component: str,
    min_nms_radius: int = 0,
    nms_optional: bool = False,
    threshold_max: float | None = None,
) -> int:
    """Validate the keys every extractor shares; return ``max_num_keypoints`` as an
    int, -1 meaning no limit (``None`` and values <= 0).

    Raises :class:`ConfigError` naming the component, the key and its range for: a
    non-integer ``max_num_keypoints``; a non-numeric ``detection_threshold`` (``None``
    is allowed: no threshold), or one ``>= threshold_max`` (the top of the model's
    score range: it would keep no keypoint); ``nms_radius`` below ``min_nms_radius``
    (``None`` only with ``nms_optional``); a negative or non-integer
    ``remove_borders``; ``force_num_keypoints`` or ``trainable`` not booleans;
    ``seed`` neither an integer nor null; ``force_num_keypoints`` without
    ``max_num_keypoints > 0``.
    """
    n = conf.max_num_keypoints
    if n is not None and not _is_int(n):
        raise ConfigError(
            f"{component}: max_num_keypoints must be an integer or null (no limit), "
            f"got {n!r}."
        )
    th = conf.detection_threshold
    if th is not None and (not isinstance(th, Real) or isinstance(th, bool)):
        raise ConfigError(
            f"{component}: detection_threshold must be a number or null (no "
            f"threshold), got {th!r}."
        )
    if th is not None and threshold_max is not None and th >= threshold_max:
        raise ConfigError(
            f"{component}: detection_threshold must be below {threshold_max} (scores "
            f"are at most {threshold_max}, so it would keep no keypoint), got {th!r}; "
            "-1 or null: no threshold."
        )
    r = conf.nms_radius
    if r is None and not nms_optional:
        raise ConfigError(f"{component}: nms_radius must be an integer, got None.")
    if r is not None and (not _is_int(r) or r < min_nms_radius):
        raise ConfigError(
            f"{component}: nms_radius must be an integer >= {min_nms_radius}"
            f"{' or null' if nms_optional else ''}, got {r!r}."
        )
    b = conf.remove_borders
    if not _is_int(b) or b < 0:
        raise ConfigError(
            f"{component}: remove_borders must be an integer >= 0, got {b!r}."
        )
    for key in ("force_num_keypoints", "trainable"):
        if not isinstance(conf[key], bool):
            raise ConfigError(
                f"{component}: {key} must be true or false, got {conf[key]!r}."
            )
    if conf.seed is not None and not _is_int(conf.seed):
        raise ConfigError(
            f"{component}: seed must be an integer or null, got {conf.seed!r}."
        )
    n = -1 if n is None or n <= 0 else n
    if conf.force_num_keypoints and n <= 0:
        raise ConfigError(
            f"{component}: force_num_keypoints needs max_num_keypoints > 0, got "
            f"{conf.max_num_keypoints}."
        )
    return n


def check_range(
    conf,
    key: str,
    component: str,
    low: float | None = None,
    high: float | None = None,
    integer: bool = False,
    low_open: bool = False,
    allow_none: bool = False,
) -> None:
    """Raise a :class:`ConfigError` naming ``component`` and ``key`` unless
    ``conf[key]`` is a number (an integer with ``integer``) in [low, high] (``low``
    excluded with ``low_open``; a missing bound is no bound), or None with
    ``allow_none``."""
    v = conf[key]
    if v is None and allow_none:
        return
    ok = _is_int(v) if integer else isinstance(v, Real) and not isinstance(v, bool)
    if ok:
        ok = (low is None or (v > low if low_open else v >= low)) and (
            high is None or v <= high
        )
    if not ok:
        kind = "an integer" if integer else "a number"
        rng = []
        if low is not None:
            rng.append(f"{'>' if low_open else '>='} {low}")
        if high is not None:
            rng.append(f"<= {high}")
        none = " or null" if allow_none else ""
        raise ConfigError(
            f"{component}: {key} must be {kind} {' and '.join(rng)}{none}, got {v!r}."
        )


def resolve_threshold(value: float | None, logits: bool = False) -> float | None:
    """The detection threshold to apply, or None for none (top-k regardless of score).

    ``None`` and negative values (the configs' -1) mean no threshold. On scores that
    are never negative (probabilities) 0 means none too; on ``logits`` (DISK) 0 is a
    real threshold (probability 0.5).
    """
    if value is None or value < 0 or (value == 0 and not logits):
        return None
    return float(value)
