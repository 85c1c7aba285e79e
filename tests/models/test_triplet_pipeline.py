"""The triplet pipeline: each pair of a triplet is exactly the two-view pipeline on that
pair, stacked (one matcher call) or not; losses and metrics cover the three pairs; pairs
still work; non-stackable triplets are a clear error; MegaDepth triplets (poses, depth
ground truth) and a training step go through."""

import cv2
import numpy as np
import pytest
import torch

from gluefactory.datasets import get_dataset
from gluefactory.models import get_model
from gluefactory.models.triplet_pipeline import PAIRS, STACK_HINT, pair_data
from gluefactory.utils.errors import InputError
from gluefactory.utils.tensor import cat_batches, collate

GT = {"name": "matchers.homography_matcher", "th_positive": 3, "th_negative": 3}


def _conf(**kw):
    return {
        "extractor": {
            "name": "extractors.xfeat",
            "max_num_keypoints": 128,
            "force_num_keypoints": True,
            "detection_threshold": 0.0,
            "trainable": False,
        },
        "matcher": {
            "name": "matchers.lightglue",
            "input_dim": 64,
            "descriptor_dim": 32,
            "n_layers": 2,
            "num_heads": 1,
        },
        "ground_truth": GT,
        **kw,
    }


@pytest.fixture(scope="module", autouse=True)
def xfeat_weights():
    from gluefactory.weights import WeightsError, get_weights_path

    try:
        get_weights_path("xfeat")
    except WeightsError as e:
        pytest.skip(f"XFeat weights unavailable: {e}")


@pytest.fixture(scope="module")
def triplets(tmp_path_factory):
    """Two homography triplets of real photographs (scikit-image)."""
    skd = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("photos")
    for name in ("coffee", "astronaut", "chelsea"):
        cv2.imwrite(str(root / f"{name}.png"), getattr(skd, name)()[..., ::-1])
    conf = {
        "data_dir": str(root), "image_dir": "", "image_list": None,
        "train_size": None, "val_size": 1, "triplet": True,
        "photometric": {"name": "identity"},
        "homography": {"difficulty": 0.5, "max_angle": 30, "patch_shape": [160, 120]},
    }  # fmt: skip
    split = get_dataset("homographies")(conf).get_dataset("train")
    return collate([split[0], split[1]])


def test_pair_data_renames_views_and_pair_keys():
    data = {
        "view0": "a", "view1": "b", "view2": "c", "name": ["x"],
        "H_0to1": 1, "H_0to2": 2, "H_1to2": 3, "T_2to1": 4, "T_1to2": 5,
    }  # fmt: skip
    assert pair_data(data, 1, 2) == {
        "view0": "b", "view1": "c", "name": ["x"], "H_0to1": 3, "T_1to0": 4,
        "T_0to1": 5,
    }  # fmt: skip
    assert pair_data(data, 0, 2) == {
        "view0": "a", "view1": "c", "name": ["x"], "H_0to1": 2,
    }  # fmt: skip


@pytest.mark.parametrize("batch_triplets", [True, False])
def test_each_pair_is_the_two_view_pipeline(triplets, batch_triplets):
    torch.manual_seed(0)
    model = get_model("triplet_pipeline")(_conf(batch_triplets=batch_triplets))
    two_view = get_model("two_view_pipeline")(_conf())
    two_view.load_state_dict(model.state_dict())
    model.eval(), two_view.eval()
    with torch.no_grad():
        pred = model(triplets)
        losses, metrics = model.loss(pred, triplets)
        ref = [two_view(pair_data(triplets, a, b)) for a, b in PAIRS]
        ref_losses = [two_view.loss(r, pair_data(triplets, a, b)) for (a, b), r in
                      zip(PAIRS, ref)]  # fmt: skip
    outs = [pred, pred["0to2"], pred["1to2"]]
    for out, r in zip(outs, ref):
        for k in ("keypoints0", "keypoints1", "matches0", "matches1", "log_assignment"):
            torch.testing.assert_close(out[k], r[k], atol=1e-4, rtol=1e-4)
    # view2's features once, at the top level; pair 0-2 uses them as its view1
    assert torch.equal(pred["keypoints2"], pred["0to2"]["keypoints1"])
    assert torch.equal(pred["keypoints2"], pred["1to2"]["keypoints1"])
    assert losses["total"].shape == (6,) and metrics["match_recall"].shape == (6,)
    want = torch.cat([r[0]["total"] for r in ref_losses])
    torch.testing.assert_close(losses["total"], want, atol=1e-4, rtol=1e-4)
    want = torch.cat([r[1]["match_recall"] for r in ref_losses])
    torch.testing.assert_close(metrics["match_recall"], want)
    # each pair's own ground truth, built here without pair_data: pair 1-2 uses H_1to2
    gt = get_model(GT["name"])(GT)
    for k, (a, b) in enumerate(PAIRS):
        g = gt({
            "keypoints0": pred[f"keypoints{a}"], "keypoints1": pred[f"keypoints{b}"],
            "H_0to1": triplets[f"H_{a}to{b}"],
        })  # fmt: skip
        positives = (g["gt_matches0"] >= 0).sum(-1).float()
        assert positives.min() > 10
        torch.testing.assert_close(
            losses["num_matchable"][2 * k : 2 * k + 2], positives
        )


