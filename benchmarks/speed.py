"""CPU (or GPU) speed of our models next to their references, one table per ``--part``.

    python -m benchmarks.speed --part PART [PART ...] [--runs 5] [--threads 2]
        [--sizes ...] [--only ...] [--device cpu|cuda] [--batch 8] [--mp] [--output FILE]

Milliseconds, median of ``--runs`` after a warm-up call; ours and the reference called
alternately (the same machine load for both), the ratio of the minima beside that of
the medians. What each part times, on which data and with which references:
docs/benchmarks.md (``extractors``, ``lightglue``, ``gluestick``) and docs/lines.md
(``lsd``, ``lines``). Extractors whose module or weights are missing are reported
and skipped; ``lightglue`` uses random weights (flagged) without the official ones.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import time
from functools import partial

import torch

from gluefactory.models import get_model

from .common import (
    emit,
    host,
    load_average,
    photo,
    set_threads,
    table,
    time_alternately,
)

NUM_KPTS = 2048
SIZE = torch.tensor([[640.0, 480.0]])
H_WARP = torch.tensor([[[0.9, 0.05, 30.0], [-0.05, 0.95, 20.0], [1e-4, 0, 1.0]]])
VERSUS = ["ours (ms)", "reference (ms)", "ratio", "ratio of minima"]


def versus(ours, ref, runs: int, sync=lambda: None) -> tuple[list[str], tuple]:
    """Cells of :data:`VERSUS` and the timings of ``ours`` and ``ref``, timed
    alternately (no ``ref``: -)."""
    with torch.inference_mode():
        t = time_alternately({"ours": ours, "ref": ref}, runs, sync)
    o, r = t["ours"], t["ref"]
    if r is None:
        return [f"{1e3 * o.median:.1f}", "-", "-", "-"], (o, r)
    return [f"{1e3 * o.median:.1f}", f"{1e3 * r.median:.1f}", f"{o.median / r.median:.2f}",
            f"{o.min / r.min:.2f}"], (o, r)  # fmt: skip


def wall_cpu(rows: list[tuple[str, object]], runs: int, head: str) -> str:
    """Rows of (name, function) timed alone: a table of wall and CPU milliseconds."""
    out = []
    with torch.inference_mode():
        for name, fn in rows:
            t = time_alternately({"f": fn}, runs)["f"]
            out.append((name, f"{1e3 * t.median:.0f}", f"{1e3 * t.cpu:.0f}"))
            print(*out[-1], sep=" | ", file=sys.stderr, flush=True)
    return table([head, "wall ms", "CPU ms"], out)


# ----------------------------------------------------------------------- extractors
def ours(name: str, **conf):
    """Our extractor ``name`` (eval mode, fixed random weights where it has none)."""
    torch.manual_seed(0)
    return get_model(f"extractors.{name}")(
        {"max_num_keypoints": NUM_KPTS, **conf}
    ).eval()


def kornia_ref(name: str):
    """kornia 0.9.0's extractor on the same weight file, as a function of the image."""
    import kornia.feature as KF

    from gluefactory.weights import load_weights

    if name == "aliked":
        ref = KF.ALIKED(
            "aliked-n16", max_num_keypoints=NUM_KPTS, detection_threshold=0.0
        )
        ref.load_state_dict(load_weights("aliked-n16"), strict=False)
        return ref.eval()
    if name == "disk":
        ref = KF.DISK(desc_dim=128)
        ref.load_state_dict(load_weights("disk-depth")["extractor"])
        return lambda x: ref.eval()(
            x, n=NUM_KPTS, window_size=5, pad_if_not_divisible=True
        )
    ref = KF.XFeat(top_k=NUM_KPTS, detection_threshold=0.05)
    ref.net.load_state_dict(load_weights("xfeat"))
    return ref.eval().detectAndCompute


