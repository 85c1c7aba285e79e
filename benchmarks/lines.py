"""LSD backends compared on the same photographs, and the time of the line stages.

    python -m benchmarks.lines [--repeats 5] [--threads 2]

1. **Backends.** On each 640 x 480 photograph (scikit-image's astronaut, coffee,
   chelsea, rocket, camera, brick): the number of segments of pytlsd and of OpenCV
   (``lines.lsd`` defaults: ``min_length`` 15) and the share of each backend's
   segments that the other finds within 1 px, i.e. a segment of the other backend
   whose endpoints are both within 1 px of this one's (either orientation), and the
   share on the same support line: matched by the line ground-truth rule with the
   identity homography and a 1 px perpendicular distance (overlap above 50 % both
   ways, one-to-one).
2. **Time** (median of ``--repeats`` calls, wall-clock and CPU milliseconds, 640 x 480): ``lines.lsd``
   with each backend (one image; a batch of 4 in threads), ``lines.wireframe`` with
   ALIKED-n16 and XFeat (official weights; 1024 keypoints, 250 lines) and without its
   point extractor (the wireframe's own work: merging, dropping, describing), and the
   line ground truth of one pair (250 x 250 lines, 50 samples) from a homography and
   from depth.
3. **GlueStick** (``--part gluestick``): the full matcher's forward (9 layers, 256-D,
   random weights, which cost the same as the official ones) at 1000 points and 250
   lines per image, beside a 9-layer LightGlue on the same points; and one pair of the
   ``xfeat+lsd+gluestick`` pipeline (astronaut and a warp, XFeat 1000 points + 250 LSD
   lines, GlueStick with 64-D input) split into LSD, the wireframe (XFeat, LSD,
   junctions, description) and the matcher.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from gluefactory.geometry.gt_generation import (
    gt_line_matches_from_homography,
    gt_line_matches_from_pose_depth,
)
from gluefactory.geometry.homography import warp_lines
from gluefactory.geometry.wrappers import Camera, Pose
from gluefactory.models import get_model
from gluefactory.models.lines.lsd import has_pytlsd

from .common import time_alternately

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick")


def photo(name: str) -> torch.Tensor:
    import skimage.data

    img = torch.from_numpy(getattr(skimage.data, name)())
    img = img[..., None].expand(-1, -1, 3) if img.dim() == 2 else img[..., :3]
    img = img.permute(2, 0, 1)[None].float() / 255
    return F.interpolate(img, (480, 640), mode="area").clamp(0, 1)


def matched_share(a: torch.Tensor, b: torch.Tensor, tol: float = 1.0) -> float:
    """Share of segments of ``a`` (L, 2, 2) with a segment of ``b`` within ``tol`` px
    at both endpoints (either orientation)."""
    if len(a) == 0:
        return float("nan")
    if len(b) == 0:
        return 0.0
    same = torch.maximum(torch.cdist(a[:, 0], b[:, 0]), torch.cdist(a[:, 1], b[:, 1]))
    swap = torch.maximum(torch.cdist(a[:, 0], b[:, 1]), torch.cdist(a[:, 1], b[:, 0]))
    return (torch.minimum(same, swap).min(1).values <= tol).double().mean().item()


def median_ms(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU milliseconds per call."""
    t = time_alternately({"f": fn}, repeats)["f"]
    return 1e3 * t.median, 1e3 * t.cpu


