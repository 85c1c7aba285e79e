"""deploy.onnx against PyTorch on cached features: the same matches, with and without
early exit and pruning, padded keypoints, and the runner's adaptive decisions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from deploy_helpers import random_views, small_pipeline

from gluefactory.deploy.onnx import OnnxMatcher
from gluefactory.export_onnx import export_onnx
from gluefactory.models import get_model
from gluefactory.utils.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 3-layer LightGlue (random weights) and its export."""
    torch.manual_seed(0)
    conf = small_pipeline()
    model = get_model("two_view_pipeline")(conf).eval()
    out = tmp_path_factory.mktemp("onnx") / "small"
    from gluefactory.deploy.export import export_pipeline

    export_pipeline(model, out)
    return model, out


def _torch(model, data, **matcher):
    lg = model.matcher
    conf = {**lg.conf, **matcher}
    ref = get_model("matchers.lightglue")(conf).eval()
    ref.load_state_dict(lg.state_dict())
    pipe = get_model("two_view_pipeline")(small_pipeline(**matcher)).eval()
    pipe.matcher = ref
    with torch.no_grad():
        return pipe(data)


@pytest.mark.parametrize(
    "adaptive",
    [
        {},
        {"width_confidence": 0.5},  # prunes about half of the points at every layer
        {"depth_confidence": 0.5, "width_confidence": 0.5},
    ],
)
@pytest.mark.parametrize("sizes", [(40, 50), (9, 3)])
def test_same_matches_as_pytorch(exported, adaptive, sizes):
    model, out = exported
    data = random_views(*sizes, seed=sum(sizes))
    ref = _torch(model, data, **adaptive)
    onx = get_model("deploy.onnx")({"path": str(out), **adaptive})
    assert isinstance(onx, OnnxMatcher)
    pred = onx(data)
    for key in ("matches0", "matches1"):
        assert torch.equal(pred[key], ref[key]), key
    for key in ("matching_scores0", "matching_scores1"):
        torch.testing.assert_close(pred[key], ref[key], atol=1e-5, rtol=1e-4)
    assert torch.equal(pred["stop"], ref["stop"])
    assert torch.equal(pred["keypoints0"], data["view0"]["cache"]["keypoints"])


def test_early_exit_stops_at_the_same_layer(exported):
    """Token confidences pushed up: pairs exit after the first layer, in both."""
    model, out = exported
    data = random_views(30, 30, seed=5)
    head = model.matcher.token_confidence[0].token[0]
    saved = head.bias.data.clone()
    try:
        head.bias.data.fill_(20.0)
        folder = out.parent / "confident"
        from gluefactory.deploy.export import export_pipeline

        export_pipeline(model, folder)
        ref = _torch(model, data, depth_confidence=0.95)
    finally:
        head.bias.data.copy_(saved)
    pred = get_model("deploy.onnx")({"path": str(folder), "depth_confidence": 0.95})(
        data
    )
    assert int(ref["stop"][0]) == 1 and int(pred["stop"][0]) == 1
    assert torch.equal(pred["matches0"], ref["matches0"])


def test_padded_keypoints_are_not_matched(exported):
    model, out = exported
    data = random_views(20, 24, seed=3)
    cache = data["view1"]["cache"]
    cache["keypoint_mask"] = torch.arange(24)[None] < 20
    ref = _torch(model, data)
    pred = get_model("deploy.onnx")({"path": str(out)})(data)
    assert torch.equal(pred["matches0"], ref["matches0"])
    assert (pred["matches1"][0, 20:] == -1).all()


def test_options_override_the_exported_ones(exported):
    model, out = exported
    onx = get_model("deploy.onnx")({"path": str(out), "filter_threshold": 1.0})
    pred = onx(random_views(20, 20, seed=1))
    assert (pred["matches0"] == -1).all()  # a score is never above 1