def opencv_sift(nms_radius: int | None):
    """OpenCV's SIFT as our SIFT calls it: ``nfeatures`` caps the count without NMS."""
    import cv2

    ref = cv2.SIFT_create(nfeatures=NUM_KPTS if nms_radius is None else 0,
                          nOctaveLayers=3, contrastThreshold=0.02, edgeThreshold=10,
                          enable_precise_upscale=True)  # fmt: skip

    def run(x: torch.Tensor):
        rgb = (x[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        return ref.detectAndCompute(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None)

    return run


#: key -> (label, (ours, reference) builder, reference label)
EXTRACTORS = {
    "aliked": ("ALIKED n16", lambda: (ours("aliked", model_name="aliked-n16",
               detection_threshold=0.0), kornia_ref("aliked")), "kornia 0.9.0 ALIKED"),
    "disk": ("DISK", lambda: (ours("disk", detection_threshold=0.0), kornia_ref("disk")),
             "kornia 0.9.0 DISK"),
    "xfeat": ("XFeat", lambda: (ours("xfeat"), kornia_ref("xfeat")), "kornia 0.9.0 XFeat"),
    "sift": ("SIFT (OpenCV, nms_radius None)", lambda: (ours("sift", nms_radius=None),
             opencv_sift(None)), "cv2 SIFT (nfeatures=2048)"),
    "sift_nms": ("SIFT (OpenCV, nms_radius 0: default)", lambda: (ours("sift",
                 nms_radius=0), opencv_sift(0)), "cv2 SIFT (nfeatures=0)"),
    "superpoint_open": ("SuperPoint-open (random weights)", lambda: (
        ours("superpoint_open", weights=None), None), "no reference"),
}  # fmt: skip


def extractors(args) -> str:
    """Each extractor per image on the Motorcycle view at each of ``--sizes``."""
    images = [photo("motorcycle", s) for s in args.sizes or ["640x480", "1024"]]
    rows, skipped = [], []
    for key in args.only or EXTRACTORS:
        label, build, reference = EXTRACTORS[key]
        try:
            model, ref = build()
        except Exception as e:  # missing module or weights: report and go on
            skipped.append(
                f"\n{label}: skipped ({type(e).__name__}: {e})".split("\n")[1]
            )
            continue
        for x in images:
            row, _ = versus(
                partial(model, {"image": x}), ref and partial(ref, x), args.runs
            )
            rows.append(
                (label, f"{x.shape[-1]}x{x.shape[-2]}", row[0], reference, *row[1:])
            )
            print(*rows[-1], sep=" | ", file=sys.stderr, flush=True)
    return (f"Extractors, {NUM_KPTS} keypoints max, per image:\n\n"
            + table(["extractor", "size (WxH)", VERSUS[0], "reference", *VERSUS[1:]], rows)
            + "".join(f"\n\n{s}" for s in skipped))  # fmt: skip


# ------------------------------------------------------------------------ LightGlue
def aliked_features(device: str) -> list[tuple[torch.Tensor, ...]]:
    """kornia's ALIKED keypoints (centre convention), descriptors and (w, h) of the
    Motorcycle pair, sorted by score."""
    net, out = kornia_ref("aliked"), []
    with torch.inference_mode():
        for x in (photo("motorcycle"), photo("motorcycle_right")):
            f = net(x)[0]
            order = torch.argsort(f.keypoint_scores.reshape(-1), descending=True)
            size = torch.tensor([x.shape[-1], x.shape[-2]], dtype=torch.float32)
            out.append((f.keypoints[order].clone(), f.descriptors[order].clone(), size))
    return [tuple(t.to(device) for t in f) for f in out]


def lightglue_pair(settings: dict, state: dict | None, device: str, mp: bool):
    """Our LightGlue and kornia's with ``settings`` and the same weights ``state``."""
    import kornia.feature as kf

    from gluefactory.models.matchers.lightglue import LightGlue

    model = LightGlue({"input_dim": 128, "mp": mp, **settings})
    ref = kf.LightGlue(features=None, input_dim=128, filter_threshold=0.1, **settings)
    if state is not None:
        model.load_weights(state)
        ref.load_state_dict({
            re.sub(r"^(self_attn|cross_attn)\.(\d+)\.", r"transformers.\2.\1.", k): v
            for k, v in state.items() if not re.fullmatch(r"log_assignment\.\d+\.r", k)
        }, strict=False)  # fmt: skip
    return model.eval().to(device), ref.eval().to(device)


def ours_input(f0, f1, counts: list[tuple[int, int]]) -> dict:
    """Pairs of (m, n) keypoints; several: padded to the largest, with keypoint masks."""
    out = {f"view{i}": {"image_size": f[2][None].expand(len(counts), 2)}
           for i, f in enumerate((f0, f1))}  # fmt: skip
    for i, f in enumerate((f0, f1)):
        n, b = max(c[i] for c in counts), len(counts)
        kp, desc = f[0].new_zeros(b, n, 2), f[1].new_zeros(b, n, f[1].shape[-1])
        mask = f[0].new_zeros(b, n, dtype=torch.bool)
        for j, c in enumerate(counts):
            kp[j, : c[i]], desc[j, : c[i]], mask[j, : c[i]] = (
                f[0][: c[i]],
                f[1][: c[i]],
                True,
            )
        out.update({f"keypoints{i}": kp, f"descriptors{i}": desc})
        if b > 1:  # one pair: no padding, no masks (the plain call)
            out[f"keypoint_mask{i}"] = mask
    return out


def ref_input(f0, f1, n0: int, n1: int) -> dict:
    return {f"image{i}": {"keypoints": f[0][None, :n], "descriptors": f[1][None, :n],
                          "image_size": f[2][None]}
            for i, (f, n) in enumerate(((f0, n0), (f1, n1)))}  # fmt: skip


def map_all(fns) -> list:
    return [f() for f in fns]


def lightglue(args) -> str:
    """Ours and kornia's on the same ALIKED features, default and adaptive; then a
    batch of unequal pairs, ours padded and masked, kornia looping (it cannot batch
    pairs that prune)."""
    from gluefactory.weights import WeightsError, load_weights

    try:
        state = load_weights("aliked-lightglue")
    except WeightsError as e:
        print(f"[no official weights: {e}; random weights]", file=sys.stderr)
        state = None
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    f0, f1 = aliked_features(args.device)
    g = torch.Generator().manual_seed(0)
    counts = [tuple(int(c) for c in torch.randint(768, 1025, (2,), generator=g))
              for _ in range(args.batch)]  # fmt: skip
    rows, brows = [], []
    for name, (depth, width) in {"default": (-1, -1), "adaptive": (0.95, 0.99)}.items():
        conf = {"depth_confidence": depth, "width_confidence": width}
        model, ref = lightglue_pair(conf, state, args.device, args.mp)
        for n in map(int, args.sizes or [512, 1024, 2048]):
            x = ours_input(f0, f1, [(n, n)])
            row, _ = versus(partial(model, x), partial(ref, ref_input(f0, f1, n, n)),
                            args.runs, sync)  # fmt: skip
            with torch.inference_mode():
                out = model(x)
            stop, pruned = int(out["stop"][0]), 100 * float(out["pruned_fraction"][0])
            rows.append((name, n, *row, f"{stop}, {pruned:.0f}%"))
            print(*rows[-1], sep=" | ", file=sys.stderr, flush=True)
        singles = [partial(ref, ref_input(f0, f1, m, n)) for m, n in counts]
        _, (o, r) = versus(
            partial(model, ours_input(f0, f1, counts)),
            partial(map_all, singles),
            min(args.runs, 3),
            sync,
        )
        brows.append((name, f"{args.batch} x 768-1024", f"{args.batch / o.median:.2f}",
                      f"{args.batch / r.median:.2f}", f"{o.median / r.median:.2f}"))  # fmt: skip
    gpu = f" on cuda ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""
    return (f"LightGlue{gpu} against kornia 0.9.0, weights "
            f"{'official ALIKED' if state else 'RANDOM'}, ours mp={args.mp}, per pair:\n\n"
            + table(["setting", "keypoints", *VERSUS, "ours: layers run, pruned"], rows)
            + "\n\n" + table(["setting", "batch", "ours batched (pairs/s)",
                              "kornia looped (pairs/s)", "time ratio"], brows))  # fmt: skip


# ---------------------------------------------------------------------------- lines
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick")


def endpoint_share(a: torch.Tensor, b: torch.Tensor, tol: float = 1.0) -> float:
    """Share of segments of ``a`` (L, 2, 2) with a segment of ``b`` within ``tol`` px
    at both endpoints (either orientation)."""
    if len(a) == 0 or len(b) == 0:
        return float("nan") if len(a) == 0 else 0.0
    same = torch.maximum(torch.cdist(a[:, 0], b[:, 0]), torch.cdist(a[:, 1], b[:, 1]))
    swap = torch.maximum(torch.cdist(a[:, 0], b[:, 1]), torch.cdist(a[:, 1], b[:, 0]))
    return (torch.minimum(same, swap).min(1).values <= tol).double().mean().item()


def lsd(args) -> str:
    """Segments of pytlsd and OpenCV on six photographs, and how many the other finds:
    both endpoints within 1 px, or the same support line (the line ground truth rule)."""
    from gluefactory.geometry.gt_generation import gt_line_matches_from_homography

    models = {b: get_model("lines.lsd")({"backend": b}) for b in ("pytlsd", "opencv")}
    rows = []
    for name in PHOTOS:
        x, seg = photo(name, "640x480"), {}
        for b, m in models.items():
            pred = m({"image": x})
            seg[b] = pred["lines"][0][pred["line_mask"][0]].double()
        p, o = seg["pytlsd"], seg["opencv"]
        gt = gt_line_matches_from_homography(
            p[None],
            o[None],
            torch.eye(3).double()[None],
            SIZE[0],
            SIZE[0],
            th_dist=1.0,
            th_overlap=0.5,
        )
        same = [(gt[f"line_matches{i}"] >= 0).double().mean().item() for i in (0, 1)]
        rows.append((name, len(p), len(o),
                     f"{endpoint_share(p, o):.0%} / {endpoint_share(o, p):.0%}",
                     f"{same[0]:.0%} / {same[1]:.0%}"))  # fmt: skip
    return table(["photo", "pytlsd", "OpenCV", "endpoints within 1 px: pytlsd / OpenCV",
                  "same line: pytlsd / OpenCV"], rows)  # fmt: skip


def wireframe(point: str, num_points: int, threshold: float | None = None, **params):
    """``lines.wireframe`` of ``point`` keypoints (detection ``threshold``, None: the
    extractor's default) and 250 LSD lines (pytlsd)."""
    conf = {"name": f"extractors.{point}", "max_num_keypoints": num_points}
    if threshold is not None:
        conf["detection_threshold"] = threshold
    lsd_conf = {"name": "lines.lsd", "max_num_lines": 250, "min_length": 15}
    return get_model("lines.wireframe")(
        {"point_extractor": conf, "line_extractor": lsd_conf, **params}
    ).eval()


def lines(args) -> str:
    """LSD per backend, the wireframe and its parts, the line ground truth of a pair."""
    from gluefactory.geometry.gt_generation import (
        gt_line_matches_from_homography as from_h,
    )
    from gluefactory.geometry.gt_generation import (
        gt_line_matches_from_pose_depth as from_depth,
    )
    from gluefactory.geometry.homography import warp_lines
    from gluefactory.geometry.wrappers import Camera, Pose

    x = photo("astronaut", "640x480")
    batch = torch.cat([photo(n, "640x480") for n in PHOTOS[:4]])
    rows = []
    for b in ("pytlsd", "opencv"):
        m = get_model("lines.lsd")({"backend": b})
        rows += [(f"lines.lsd {b}, 1 image", partial(m, {"image": x})),
                 (f"lines.lsd {b}, 4 images", partial(m, {"image": batch}))]  # fmt: skip
    for name in ("aliked", "xfeat"):
        wf = wireframe(name, 1024, 0.0 if name == "aliked" else None)
        rows += [(f"lines.wireframe {name} + LSD (pytlsd)", partial(wf, {"image": x})),
                 (f"  of which {name} alone",
                  partial(wf.point_extractor.extract_dense, {"image": x})),
                 ("  of which LSD alone", partial(wf.line_extractor, {"image": x}))]  # fmt: skip
    pred = get_model("lines.lsd")({"max_num_lines": 250, "force_num_lines": True})(
        {"image": x}
    )
    l0, m0 = pred["lines"], pred["line_mask"]
    K = torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    cam = Camera.from_calibration_matrix(K, (640, 480))[None]
    T = Pose.from_Rt(torch.eye(3), torch.tensor([-0.1, 0, 0.0]))[None]
    depth = torch.full((1, 480, 640), 2.0)
    rows += [
        ("line GT from a homography, 250 x 250 lines", partial(
            from_h, l0, warp_lines(l0, H_WARP).flip(1), H_WARP, SIZE[0], SIZE[0], m0,
            m0.flip(1))),
        ("line GT from depth and pose, 250 x 250 lines", partial(
            from_depth, l0, l0 - torch.tensor([25.0, 0]), cam, cam, T, depth, depth,
            mask0=m0, mask1=m0)),
    ]  # fmt: skip
    return wall_cpu(rows, args.runs, "stage (640 x 480)")


def random_wireframes(n: int, num_lines: int, dim: int) -> dict:
    """Two views of ``n`` random points, ``num_lines`` lines between them (640 x 480)."""
    torch.manual_seed(0)
    data = {}
    for i in (0, 1):
        k = torch.rand(1, n, 2) * SIZE
        junc = torch.randint(0, 2 * num_lines, (1, num_lines, 2))
        data.update({
            f"keypoints{i}": k, f"descriptors{i}": torch.randn(1, n, dim),
            f"keypoint_scores{i}": torch.rand(1, n), f"line_scores{i}": torch.rand(1, num_lines),
            f"lines{i}": k[0, junc.flatten()].view(1, num_lines, 2, 2),
            f"lines_junc_idx{i}": junc, f"view{i}": {"image_size": SIZE},
        })  # fmt: skip
    return data


def gluestick(args) -> str:
    """GlueStick's forward (random weights: the cost of the official ones) beside a
    LightGlue of the same depth and width; one ``xfeat+lsd+gluestick`` pair in parts."""
    from gluefactory.geometry.homography import warp_image

    data = random_wireframes(1000, 250, 256)
    gs = get_model("matchers.gluestick")({}).eval()
    lg = get_model("matchers.lightglue")(
        {"weights": None, "input_dim": 256, "depth_confidence": -1, "width_confidence": -1}
    ).eval()  # fmt: skip
    images = [photo("astronaut", "640x480")]
    images.append(warp_image(images[0], H_WARP, (640, 480)))
    wf = wireframe("xfeat", 1000, 0.0, wireframe_params={"nms_radius": 3})
    matcher = get_model("matchers.gluestick")({"input_dim": 64}).eval()
    with torch.inference_mode():
        feats = [wf({"image": x}) for x in images]
    pair = {f"{k}{i}": v for i, f in enumerate(feats) for k, v in f.items()}
    pair.update(view0={"image_size": SIZE}, view1={"image_size": SIZE})
    n = {
        k: " + ".join(str(f[k].shape[1]) for f in feats) for k in ("lines", "keypoints")
    }
    return wall_cpu([
        ("GlueStick 9 x 256-D, 1000 points + 250 lines", partial(gs, data)),
        ("LightGlue 9 x 256-D, 1000 points (no adaptivity)", partial(lg, data)),
        (f"LSD, 2 images ({n['lines']} lines)",
         lambda: [wf.line_extractor({"image": x}) for x in images]),
        (f"wireframe (XFeat + LSD + junctions), 2 images ({n['keypoints']} points)",
         lambda: [wf({"image": x}) for x in images]),
        ("GlueStick 9 x 256-D on that pair", partial(matcher, pair)),
    ], args.runs, "GlueStick (forward, batch 1, float32)")  # fmt: skip


PARTS = {"extractors": extractors, "lightglue": lightglue, "lsd": lsd, "lines": lines,
         "gluestick": gluestick}  # fmt: skip
#: part -> (module it needs, how to install it)
NEEDS = {"lightglue": ("kornia", "pip install -e '.[reference]'"),
         "lsd": ("pytlsd", "pip install pytlsd"), "lines": ("pytlsd", "pip install pytlsd")}  # fmt: skip


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", nargs="+", choices=list(PARTS), required=True)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", nargs="+", help="extractors: WxH or long side; lightglue: "
                   "keypoints")  # fmt: skip
    p.add_argument("--only", nargs="+", choices=list(EXTRACTORS), help="extractors")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="lightglue")
    p.add_argument("--batch", type=int, default=8, help="lightglue: pairs in a batch")
    p.add_argument("--mp", action="store_true", help="lightglue: ours with autocast")
    p.add_argument("--output", help="also write the tables to this file")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")
    for part in args.part:
        module, install = NEEDS.get(part, ("torch", ""))
        if importlib.util.find_spec(module) is None:
            p.error(f"--part {part} needs {module}: {install}")
    if (
        "lightglue" in args.part
        and args.sizes
        and not all(s.isdigit() for s in args.sizes)
    ):
        p.error(f"--sizes {' '.join(args.sizes)}: lightglue wants keypoint counts")
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse(argv)
    set_threads(args.threads)
    start, load = time.time(), load_average()
    parts = [f"{host(args.threads)}; median of {args.runs} runs; load average at start "
             f"{load}."]  # fmt: skip
    for part in args.part:
        parts.append(PARTS[part](args))
        print(parts[-1] + "\n", file=sys.stderr, flush=True)
    parts.append(f"Load average at the end: {load_average()}; "
                 f"{time.time() - start:.0f} s in all.")  # fmt: skip
    return emit("\n\n".join(parts) + "\n", args.output)


if __name__ == "__main__":
    main()