def same_line_share(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Shares of ``a`` and of ``b`` matched one-to-one on the same support line."""
    size = torch.tensor([640.0, 480.0], dtype=a.dtype)
    gt = gt_line_matches_from_homography(
        a[None], b[None], torch.eye(3, dtype=a.dtype)[None], size, size,
        th_dist=1.0, th_overlap=0.5,
    )  # fmt: skip
    return tuple((gt[f"line_matches{i}"] >= 0).double().mean().item() for i in (0, 1))


def compare_backends() -> None:
    print(
        "| photo | pytlsd | OpenCV | endpoints within 1 px: pytlsd / OpenCV | "
        "same line: pytlsd / OpenCV |"
    )
    print("|---|---|---|---|---|")
    models = {b: get_model("lines.lsd")({"backend": b}) for b in ("pytlsd", "opencv")}
    for name in PHOTOS:
        img = photo(name)
        lines = {}
        for b, m in models.items():
            pred = m({"image": img})
            lines[b] = pred["lines"][0][pred["line_mask"][0]].double()
        p, o = lines["pytlsd"], lines["opencv"]
        same_p, same_o = same_line_share(p, o)
        print(
            f"| {name} | {len(p)} | {len(o)} | {matched_share(p, o):.0%} / "
            f"{matched_share(o, p):.0%} | {same_p:.0%} / {same_o:.0%} |"
        )


def timings(repeats: int) -> None:
    img = photo("astronaut")
    batch = torch.cat([photo(n) for n in PHOTOS[:4]])
    rows = []
    for b in ("pytlsd", "opencv"):
        m = get_model("lines.lsd")({"backend": b})
        rows.append(
            (
                f"lines.lsd {b}, 1 image",
                median_ms(lambda m=m: m({"image": img}), repeats),
            )
        )
        rows.append(
            (
                f"lines.lsd {b}, 4 images",
                median_ms(lambda m=m: m({"image": batch}), repeats),
            )
        )
    lsd = {"name": "lines.lsd", "max_num_lines": 250}
    for name in ("aliked", "xfeat"):
        point = {"name": f"extractors.{name}", "max_num_keypoints": 1024}
        if name == "aliked":
            point["detection_threshold"] = 0.0
        wf = get_model("lines.wireframe")(
            {"point_extractor": point, "line_extractor": lsd}
        ).eval()
        pe = wf.point_extractor
        with torch.inference_mode():
            full = median_ms(lambda wf=wf: wf({"image": img}), repeats)
            points = median_ms(lambda pe=pe: pe.extract_dense({"image": img}), repeats)
            lines = median_ms(lambda wf=wf: wf.line_extractor({"image": img}), repeats)
        rows.append((f"lines.wireframe {name} + LSD (pytlsd)", full))
        rows.append((f"  of which {name} alone", points))
        rows.append(("  of which LSD alone", lines))
    # line ground truth of a pair with 250 lines each
    pred = get_model("lines.lsd")({"max_num_lines": 250, "force_num_lines": True})(
        {"image": img}
    )
    lines0, mask0 = pred["lines"], pred["line_mask"]
    H = torch.tensor([[[0.9, 0.05, 30.0], [-0.05, 0.95, 20.0], [1e-4, 0, 1.0]]])
    lines1 = warp_lines(lines0, H).flip(1)
    size = torch.tensor([640.0, 480.0])
    rows.append(
        (
            "line GT from a homography, 250 x 250 lines",
            median_ms(
                lambda: gt_line_matches_from_homography(
                    lines0, lines1, H, size, size, mask0, mask0.flip(1)
                ),
                repeats,
            ),
        )
    )
    K = torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    cam = Camera.from_calibration_matrix(K, (640, 480))[None]
    T = Pose.from_Rt(torch.eye(3), torch.tensor([-0.1, 0, 0.0]))[None]
    depth = torch.full((1, 480, 640), 2.0)
    shifted = lines0 - torch.tensor([25.0, 0])
    rows.append(
        (
            "line GT from depth and pose, 250 x 250 lines",
            median_ms(
                lambda: gt_line_matches_from_pose_depth(
                    lines0, shifted, cam, cam, T, depth, depth, mask0=mask0, mask1=mask0
                ),
                repeats,
            ),
        )
    )
    print("| stage (640 x 480) | wall ms | CPU ms |")
    print("|---|---|---|")
    for name, (wall, cpu) in rows:
        print(f"| {name} | {wall:.0f} | {cpu:.0f} |")


def random_wireframes(n: int, num_lines: int, dim: int) -> dict:
    """Two views of ``n`` random points, ``num_lines`` lines between them (640 x 480)."""
    torch.manual_seed(0)
    data = {}
    for i in (0, 1):
        k = torch.rand(1, n, 2) * torch.tensor([640.0, 480.0])
        junc = torch.randint(0, 2 * num_lines, (1, num_lines, 2))
        data.update({
            f"keypoints{i}": k, f"descriptors{i}": torch.randn(1, n, dim),
            f"keypoint_scores{i}": torch.rand(1, n), f"line_scores{i}": torch.rand(1, num_lines),
            f"lines{i}": k[0, junc.flatten()].view(1, num_lines, 2, 2),
            f"lines_junc_idx{i}": junc,
            f"view{i}": {"image_size": torch.tensor([[640.0, 480.0]])},
        })  # fmt: skip
    return data


def gluestick_timings(repeats: int) -> None:
    """Part 3 of the module docstring."""
    from gluefactory.geometry.homography import warp_image

    rows = []
    data = random_wireframes(1000, 250, 256)
    gs = get_model("matchers.gluestick")({}).eval()
    lg = get_model("matchers.lightglue")(
        {"weights": None, "input_dim": 256, "depth_confidence": -1, "width_confidence": -1}
    ).eval()  # fmt: skip
    with torch.inference_mode():
        rows.append(("GlueStick 9 x 256-D, 1000 points + 250 lines",
                     median_ms(lambda: gs(data), repeats)))  # fmt: skip
        rows.append(("LightGlue 9 x 256-D, 1000 points (no adaptivity)",
                     median_ms(lambda: lg(data), repeats)))  # fmt: skip
    img = photo("astronaut")
    H = torch.tensor([[[0.9, 0.05, 30.0], [-0.05, 0.95, 20.0], [1e-4, 0, 1.0]]])
    img1 = warp_image(img, H, (640, 480))
    lsd = {"name": "lines.lsd", "max_num_lines": 250, "min_length": 15}
    point = {"name": "extractors.xfeat", "max_num_keypoints": 1000, "detection_threshold": 0.0}
    wf = get_model("lines.wireframe")({"point_extractor": point, "line_extractor": lsd,
                                       "wireframe_params": {"nms_radius": 3}}).eval()  # fmt: skip
    matcher = get_model("matchers.gluestick")({"input_dim": 64}).eval()
    with torch.inference_mode():
        feats = [wf({"image": x}) for x in (img, img1)]
        pair = {f"{k}{i}": v for i, f in enumerate(feats) for k, v in f.items()}
        for i, x in enumerate((img, img1)):
            pair[f"view{i}"] = {"image_size": torch.tensor([[640.0, 480.0]])}
        rows.append((f"LSD, 2 images ({feats[0]['lines'].shape[1]} + "
                     f"{feats[1]['lines'].shape[1]} lines)",
                     median_ms(lambda: [wf.line_extractor({"image": x}) for x in (img, img1)],
                               repeats)))  # fmt: skip
        rows.append((f"wireframe (XFeat + LSD + junctions), 2 images "
                     f"({feats[0]['keypoints'].shape[1]} + {feats[1]['keypoints'].shape[1]} points)",
                     median_ms(lambda: [wf({"image": x}) for x in (img, img1)], repeats)))  # fmt: skip
        rows.append(("GlueStick 9 x 256-D on that pair", median_ms(lambda: matcher(pair), repeats)))
    print("| GlueStick (forward, batch 1, float32) | wall ms | CPU ms |")
    print("|---|---|---|")
    for name, (wall, cpu) in rows:
        print(f"| {name} | {wall:.0f} | {cpu:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--part", choices=["all", "backends", "time", "gluestick"],
                        default="all")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not has_pytlsd():
        raise SystemExit(
            "benchmarks/lines.py compares pytlsd with OpenCV: pip install pytlsd"
        )
    if args.part in ("all", "backends"):
        compare_backends()
        print()
    if args.part in ("all", "time"):
        timings(args.repeats)
        print()
    if args.part in ("all", "gluestick"):
        gluestick_timings(args.repeats)


if __name__ == "__main__":
    main()
