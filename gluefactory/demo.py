"""Match two real photographs end to end and score the result against ground truth.

    python -m gluefactory.demo --conf aliked+lightglue-official [--images A B] [key=value ...]

Without ``--images`` it uses the Middlebury 2014 *Motorcycle* stereo pair bundled with
scikit-image (real photographs, known calibration and relative pose): it extracts and
matches features with the configured pipeline, estimates the relative pose with the
configured robust estimator and reports the pose error, the epipolar precision of the
matches and timings. A figure of the matches is written to
``<outputs>/demo/<conf>/matches.png`` (green: consistent with the true geometry, red:
not; with ``--images`` there is no ground truth and all lines are blue). Config mistakes
(unknown keys, a pipeline without extractor or matcher) are reported before any image
is read or weights are loaded. This is a smoke test of the whole stack on real
data, not a benchmark: one pair says little about a method.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig

from . import settings
from .eval.metrics import epipolar_precision, pose_error
from .geometry.epipolar import T_to_E, sym_epipolar_distance
from .geometry.wrappers import Camera, Pose
from .models import get_model
from .robust_estimators import load_estimator
from .utils.cli import (
    add_conf_args,
    conf_from_args,
    conf_section,
    main_wrapper,
    merge_cli_conf,
)
from .utils.conf import as_plain
from .utils.errors import ConfigError, InputError
from .utils.image import ImagePreprocessor, numpy_image_to_torch, read_image
from .visualization import viz2d

#: the demo's own config; ``model`` and ``estimator`` are open sections, validated by the
#: pipeline and the estimator they configure; every other key is checked here.
DEFAULT_CONF = {
    "model": {},
    "preprocessing": dict(ImagePreprocessor.default_conf),
    "estimator": {"name": "poselib", "ransac_th": 1.0},
    "benchmarks": {},  # the shared configs' benchmark sections (gluefactory.eval): unused
}
PROG = "python -m gluefactory.demo"

#: a match whose symmetric epipolar error (normalised coordinates) is below this is correct
EPI_TH = 1e-3


def middlebury_motorcycle() -> dict:
    """The Middlebury Motorcycle pair with its calibration (skimage's docstring).

    The principal points are given with pixel centres at integers; we add 0.5 to use the
    library convention. The right camera is the left one moved by the baseline along +x.
    """
    from skimage.data import stereo_motorcycle

    left, right, _ = stereo_motorcycle()
    f, cx, cy, doffs, baseline = 994.978, 311.193, 254.877, 31.086, 193.001
    h, w = left.shape[:2]
    K0 = torch.tensor([[f, 0, cx + 0.5], [0, f, cy + 0.5], [0, 0, 1.0]])
    K1 = K0.clone()
    K1[0, 2] += doffs
    T_0to1 = Pose.from_Rt(torch.eye(3), torch.tensor([-baseline / 1000.0, 0.0, 0.0]))
    return {
        "images": [numpy_image_to_torch(left), numpy_image_to_torch(right)],
        "cameras": [Camera.from_calibration_matrix(K, (w, h)) for K in (K0, K1)],
        "T_0to1": T_0to1,
        "name": "middlebury-motorcycle",
    }


def check_model_conf(model_conf) -> None:
    """The demo extracts and matches: it needs a pipeline with an extractor and a matcher.

    Checked before any image is read or weights are loaded, so that a config without one
    (``model.matcher=null``) fails with a message instead of a missing output later.
    """
    if model_conf is None or model_conf.get("name") is None:
        raise ConfigError(
            "The config has no model.name: the demo needs a two_view_pipeline with an "
            "extractor and a matcher (pass e.g. --conf aliked+lightglue-official)."
        )
    examples = {"extractor": "extractors.aliked", "matcher": "matchers.lightglue"}
    for part, example in examples.items():
        sub = model_conf.get(part)
        hint = f"e.g. model.{part}.name={example}, or --conf aliked+lightglue-official"
        if sub is not None and not isinstance(sub, (Mapping, DictConfig)):
            raise ConfigError(
                f"model.{part} must be a section with a name ({hint}), got {sub!r}."
            )
        if sub is None or sub.get("name") is None:
            got = "null" if sub is None else "a section without a name"
            raise ConfigError(
                f"The demo extracts and matches features, so it needs model.{part}.name "
                f"({hint}); model.{part} is {got}."
            )
    with conf_section("model"):
        cls = get_model(model_conf.name)
        # validate the pipeline's own keys before building it (and loading weights)
        if hasattr(cls, "build_conf"):
            cls.build_conf(model_conf)


def num_real_keypoints(pred: dict, i: int) -> int:
    """Keypoints of view ``i``, without padding (``keypoint_mask{i}``, B x N, if any)."""
    mask = pred.get(f"keypoint_mask{i}")
    return int(mask[0].sum()) if mask is not None else len(pred[f"keypoints{i}"][0])


def load_pair(images: list[Path] | None) -> dict:
    """Two user images (no ground truth) or the bundled Middlebury pair (with GT)."""
    if images:
        a, b = (Path(p).expanduser().resolve() for p in images)
        if a == b:
            raise InputError(
                f"--images: {images[0]} and {images[1]} are the same file; an image "
                "matched with itself has no baseline. Give two different images."
            )
        return {
            "images": [numpy_image_to_torch(read_image(p)) for p in images],
            "name": "custom",
        }
    return middlebury_motorcycle()


def check_image_sizes(model, views: list[dict], images: list[Path] | None) -> None:
    """An image too small for the extractor after preprocessing is an
    :class:`InputError` naming its file (the extractor's own check cannot)."""
    extractor = getattr(model, "extractor", None)
    min_size = getattr(extractor, "min_image_size", None)
    if not min_size:
        return
    for i, view in enumerate(views):
        h, w = view["image"].shape[-2:]
        if min(h, w) < min_size:
            name = images[i] if images else f"the bundled image {i}"
            raise InputError(
                f"{name}: after preprocessing the image is {w}x{h} px (WxH), smaller "
                f"than the {min_size} px {type(extractor).__name__} needs on each side; "
                "use a larger image or a larger preprocessing.resize."
            )


def run(conf, images: list[Path] | None, out_dir: Path) -> dict:
    """Extract, match, estimate the pose (if GT is known) and draw the matches.

    ``conf`` is the demo's merged config (see :data:`DEFAULT_CONF`). Everything the user
    can get wrong in it is checked before images are read or weights loaded. Autograd is
    off inside this call only (the caller's grad mode is unchanged).
    """
    with conf_section("preprocessing"):
        prep = ImagePreprocessor(conf.preprocessing)
    if not isinstance(conf.estimator, DictConfig) or conf.estimator.get("name") is None:
        raise ConfigError(
            "The demo estimates the relative pose: it needs estimator.name (e.g. "
            f"estimator.name=poselib), got estimator={as_plain(conf.estimator)!r}."
        )
    with conf_section("estimator"):  # built even without GT: its typos are errors too
        estimator = load_estimator("relative_pose", conf.estimator)
    check_model_conf(conf.model)
    pair = load_pair(images)
    views = [prep(img) for img in pair["images"]]
    with torch.no_grad(), conf_section("model"):
        model = get_model(conf.model.name)(conf.model).eval()
        check_image_sizes(model, views, images)
        data = {
            f"view{i}": {k: v[None] for k, v in v_.items()}
            for i, v_ in enumerate(views)
        }
        model(data)  # warm-up (lazy initialisation, weights loading)
        t0 = time.perf_counter()
        pred = model(data)
        elapsed = time.perf_counter() - t0
    if "matches0" not in pred:
        raise ConfigError(
            f"model {conf.model.name} returned no matches0 (outputs: "
            f"{', '.join(sorted(pred))}): the demo needs a pipeline whose matcher "
            "outputs matches."
        )

    m0 = pred["matches0"][0]
    valid = m0 > -1
    # back to the original image's pixels: x_original = x_resized / scale
    k0 = pred["keypoints0"][0] / views[0]["scales"]
    k1 = pred["keypoints1"][0] / views[1]["scales"]
    mk0, mk1 = k0[valid], k1[m0[valid]]
    n0, n1 = (num_real_keypoints(pred, i) for i in (0, 1))
    nm = int(valid.sum())
    results = {
        "pair": pair["name"],
        "num_keypoints0": n0,
        "num_keypoints1": n1,
        "num_matches": nm,
        "time_ms (extract+match, 2 images)": 1000 * elapsed,
    }
    title = f"{pair['name']}: {nm} matches"
    if "cameras" in pair:
        cam0, cam1, T = pair["cameras"][0], pair["cameras"][1], pair["T_0to1"]
        est = estimator(
            {"m_kpts0": mk0, "m_kpts1": mk1, "camera0": cam0, "camera1": cam1}
        )
        if est["success"]:
            M = est["M_0to1"]
            results["pose_error_deg"] = pose_error(T, M.R, M.t)
            results["num_inliers"] = int(est["inliers"].sum())
        else:
            results["pose_error_deg"] = float("inf")
            results["num_inliers"] = 0
        results.update(epipolar_precision(mk0, mk1, T, cam0, cam1))
        d = sym_epipolar_distance(cam0.image2cam(mk0), cam1.image2cam(mk1), T_to_E(T))
        correct = (d < EPI_TH).tolist()
        colors = [viz2d.CORRECT if c else viz2d.WRONG for c in correct]
        title += (
            f", {sum(correct)} correct (green: epipolar error < {EPI_TH:g}, red: not)"
        )
    else:
        colors = None  # one neutral colour: correctness is unknown
        title += " (no ground truth: correctness unknown)"
    titles = [f"image 0: {n0} keypoints", f"image 1: {n1} keypoints"]
    fig, axes = viz2d.plot_images(
        [views[0]["image"], views[1]["image"]], titles=titles, title=title
    )
    kv0 = pred["keypoints0"][0][valid]
    kv1 = pred["keypoints1"][0][m0[valid]]
    viz2d.plot_matches(fig, axes, kv0, kv1, color=colors)
    results["figure"] = str(viz2d.save(fig, out_dir / "matches.png"))
    return results


def format_value(key: str, value) -> str:
    """Plain numbers for the results table: times in ms or s, never ``2.04e+04``."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if key.startswith("time_ms"):
        return f"{value / 1000:.1f} s" if value >= 10_000 else f"{value:.1f} ms"
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.4g}"
    if "e" in text:  # very large or small: fixed point instead of scientific notation
        text = f"{value:.0f}" if abs(value) >= 1 else f"{value:.6f}"
    return text


@main_wrapper
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--images", nargs=2, type=Path, default=None, help="two image files"
    )
    add_conf_args(parser)
    args = parser.parse_intermixed_args(argv)
    if args.conf is None:
        args.conf = "aliked+lightglue-official"
    conf = merge_cli_conf(DEFAULT_CONF, conf_from_args(args), PROG)
    tag = Path(str(args.conf)).stem
    results = run(conf, args.images, settings.outputs_root() / "demo" / tag)
    labels = {k: k.replace("time_ms", "time", 1) for k in results}  # unit in the value
    width = max(len(v) for v in labels.values())
    print(f"\n{'metric':<{width}}  value")
    for k, v in results.items():
        print(f"{labels[k]:<{width}}  {format_value(k, v)}")
    return results


if __name__ == "__main__":
    main()
