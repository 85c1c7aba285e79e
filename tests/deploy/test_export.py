"""export_pipeline / export_onnx: the files, the manifest, and clear errors that leave
no file behind."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from deploy_helpers import small_pipeline

from gluefactory.deploy import export as export_mod
from gluefactory.deploy.export import OPSET, export_pipeline, read_manifest
from gluefactory.export_onnx import export_onnx, main
from gluefactory.models import get_model
from gluefactory.utils.errors import ConfigError


def _model(**conf):
    return get_model("two_view_pipeline")(conf).eval()


def test_export_writes_one_graph_per_stage(tmp_path):
    out = export_onnx({"model": small_pipeline(depth_confidence=0.9)}, tmp_path / "x")
    manifest = read_manifest(out)
    assert manifest["opset"] == OPSET and "extractor" not in manifest
    spec = manifest["matcher"]
    assert spec["n_layers"] == 3 and spec["depth_confidence"] == 0.9
    names = {p.name for p in out.iterdir()}
    assert names == {
        "manifest.json",
        "matcher_encode.onnx",
        *(f"matcher_{s}{i}.onnx" for s in ("layer", "assign") for i in range(3)),
    }
    layer = onnx.load(out / "matcher_layer0.onnx")
    onnx.checker.check_model(layer)
    assert layer.opset_import[0].version == OPSET
    inputs = [i.name for i in layer.graph.input]
    assert inputs == ["x0", "x1", "cos0", "sin0", "cos1", "sin1"]
    outputs = [o.name for o in layer.graph.output]
    assert outputs == ["y0", "y1", "conf0", "conf1", "match0", "match1"]
    last = onnx.load(out / "matcher_layer2.onnx")  # no confidence head after the last
    assert [o.name for o in last.graph.output] == ["y0", "y1"]
    dims = layer.graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_param == "M"  # dynamic number of keypoints


def test_export_keeps_the_model_in_eval_mode(tmp_path):
    model = _model(**{k: v for k, v in small_pipeline().items() if k != "name"})
    export_pipeline(model, tmp_path / "x")
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize(
    "matcher, key",
    [
        ({"add_scale_ori": True}, "add_scale_ori"),
        ({"mp": True}, "mp"),
    ],
)
def test_unsupported_matcher_options_name_the_option(tmp_path, matcher, key):
    conf = {"model": small_pipeline(**matcher)}
    with pytest.raises(ConfigError, match=key):
        export_onnx(conf, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert list(tmp_path.iterdir()) == []


def test_unsupported_components_name_the_option(tmp_path):
    nn_conf = {"name": "two_view_pipeline", "matcher": {"name": "nearest_neighbor"}}
    with pytest.raises(ConfigError, match="matchers.lightglue"):
        export_onnx({"model": nn_conf}, tmp_path / "x")
    xfeat = {
        "name": "two_view_pipeline",
        "extractor": {"name": "extractors.xfeat", "dense": True, "weights": None},
        "matcher": {"name": "matchers.lightglue", "input_dim": 64, "n_layers": 1},
    }
    with pytest.raises(ConfigError, match="dense"):
        export_onnx({"model": xfeat}, tmp_path / "x")
    xfeat["extractor"] = {
        "name": "extractors.xfeat",
        "weights": None,
        "max_num_keypoints": 10,
        "force_num_keypoints": True,
    }
    with pytest.raises(ConfigError, match="force_num_keypoints"):
        export_onnx({"model": xfeat}, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_an_operator_that_does_not_export_leaves_no_file(tmp_path, monkeypatch):
    """A failure after some graphs are written: a ConfigError, and the previous export
    (if any) untouched."""
    out = export_onnx({"model": small_pipeline()}, tmp_path / "x")
    before = (out / "manifest.json").read_text()
    calls = []
    real = torch.onnx.export

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise torch.onnx.errors.UnsupportedOperatorError("aten::foo", 17, 18)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", failing)
    with pytest.raises(ConfigError, match="aten::foo"):
        export_onnx({"model": small_pipeline(n_layers=2)}, tmp_path / "x")
    assert (out / "manifest.json").read_text() == before
    assert json.loads(before)["matcher"]["n_layers"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]
    calls.clear()  # a first export that fails: no folder at all
    with pytest.raises(ConfigError, match="aten::foo"):
        export_onnx({"model": small_pipeline(n_layers=2)}, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_read_manifest_errors(tmp_path):
    with pytest.raises(ConfigError, match="not an ONNX export folder"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 0}))
    with pytest.raises(ConfigError, match="re-export the model"):
        read_manifest(tmp_path)
    # format 1: the extractor's selection ran in PyTorch from extractor.pt
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1}))
    with pytest.raises(ConfigError, match=r"extractor.pt\); re-export"):
        read_manifest(tmp_path)


def test_an_extractor_without_top_k_names_the_option(tmp_path):
    conf = {
        "name": "two_view_pipeline",
        "extractor": {"name": "extractors.xfeat", "max_num_keypoints": -1},
        "matcher": {"name": "matchers.lightglue", "input_dim": 64, "n_layers": 1},
    }
    with pytest.raises(ConfigError, match="max_num_keypoints=-1"):
        export_onnx({"model": conf}, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_cli_exports_and_reports_user_errors(tmp_path, capsys):
    conf = tmp_path / "c.yaml"
    conf.write_text(
        "model: {name: two_view_pipeline, matcher: {name: matchers.lightglue, "
        "input_dim: 16, descriptor_dim: 32, n_layers: 1, num_heads: 1}}\n"
    )
    out = main(["--conf", str(conf), "--output", str(tmp_path / "o")])
    assert (out / "manifest.json").is_file()
    with pytest.raises(SystemExit) as e:
        main(
            [
                "--conf",
                str(conf),
                "--output",
                str(tmp_path / "p"),
                "model.matcher.mp=true",
            ]
        )
    assert e.value.code == 2
    assert "mp" in capsys.readouterr().err
    assert export_mod.FORMAT == read_manifest(out)["format"]


def test_a_size_frozen_by_the_trace_is_caught(tmp_path):
    """A module that reads a size into Python exports at the traced size only: the
    check at another size fails with a ConfigError naming the graph, output and sizes."""
    from gluefactory.deploy.graph import export_graph

    class Frozen(torch.nn.Module):
        def forward(self, x):
            return x * float(x.shape[-1])

    args = dict(inputs=["x"], outputs=["y"], dynamic={"x": {1: "n"}}, opset=OPSET)
    path = tmp_path / "ok.onnx"
    export_graph(
        torch.nn.Identity(), [torch.ones(1, 3)], [torch.ones(1, 5)], path, **args
    )
    with pytest.raises(ConfigError, match=r"frozen.onnx output 'y'.*x \(1, 5\)"):
        export_graph(
            Frozen(),
            [torch.ones(1, 3)],
            [torch.ones(1, 5)],
            tmp_path / "frozen.onnx",
            **args,
        )


def test_deformable_convolution_exports_its_size_dependent_offset_limit(tmp_path):
    """ALIKED's deformable convolution clamps offsets to max(H, W) / 4 of its input:
    with large offsets the limit decides the output, so a limit frozen at the traced
    size would fail the check at the other size."""
    from gluefactory.deploy.graph import export_graph
    from gluefactory.models.utils.deform_conv import DeformConv2d

    conv = DeformConv2d(2, 3)
    torch.nn.init.constant_(conv.offset_conv.bias, 50.0)  # beyond any limit
    g = torch.Generator().manual_seed(0)
    trace, check = (
        [torch.rand(1, 2, h, w, generator=g)] for h, w in ((8, 12), (20, 16))
    )
    export_graph(
        conv, trace, check, tmp_path / "dcn.onnx", ["x"], ["y"],
        {"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}}, OPSET, atol=1e-5,
    )  # fmt: skip