@pytest.mark.parametrize("spinning", [False, True])
def test_worker_spinning_is_a_session_option(exported, spinning):
    """Off by default: spinning workers take the cores of a shared CPU."""
    _, out = exported
    conf = {"path": str(out), "num_threads": 2}
    onx = get_model("deploy.onnx")({**conf, "spinning": spinning} if spinning else conf)
    key = "session.intra_op.allow_spinning"
    for session in (onx.matcher.encode, *onx.matcher.layers, *onx.matcher.assign):
        options = session.get_session_options()
        assert options.get_session_config_entry(key) == str(int(spinning))
        assert options.intra_op_num_threads == 2


def test_providers_take_options(exported, monkeypatch):
    """[name, {options}] entries reach onnxruntime (TensorRT's profiles, ...)."""
    import onnxruntime as ort

    _, out = exported
    seen, real = [], ort.InferenceSession

    def spy(path, options, providers):
        seen.append(providers)
        return real(path, options, providers=providers)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    cpu = ["CPUExecutionProvider", {"use_arena": 0}]
    onx = get_model("deploy.onnx")({"path": str(out), "providers": [cpu]})
    assert seen and all(
        p == [("CPUExecutionProvider", {"use_arena": "0"})] for p in seen
    )
    assert onx(random_views(8, 9))["matches0"].shape == (1, 8)
    with pytest.raises(ConfigError, match="providers entry"):
        get_model("deploy.onnx")({"path": str(out), "providers": [["CPU", 1]]})


def test_runner_errors(exported, tmp_path):
    _, out = exported
    with pytest.raises(ConfigError, match="model.path"):
        get_model("deploy.onnx")({})
    with pytest.raises(ConfigError, match="not an ONNX export folder"):
        get_model("deploy.onnx")({"path": str(tmp_path)})
    with pytest.raises(ConfigError, match="NoSuchProvider"):
        get_model("deploy.onnx")({"path": str(out), "providers": ["NoSuchProvider"]})
    data = random_views(5, 5)
    del data["view0"]["cache"]
    with pytest.raises(InputError, match="no extractor"):
        get_model("deploy.onnx")({"path": str(out)})(data)


def test_the_export_of_a_trained_checkpoint(tmp_path, monkeypatch):
    """--checkpoint: the experiment's model, with inference options merged over it."""
    from toy_training import toy_conf

    from gluefactory.trainer import train

    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path / "outputs"))
    train("toy", toy_conf({"epochs": 1, "eval_0": False}, num_train=8))
    conf = {"model": {"matcher": {"depth_confidence": 0.95}}}
    out = export_onnx(conf, tmp_path / "x", checkpoint="toy")
    onx = get_model("deploy.onnx")({"path": str(out)})
    assert onx.options["depth_confidence"] == 0.95
    assert onx.matcher.n_layers == 2


def test_a_pipeline_presets_sections_are_accepted(exported):
    """``--conf <preset> model.name=deploy.onnx``: the preset's matcher section sets the
    options; keys the graphs fixed must keep their exported values."""
    model, out = exported
    matcher = {**model.matcher.conf, "depth_confidence": 0.5, "filter_threshold": 0.2}
    onx = get_model("deploy.onnx")({"path": str(out), "matcher": matcher})
    assert onx.options == {
        "depth_confidence": 0.5,
        "width_confidence": -1.0,
        "filter_threshold": 0.2,
    }
    get_model("deploy.onnx")({"path": str(out), "ground_truth": {"name": None}})
    with pytest.raises(ConfigError, match="computes no ground truth"):
        gt = {"name": "matchers.homography_matcher"}
        get_model("deploy.onnx")({"path": str(out), "ground_truth": gt})
    with pytest.raises(ConfigError, match="matcher.n_layers=9 differs from the export"):
        get_model("deploy.onnx")(
            {"path": str(out), "matcher": {**matcher, "n_layers": 9}}
        )


EXTRACTORS = [
    ({"name": "extractors.xfeat"}, 64),  # official weights
    ({"name": "extractors.aliked"}, 128),  # official weights, threshold 0.2
    ({"name": "extractors.disk", "weights": None}, 128),  # threshold 0 on logits
    (  # no open weights are shipped: random ones, top-k without threshold
        {
            "name": "extractors.superpoint_open",
            "weights": None,
            "detection_threshold": -1,
        },
        256,
    ),
]


