"""matchers.gluestick: the official checkpoint layout, batching with padding, the line
score, the loss and training (by hand and with the trainer) on synthetic wireframes.

Parity with upstream glue-factory's GlueStick on one state dict needs upstream's source:
``test_gluestick_upstream.py`` (docs/lines.md).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from gluestick_toy import flatten, synthetic_pair, tiny_gluestick  # noqa: E402

from gluefactory.models import get_model  # noqa: E402
from gluefactory.models.matchers.gluestick import GlueStick  # noqa: E402
from gluefactory.utils.errors import ConfigError, WeightsError  # noqa: E402
from gluefactory.utils.tensor import collate  # noqa: E402


def batch(*seeds, **kw) -> dict:
    return flatten(collate([synthetic_pair(s, **kw) for s in seeds]))


def official_keys(d: int = 256, enc=(32, 64, 128, 256), layers: int = 18) -> dict:
    """Names and shapes of the parameters and buffers in ``checkpoint_GlueStick_MD.tar``
    (upstream's GlueStick, default config), written out from its architecture."""
    keys = {"bin_score": (), "line_bin_score": ()}

    def conv(name, cin, cout):
        keys[f"{name}.weight"], keys[f"{name}.bias"] = (cout, cin, 1), (cout,)

    def bn(name, c):
        for k in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.{k}"] = (c,)
        keys[f"{name}.num_batches_tracked"] = ()

    def mlp(name, channels):  # Conv, BN, ReLU, ..., Conv
        for i in range(len(channels) - 1):
            conv(f"{name}.{3 * i}", channels[i], channels[i + 1])
            if i < len(channels) - 2:
                bn(f"{name}.{3 * i + 1}", channels[i + 1])

    mlp("kenc.encoder", [3, *enc, d])
    mlp("lenc.encoder", [5, *enc, d])
    for i in range(layers):
        p = f"gnn.layers.{i}.update"
        conv(f"{p}.attn.merge", d, d)
        for j in range(3):
            conv(f"{p}.attn.proj.{j}", d, d)
        mlp(f"{p}.mlp", [2 * d, 2 * d, d])
    for i in range(layers // 2):
        mlp(f"gnn.line_layers.{i}.mlp", [3 * d, 2 * d, d])
    conv("final_proj", d, d)
    conv("final_line_proj", d, d)
    return keys


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory):
    """A checkpoint file shaped as the official one: a training checkpoint whose
    ``model`` holds the matcher under ``module.matcher.`` next to other components."""
    g = torch.Generator().manual_seed(0)
    model = {}
    for k, shape in official_keys().items():
        if k.endswith("num_batches_tracked"):
            model[f"module.matcher.{k}"] = torch.tensor(7)
        else:
            model[f"module.matcher.{k}"] = torch.randn(shape, generator=g)
    model["module.extractor.conv1a.weight"] = torch.zeros(3)
    path = tmp_path_factory.mktemp("weights") / "checkpoint_GlueStick_MD.tar"
    torch.save({"model": model, "epoch": 11, "optimizer": {}}, path)
    return path, model


def test_layout_is_the_official_one():
    own = {k: tuple(v.shape) for k, v in GlueStick({}).state_dict().items()}
    assert own == official_keys()


def test_official_checkpoint_loads_every_key(official_checkpoint):
    path, model = official_checkpoint
    matcher = get_model("matchers.gluestick")({"weights": str(path)})
    own = matcher.state_dict()
    expected = {k.removeprefix("module.matcher."): v for k, v in model.items()}
    expected.pop("module.extractor.conv1a.weight")
    assert own.keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(own[k], v), k


def test_checkpoint_missing_or_extra_key_is_named(official_checkpoint, tmp_path):
    _, model = official_checkpoint
    state = {k.removeprefix("module.matcher."): v for k, v in model.items()}
    del state["module.extractor.conv1a.weight"]
    missing = dict(state)
    del missing["gnn.line_layers.3.mlp.0.weight"]
    with pytest.raises(ConfigError, match=r"missing keys: gnn\.line_layers\.3\.mlp\.0"):
        GlueStick({}).load_weights(missing)
    extra = {**state, "gnn.line_layers.0.proj_node.weight": torch.zeros(1)}
    with pytest.raises(ConfigError, match="unexpected keys: .*proj_node"):
        GlueStick({}).load_weights(extra)


@pytest.mark.parametrize("name", ["gluestick-md", "checkpoint_GlueStick_MD"])
def test_official_weights_unreachable_say_where_to_get_them(
    name, monkeypatch, tmp_path
):
    monkeypatch.setenv("GLUEFACTORY_OFFLINE", "1")
    monkeypatch.setenv("GLUEFACTORY_WEIGHTS", str(tmp_path))  # an empty cache
    with pytest.raises(
        WeightsError,
        match=r"(?i)download it by hand from https://github\.com/cvg/GlueStick/releases/"
        r"download/v0\.1_arxiv/checkpoint_GlueStick_MD\.tar",
    ):
        GlueStick({"weights": name})


@pytest.mark.parametrize(
    "conf,match",
    [
        ({"GNN_layers": ["self", "crosss"]}, "self or cross"),
        ({"line_attention": True}, "line_attention"),
        ({"endpoint_scores": "mean"}, "endpoint_scores"),
        ({"inter_supervision": [9]}, "inter_supervision"),
        ({"inter_supervision": [1, 2, 3]}, "inter_supervision"),
    ],
)
def test_bad_config_is_a_config_error(conf, match):
    with pytest.raises(ConfigError, match=match):
        GlueStick(conf)


def _pad(data: dict, n_kpts: int, n_lines: int, g: torch.Generator) -> dict:
    """Pad one pair's points and lines with junk, flagged by keypoint/line masks."""
    out = dict(data)
    for i in (0, 1):
        n, nl = data[f"keypoints{i}"].shape[1], data[f"lines{i}"].shape[1]
        pk, pl = n_kpts - n, n_lines - nl

        def junk(t, count):
            shape = (t.shape[0], count, *t.shape[2:])
            if t.is_floating_point():
                return torch.cat([t, 1e3 * torch.rand(shape, generator=g)], 1)
            return torch.cat([t, torch.full(shape, -1, dtype=t.dtype)], 1)

        for k in ("keypoints", "descriptors", "keypoint_scores"):
            out[f"{k}{i}"] = junk(data[f"{k}{i}"], pk)
        for k in ("lines", "line_scores", "lines_junc_idx"):
            out[f"{k}{i}"] = junk(data[f"{k}{i}"], pl)
        out[f"keypoint_mask{i}"] = torch.arange(n_kpts)[None] < n
        out[f"line_mask{i}"] = torch.arange(n_lines)[None] < nl
        out[f"view{i}"] = data[f"view{i}"]
    return out


def _cat(pairs: list[dict]) -> dict:
    out = {}
    for k, v in pairs[0].items():
        if isinstance(v, dict):
            out[k] = {kk: torch.cat([p[k][kk] for p in pairs]) for kk in v}
        elif torch.is_tensor(v) and not k.startswith("gt_"):
            out[k] = torch.cat([p[k] for p in pairs])
    return out


@pytest.mark.parametrize("endpoint_scores", ["tiled", "per_line"])
def test_batch_with_padding_equals_pairs_alone(endpoint_scores):
    torch.manual_seed(0)
    model = GlueStick(
        tiny_gluestick(filter_threshold=0.0, endpoint_scores=endpoint_scores)
    ).eval()
    g = torch.Generator().manual_seed(1)
    sizes = [(12, 20), (7, 9), (10, 0)]  # (lines, other points)
    pairs = []
    for s, (nl, npts) in enumerate(sizes):
        p = batch(s, n_lines=nl, n_points=npts)
        for i in (0, 1):  # distinct line scores: the endpoint scores matter
            p[f"line_scores{i}"] = torch.rand(p[f"line_scores{i}"].shape, generator=g)
        pairs.append(p)
    alone = []
    with torch.no_grad():
        for p in pairs:
            alone.append(model(p))
        padded = model(_cat([_pad(p, 44, 12, g) for p in pairs]))
    for b, (p, a) in enumerate(zip(pairs, alone)):
        for prefix, key in (("", "keypoints"), ("line_", "lines")):
            n0, n1 = p[f"{key}0"].shape[1], p[f"{key}1"].shape[1]
            m0 = padded[f"{prefix}matches0"][b]
            assert torch.equal(m0[:n0], a[f"{prefix}matches0"][0]), (b, prefix)
            assert torch.equal(
                padded[f"{prefix}matches1"][b, :n1], a[f"{prefix}matches1"][0]
            )
            assert (m0[n0:] == -1).all() and (
                padded[f"{prefix}matches1"][b, n1:] == -1
            ).all()
            assert (m0[:n0] < n1).all()  # never a padded partner
            torch.testing.assert_close(
                padded[f"{prefix}matching_scores0"][b, :n0],
                a[f"{prefix}matching_scores0"][0],
                atol=1e-5,
                rtol=1e-4,
            )
            la = padded[f"{prefix}log_assignment"][b]
            torch.testing.assert_close(
                la[:n0, :n1],
                a[f"{prefix}log_assignment"][0, :n0, :n1],
                atol=1e-4,
                rtol=1e-4,
            )
        assert (alone[b]["matches0"] >= 0).sum() > 0  # the comparison is not vacuous
    assert (alone[0]["line_matches0"] >= 0).sum() > 0


def test_tiled_endpoint_scores_are_upstreams_per_pair():
    """Upstream gives endpoint k of an image with L lines the score of line k mod L."""
    model = GlueStick({})
    scores = torch.rand(1, 5)
    assert torch.equal(model._endpoint_scores(scores, None), scores.repeat(1, 2))
    padded = torch.cat([scores, torch.rand(1, 3)], 1)
    mask = torch.arange(8)[None] < 5
    assert torch.equal(
        model._endpoint_scores(padded, mask)[:, :10], scores.repeat(1, 2)
    )


def test_line_score_is_independent_of_endpoint_order():
    torch.manual_seed(0)
    model = GlueStick(tiny_gluestick()).eval()
    data = batch(3, 4)
    flipped = dict(data)
    flipped["lines1"] = data["lines1"].flip(2)
    flipped["lines_junc_idx1"] = data["lines_junc_idx1"].flip(2)
    with torch.no_grad():
        a, b = model(data), model(flipped)
    torch.testing.assert_close(a["raw_line_scores"], b["raw_line_scores"])
    assert torch.equal(a["line_matches0"], b["line_matches0"])


def _without(data: dict, *keys: str) -> dict:
    """The pair with no lines (and none of ``keys``) in image 1."""
    out = dict(data)
    for k in ("lines", "line_scores", "lines_junc_idx", *keys):
        out[f"{k}1"] = data[f"{k}1"][:, :0]
    return out


def test_outputs_and_empty_inputs():
    model = GlueStick(tiny_gluestick(inter_supervision=[0, 2])).eval()
    data = batch(0, 1)
    with torch.no_grad():
        pred = model(data)
    b, n, nl = 2, data["keypoints0"].shape[1], data["lines0"].shape[1]
    assert pred["log_assignment"].shape == (b, n + 1, n + 1)
    assert pred["line_log_assignment"].shape == (b, nl + 1, nl + 1)
    assert pred["raw_line_scores"].shape == (b, nl, nl)
    for k in (0, 2):
        assert pred[f"line_{k}_matches0"].shape == (b, nl)
    no_points = _without(data, "keypoints", "descriptors", "keypoint_scores")
    with torch.no_grad():
        pred = model(no_points)
    assert pred["log_assignment"].shape == (b, n + 1, 1)
    assert (pred["matches0"] == -1).all() and (pred["line_matches0"] == -1).all()
    no_lines = _without(data)
    with torch.no_grad():
        pred = model(no_lines)
    assert pred["line_log_assignment"].shape == (b, nl + 1, 1)
    assert (pred["line_matches0"] == -1).all()
    assert torch.isfinite(pred["log_assignment"]).all()


def _manual_nll(la, gt0, gt1, balancing=0.5):
    """The balanced NLL of one pair, from its definition (facts 4.4)."""
    m, n = la.shape[0] - 1, la.shape[1] - 1
    pos = [-la[i, j] for i, j in enumerate(gt0.tolist()) if j >= 0]
    neg = [-la[i, n] for i in range(m) if gt0[i] == -1]
    neg += [-la[m, j] for j in range(n) if gt1[j] == -1]
    nll_pos = sum(pos) / max(1, len(pos))
    nll_neg = sum(neg) / max(1, len(neg))
    return balancing * nll_pos + (1 - balancing) * nll_neg


def test_loss_is_balanced_nll_of_points_lines_and_intermediate_layers():
    torch.manual_seed(0)
    conf = tiny_gluestick(inter_supervision=[0, 2])
    model = GlueStick(conf).train()
    data = batch(5, 6)
    data["gt_matches0"][0, :3] = -2  # ignored points carry no weight
    pred = model(data)
    losses, metrics = model.loss(pred, data)
    for b in range(2):
        point = _manual_nll(
            pred["log_assignment"][b], data["gt_matches0"][b], data["gt_matches1"][b]
        )
        line = _manual_nll(
            pred["line_log_assignment"][b],
            data["gt_line_matches0"][b],
            data["gt_line_matches1"][b],
        )
        inter = [
            _manual_nll(
                pred[f"line_{k}_log_assignment"][b],
                data["gt_line_matches0"][b],
                data["gt_line_matches1"][b],
            )
            for k in (0, 2)
        ]
        assert losses["assignment_nll"][b].item() == pytest.approx(
            point.item(), rel=1e-5
        )
        assert losses["line_assignment_nll"][b].item() == pytest.approx(
            line.item(), rel=1e-5
        )
        expected = point + line + 0.3 * inter[0] + 0.6 * inter[1]
        assert losses["total"][b].item() == pytest.approx(expected.item(), rel=1e-5)
    for k in (
        "match_recall",
        "line_match_recall",
        "line_match_precision",
        "line_bin_score",
    ):
        assert k in {**losses, **metrics}


def _steps(model, data, n: int, lr: float = 3e-3) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr)
    out = []
    for _ in range(n):
        losses, _ = model.loss(model(data), data)
        loss = losses["total"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(loss.item())
    return out


def test_training_steps_decrease_the_loss_and_are_deterministic():
    data = batch(7, 8)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = GlueStick(tiny_gluestick(inter_supervision=[1])).train()
        runs.append(_steps(model, data, 6))
    assert runs[0] == runs[1]  # bit for bit
    assert all(map(math.isfinite, runs[0])) and runs[0][-1] < 0.5 * runs[0][0]


@pytest.mark.slow
def test_overfit_one_batch_reaches_high_line_recall():
    """Descriptors too noisy for the untrained model; one batch learnt by heart."""
    data = batch(11, 12, desc_noise=1.5)
    torch.manual_seed(0)
    model = GlueStick(tiny_gluestick())
    with torch.no_grad():
        _, before = model.eval().loss(model(data), data)
    _steps(model.train(), data, 60)
    with torch.no_grad():
        _, after = model.eval().loss(model(data), data)
    assert before["line_match_recall"].mean() < 0.5
    assert after["line_match_recall"].mean() > 0.9
    assert after["line_match_precision"].mean() > 0.9


def _trainer_conf(**train) -> dict:
    """gluestick_toy pairs (cached wireframes, ground truth in the data) -> tiny
    GlueStick, through the two-view pipeline."""
    return {
        "data": {"name": "gluestick_toy", "batch_size": 2, "num_workers": 0},
        "model": {
            "name": "two_view_pipeline",
            "extractor": {"name": None},
            "matcher": tiny_gluestick(inter_supervision=[1]),
        },
        "train": {
            "seed": 0,
            "epochs": 1,
            "lr": 3e-3,
            "log_every_iter": 1,
            "eval_every_iter": 1000,
            "save_every_iter": 2,
            "eval_0": False,
            "plot": 0,
            "device": "cpu",
            **train,
        },  # fmt: skip
    }


@pytest.mark.slow
def test_trainer_accumulation_mixed_precision_and_exact_resume(tmp_path, monkeypatch):
    """``gluefactory.train`` on GlueStick: 2 micro-batches per step in bfloat16; a run
    killed after its step-2 checkpoint and restored ends with the reference weights."""
    from gluefactory.trainer import checkpoints as ckpts
    from gluefactory.trainer import step as step_module
    from gluefactory.trainer import train

    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path))
    root = tmp_path / "training"
    conf = _trainer_conf(accumulate=2, mixed_precision="bfloat16", max_steps=4)
    conf["data"]["num_train"] = 16  # 8 batches = 4 optimizer steps
    ref = train("reference", conf)
    assert ref["status"] in ("finished", "max_steps") and ref["step"] == 4

    original = step_module.Stepper.optimizer_step

    def killed_at_3(self, step):
        if step == 3:
            raise RuntimeError("killed")
        return original(self, step)

    with monkeypatch.context() as m, pytest.raises(RuntimeError, match="killed"):
        m.setattr(step_module.Stepper, "optimizer_step", killed_at_3)
        train("killed", conf)
    res = train("killed", {}, restore=True)
    assert res["step"] == 4
    a = ckpts.load(ckpts.list_checkpoints(root / "reference")[-1])["model"]
    b = ckpts.load(ckpts.list_checkpoints(root / "killed")[-1])["model"]
    assert a.keys() == b.keys()
    assert any("running_mean" in k for k in a)  # BatchNorm statistics are restored too
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=k)
    losses = [
        r["loss/total"]
        for r in map(
            json.loads, (root / "reference" / "metrics.jsonl").read_text().splitlines()
        )
        if r["kind"] == "train"
    ]
    assert len(losses) == 4 and all(map(math.isfinite, losses))
    assert losses[-1] < losses[0]
