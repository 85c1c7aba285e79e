"""Match two real photographs end to end and score the result against ground truth.

    python -m gluefactory.demo --conf aliked+lightglue-official [--images A B] [key=value ...]

Without ``--images`` it uses the Middlebury 2014 *Motorcycle* stereo pair bundled with
scikit-image (real photographs, known calibration and relative pose): it extracts and
matches features with the configured pipeline, estimates the relative pose with the
configured robust estimator and reports the pose error, the epipolar precision of the
matches and timings. A figure of the matches is written to
``<outputs>/demo/<conf>/matches.png``. This is a smoke test of the whole stack on real
data, not a benchmark: one pair says little about a method.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from . import settings
from .eval.metrics import epipolar_precision, pose_error
from .geometry.epipolar import T_to_E, sym_epipolar_distance
from .geometry.wrappers import Camera, Pose
from .models import get_model
from .robust_estimators import load_estimator
from .utils.cli import add_conf_args, conf_from_args, main_wrapper
from .utils.conf import ConfigError
from .utils.image import ImagePreprocessor, numpy_image_to_torch, read_image
from .visualization import viz2d

DEFAULT_CONF = {
    "model": {},
    "preprocessing": {"resize": None, "side": "long"},
    "estimator": {"name": "poselib", "ransac_th": 1.0},
}


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


def run(conf, images: list[Path] | None, out_dir: Path) -> dict:
    torch.set_grad_enabled(False)
    if images:
        pair = {
            "images": [numpy_image_to_torch(read_image(p)) for p in images],
            "name": "custom",
        }
    else:
        pair = middlebury_motorcycle()
    prep = ImagePreprocessor(conf.preprocessing)
    views = [prep(img) for img in pair["images"]]
    model_conf = conf.model
    if model_conf.get("name") is None:
        raise ConfigError(
            "The config has no model.name (e.g. two_view_pipeline): pass --conf NAME."
        )
    model = get_model(model_conf.name)(model_conf).eval()
    data = {
        f"view{i}": {k: v[None] for k, v in v_.items()} for i, v_ in enumerate(views)
    }
    model(data)  # warm-up (lazy initialisation, weights loading)
    t0 = time.perf_counter()
    pred = model(data)
    elapsed = time.perf_counter() - t0

    m0 = pred["matches0"][0]
    valid = m0 > -1
    # back to the original image's pixels: x_original = x_resized / scale
    k0 = pred["keypoints0"][0] / views[0]["scales"]
    k1 = pred["keypoints1"][0] / views[1]["scales"]
    mk0, mk1 = k0[valid], k1[m0[valid]]
    results = {
        "pair": pair["name"],
        "num_keypoints": (len(k0) + len(k1)) / 2,
        "num_matches": int(valid.sum()),
        "time_ms (extract+match, 2 images)": 1000 * elapsed,
    }
    if "cameras" in pair:
        cam0, cam1, T = pair["cameras"][0], pair["cameras"][1], pair["T_0to1"]
        est = load_estimator("relative_pose", conf.estimator)(
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
        colors = ["lime" if e < 1e-3 else "red" for e in d.tolist()]  # right / wrong
    else:
        colors = None
    titles = [f"{len(k0)} keypoints", f"{int(valid.sum())} matches"]
    fig, axes = viz2d.plot_images([views[0]["image"], views[1]["image"]], titles=titles)
    kv0 = pred["keypoints0"][0][valid]
    kv1 = pred["keypoints1"][0][m0[valid]]
    viz2d.plot_matches(fig, axes, kv0, kv1, color=colors, lw=0.4, ps=2, alpha=0.6)
    results["figure"] = str(viz2d.save(fig, out_dir / "matches.png"))
    return results


@main_wrapper
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m gluefactory.demo",
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
    conf = OmegaConf.merge(DEFAULT_CONF, conf_from_args(args))
    tag = Path(str(args.conf)).stem
    results = run(conf, args.images, settings.outputs_root() / "demo" / tag)
    width = max(len(k) for k in results)
    print(f"\n{'metric':<{width}}  value")
    for k, v in results.items():
        print(
            f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}"
        )
    return results


if __name__ == "__main__":
    main()