def test_ground_truth_in_forward_gives_the_same_loss(triplets):
    torch.manual_seed(0)
    model = get_model("triplet_pipeline")(_conf()).eval()
    in_forward = get_model("triplet_pipeline")(_conf(run_gt_in_forward=True)).eval()
    in_forward.load_state_dict(model.state_dict())
    with torch.no_grad():
        pred = in_forward(triplets)
        assert "gt_matches0" in pred and "gt_matches0" in pred["1to2"]
        got, _ = in_forward.loss(pred, triplets)
        want, _ = model.loss(model(triplets), triplets)
    torch.testing.assert_close(got["total"], want["total"])


def test_pairs_are_the_two_view_pipeline(triplets):
    torch.manual_seed(0)
    model = get_model("triplet_pipeline")(_conf()).eval()
    pair = pair_data(triplets, 0, 1)
    with torch.no_grad():
        pred = model(pair)
    assert "0to2" not in pred and pred["matches0"].shape == (2, 128)


def test_unstackable_triplet_is_a_clear_error():
    a = {"keypoints0": torch.zeros(1, 5, 2)}
    b = {"keypoints0": torch.zeros(1, 7, 2)}
    with pytest.raises(InputError, match="batch_triplets=false"):
        cat_batches([a, b], "features", STACK_HINT)


def test_training_step_on_triplets(triplets):
    torch.manual_seed(0)
    model = get_model("triplet_pipeline")(_conf()).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-3)
    pred = model(triplets)
    losses, _ = model.loss(pred, triplets)
    losses["total"].mean().backward()
    grads = [p.grad for p in model.matcher.parameters() if p.requires_grad]
    assert all(g is not None and g.isfinite().all() for g in grads)
    opt.step()


def test_megadepth_triplets_with_depth_ground_truth(tmp_path):
    """Poses and cameras stack too: the depth GT of every pair of a real-image triplet."""
    from tests.datasets.test_megadepth import _pose, _tiny_tree

    poses = [_pose([0, 0, 0], [0, 0, 0]), _pose([0, 0.05, 0], [0.1, 0, 0]),
             _pose([0, -0.05, 0], [-0.1, 0, 0])]  # fmt: skip
    _tiny_tree(tmp_path, poses, np.full((3, 3), 0.8), size=(64, 48))
    conf = {
        "data_dir": str(tmp_path), "train_split": ["t"], "views": 3,
        "train_num_per_scene": 2, "preprocessing": {"resize": 64},
    }  # fmt: skip
    split = get_dataset("megadepth")(conf).get_dataset("train")
    data = collate([split[0], split[1]])
    g = torch.Generator().manual_seed(0)
    kpts = torch.rand(2, 40, 2, generator=g) * torch.tensor([63.0, 47])
    for i in range(3):  # the same points in all views: small motions, many positives
        data[f"view{i}"]["cache"] = {
            "keypoints": kpts,
            "descriptors": torch.randn(2, 40, 32, generator=g),
        }
    model = get_model("triplet_pipeline")({
        "allow_no_extract": True,
        "matcher": {"name": "matchers.lightglue", "input_dim": 32,
                    "descriptor_dim": 32, "n_layers": 1, "num_heads": 1},
        "ground_truth": {"name": "matchers.depth_matcher", "th_positive": 3,
                         "th_negative": 5},
    })  # fmt: skip
    pred = model(data)
    losses, _ = model.loss(pred, data)
    assert losses["total"].shape == (6,) and losses["total"].isfinite().all()
    depth_gt = get_model("matchers.depth_matcher")(model.conf.ground_truth)
    for k, (a, b) in enumerate(PAIRS):
        gt = depth_gt({**pair_data(data, a, b), "keypoints0": kpts, "keypoints1": kpts})
        positives = (gt["gt_matches0"] >= 0).sum(-1).float()
        assert positives.min() > 0
        torch.testing.assert_close(
            losses["num_matchable"][2 * k : 2 * k + 2], positives
        )