def _near(ref: torch.Tensor, got: torch.Tensor):
    dist = torch.cdist(ref, got, compute_mode="donot_use_mm_for_euclid_dist")
    return dist.min(1)


@pytest.mark.parametrize("extractor, dim", EXTRACTORS)
def test_exported_extractor_gives_the_same_features(
    tmp_path, motorcycle_pair, extractor, dim
):
    """The complete extractor graph (selection included) in onnxruntime against the
    PyTorch extractor; the extractor section of a preset lowers max_num_keypoints
    and (XFeat) raises the threshold (a graph input) without a new export."""
    from gluefactory.deploy.export import export_pipeline

    torch.manual_seed(0)
    name = extractor["name"]
    conf = {
        "name": "two_view_pipeline",
        "extractor": {**extractor, "max_num_keypoints": 256},
        "matcher": {"name": "matchers.lightglue", "input_dim": dim, "n_layers": 1},
    }
    model = get_model("two_view_pipeline")(conf).eval()
    image = motorcycle_pair["image0"][..., ::4, ::4]  # 125 x 186: not multiples of 8
    out = export_pipeline(model, tmp_path / "x")
    assert not (out / "extractor.pt").exists()
    onx = get_model("deploy.onnx")({"path": str(out)})
    with torch.no_grad():
        ref = model.extractor({"image": image})
    got = onx.extractor(image[0].numpy())
    assert all(isinstance(v, np.ndarray) for v in got.values())
    got = {k: torch.from_numpy(v) for k, v in got.items()}
    assert len(ref["keypoints"][0]) == len(got["keypoints"]) > 20
    near, j = _near(ref["keypoints"][0], got["keypoints"])
    assert (near < 1e-2).float().mean() > 0.99  # the same points (ties may reorder)
    ok = near < 1e-2
    torch.testing.assert_close(
        got["descriptors"][j][ok], ref["descriptors"][0][ok], atol=1e-3, rtol=1e-3
    )
    torch.testing.assert_close(
        got["keypoint_scores"][j][ok],
        ref["keypoint_scores"][0][ok],
        atol=1e-3,
        rtol=1e-3,
    )
    fewer = get_model("deploy.onnx")(
        {"path": str(out), "extractor": {"name": name, "max_num_keypoints": 10}}
    )
    pred = fewer({"view0": {"image": image}, "view1": {"image": image}})
    assert pred["keypoints0"].shape == (1, 10, 2) and pred["matches0"].shape == (1, 10)
    torch.testing.assert_close(pred["keypoints0"][0], got["keypoints"][:10])
    with pytest.raises(ConfigError, match="extractor.name='extractors.other'"):
        get_model("deploy.onnx")(
            {"path": str(out), "extractor": {"name": "extractors.other"}}
        )
    with pytest.raises(ConfigError, match="above the exported top-k"):
        get_model("deploy.onnx")(
            {"path": str(out), "extractor": {"max_num_keypoints": 512}}
        )
    with pytest.raises(ConfigError, match="extractor.nms_radius=7 differs"):
        get_model("deploy.onnx")({"path": str(out), "extractor": {"nms_radius": 7}})
    if name == "extractors.xfeat":  # the threshold is a graph input (XFeat's: 0.05)
        _check_a_higher_threshold(out, extractor, image)


def _check_a_higher_threshold(out, extractor: dict, image: torch.Tensor) -> None:
    """A higher threshold at run time keeps fewer, the same, keypoints as PyTorch."""
    strict = {**extractor, "max_num_keypoints": 256, "detection_threshold": 0.3}
    onx = get_model("deploy.onnx")({"path": str(out), "extractor": strict})
    got = onx.extractor(image[0].numpy())["keypoints"]
    with torch.no_grad():
        ref = get_model(extractor["name"])(strict).eval()({"image": image})
    ref = ref["keypoints"][0]
    assert 0 < len(ref) == len(got) < 256
    near, _ = _near(ref, torch.from_numpy(got))
    assert (near < 1e-2).all()
