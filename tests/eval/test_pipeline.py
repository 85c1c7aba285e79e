"""End to end: export once, evaluate from the cache, sweep, guard, atomic writes.

Runs the real HPatches and MegaDepth-1500 pipelines (real SIFT / XFeat features, mutual
NN) on tiny datasets of real photographs that follow the dataset item contract
(``eval_toy_homography``: photos warped by known H; ``eval_toy_posed``: the Middlebury
Motorcycle stereo pair with depth).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gluefactory.eval import sweep as sweep_mod
from gluefactory.eval.cli import run_benchmark
from gluefactory.eval.hpatches import HPatchesPipeline
from gluefactory.eval.megadepth1500 import MegaDepth1500Pipeline
from gluefactory.eval.metrics import auc
from gluefactory.eval.results import read_json, read_results
from gluefactory.models.two_view_pipeline import TwoViewPipeline
from gluefactory.utils.errors import ConfigError

HP_ARGS = [
    "--conf",
    "sift+NN",
    "data.name=eval_toy_homography",
    "data.preprocessing.resize=240",
    "model.extractor.max_num_keypoints=256",
    "eval.progress=false",
    "eval.num_worst=1",
]


def hp(*extra):
    return run_benchmark(HPatchesPipeline, [*HP_ARGS, *extra])


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """One real run (export + evaluation), shared by the tests through copies."""
    root = tmp_path_factory.mktemp("base")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLUEFACTORY_OUTPUTS", str(root / "outputs"))
        mp.setenv("GLUEFACTORY_DATA", str(root / "data"))
        summaries, out = hp(
            "--tag", "t", "eval.ransac_th=[1.0,3.0]", "eval.estimator=poselib"
        )
    return summaries, out


@pytest.fixture
def first_run(roots, base_run):
    summaries, base = base_run
    out = roots / "outputs" / "results" / "hpatches" / "t"
    shutil.copytree(base, out)
    return summaries, out


def test_hpatches_outputs_and_protocol(first_run):
    summaries, out = first_run
    for f in (
        "conf.yaml",
        "predictions.h5",
        "results.h5",
        "summaries.json",
        "homography_recall.png",
        "worst_pairs.png",
    ):
        assert (out / f).is_file(), f
    assert not list(out.glob(".*tmp*"))
    res = read_results(out / "results.h5")
    assert len(res["names"]) == 4
    # medians for the per-match metrics and inliers (HPatches), under both names
    for key in ("prec@1px", "prec@3px", "num_matches", "ransac_inl"):
        med = float(np.median(res[key]))
        assert summaries[f"median_{key}"] == pytest.approx(med)
        assert summaries[f"m{key}"] == pytest.approx(med)
    # AUCs over all pairs, rounded to 4 decimals; mAA = mean of the rounded AUCs
    dlt = auc(res["H_error_dlt"], [1, 3, 5], round=4)
    assert [summaries[f"H_error_dlt@{t}px"] for t in (1, 3, 5)] == dlt
    assert summaries["H_error_dlt_mAA"] == pytest.approx(np.mean(dlt))
    for t in (1, 3, 5):
        assert summaries[f"H_error_ransac@{t}px"] == round(
            summaries[f"H_error_ransac@{t}px"], 4
        )
    # the sweep keeps the threshold with the best mAA
    sweep = read_json(out / "sweep.json")
    maas = {th: sweep[f"H_error_ransac_mAA@th={th}"] for th in ("1", "3")}
    best = max(maas, key=lambda k: (maas[k], -float(k)))
    assert summaries["ransac_th"] == float(best)
    assert summaries["H_error_ransac_mAA"] == pytest.approx(maas[best])
    assert res["H_error_ransac"] == pytest.approx(res["sweep"][best]["H_error_ransac"])
    # real features on real photos: the known warps are recovered
    assert summaries["mprec@3px"] > 0.8
    assert summaries["H_error_ransac@5px"] > 0.8
    timings = json.loads((out / "timings.json").read_text())
    assert timings["extractions"] == 6  # 4 pairs, 6 distinct images (image 1 shared)


def test_keypoints_stored_in_original_pixels(first_run):
    _, out = first_run
    # coffee is 400 x 600, resized to 240 x 360: stored keypoints span the original
    names = read_results(out / "results.h5")["names"]
    with h5py.File(out / "predictions.h5", "r") as f:
        kp = np.concatenate(
            [f[n]["keypoints0"][()] for n in names if n.startswith("seq0")]
        )
        assert f.attrs["complete"]
    assert kp[:, 0].max() > 360 and kp[:, 0].max() <= 600
    assert kp[:, 1].max() > 240 and kp[:, 1].max() <= 400


def test_export_and_rescale_roundtrip():
    data = {
        "view0": {"scales": torch.tensor([[0.5, 0.25]])},
        "view1": {"scales": torch.tensor([[2.0, 2.0]])},
    }
    pred = {
        "keypoints0": torch.tensor([[[10.0, 10.0]]]),
        "keypoints1": torch.tensor([[[10.0, 10.0]]]),
        "matches0": torch.tensor([[0]]),
    }
    stored = HPatchesPipeline.to_export(data, pred)
    assert stored["keypoints0"].tolist() == [[20.0, 40.0]]
    assert stored["keypoints1"].tolist() == [[5.0, 5.0]]
    back = HPatchesPipeline.from_export(data, stored)
    assert back["keypoints0"].tolist() == [[10.0, 10.0]]


def test_rerun_eval_only_does_not_run_the_network(first_run, monkeypatch):
    summaries, out = first_run

    def no_forward(*args, **kwargs):
        raise AssertionError("the network ran although only eval.* changed")

    monkeypatch.setattr(TwoViewPipeline, "_forward", no_forward)
    monkeypatch.setattr(HPatchesPipeline, "build_model", no_forward)
    # same tag, other estimator: refused without --overwrite_eval ...
    with pytest.raises(ConfigError, match="--overwrite_eval"):
        hp("--tag", "t", "eval.ransac_th=2.0")
    # ... and re-evaluated from the cache with it
    s2, out2 = hp("--tag", "t", "eval.ransac_th=2.0", "--overwrite_eval")
    assert out2 == out and s2["ransac_th"] == 2.0
    assert s2["mprec@3px"] == summaries["mprec@3px"]
    # default tag (a new folder): the predictions of the same data+model are reused
    s3, out3 = hp("eval.ransac_th=2.5")
    assert out3 != out and (out3 / "predictions.h5").is_file()
    assert s3["mnum_matches"] == summaries["mnum_matches"]
    # a run with identical config returns the stored summaries
    s4, _ = hp("eval.ransac_th=2.5")
    assert s4 == pytest.approx(read_json(out3 / "summaries.json"), nan_ok=True)


def test_changed_model_refuses_without_overwrite(first_run):
    _, out = first_run
    with pytest.raises(ConfigError, match="--overwrite"):
        hp("--tag", "t", "model.extractor.max_num_keypoints=128")
    s, _ = hp("--tag", "t", "model.extractor.max_num_keypoints=128", "--overwrite")
    assert s["mnum_keypoints"] <= 128


def test_killed_export_leaves_no_trusted_cache(roots, monkeypatch):
    calls = {"n": 0}
    forward = TwoViewPipeline._forward

    def dying(self, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed mid-export
        return forward(self, data)

    monkeypatch.setattr(TwoViewPipeline, "_forward", dying)
    with pytest.raises(KeyboardInterrupt):
        hp("--tag", "k")
    out = roots / "outputs" / "results" / "hpatches" / "k"
    assert not (out / "predictions.h5").exists()
    assert not list(out.glob(".*tmp*"))
    monkeypatch.setattr(TwoViewPipeline, "_forward", forward)
    s, _ = hp("--tag", "k")  # same config: simply exports again
    assert s["mnum_matches"] > 0


def test_estimator_built_once_per_threshold(first_run, monkeypatch):
    built = []
    real = sweep_mod.load_estimator

    def counting(kind, conf):
        built.append(conf["ransac_th"])
        return real(kind, conf)

    monkeypatch.setattr(sweep_mod, "load_estimator", counting)
    hp("--tag", "t", "--overwrite_eval", "eval.ransac_th=[0.5,1,2]", "eval.workers=1")
    assert sorted(built) == [0.5, 1.0, 2.0]


@pytest.mark.slow  # starting worker processes takes ~10-20 s on a loaded 2-core machine
def test_parallel_sweep_equals_serial(first_run, monkeypatch):
    _, out = first_run
    serial, _ = hp(
        "--tag", "t", "--overwrite_eval", "eval.ransac_th=-1", "eval.workers=1"
    )
    monkeypatch.setattr(sweep_mod, "MIN_PARALLEL_JOBS", 0)
    par, _ = hp("--tag", "t", "--overwrite_eval", "eval.ransac_th=-1", "eval.workers=2")
    assert par == pytest.approx(serial, nan_ok=True)
    timings = json.loads((out / "timings.json").read_text())
    assert timings["sweep_workers"] == 2


def test_megadepth_export_low_res_evaluate_original(roots):
    s, out = run_benchmark(
        MegaDepth1500Pipeline,
        [
            "--conf",
            "xfeat+NN",
            "data.name=eval_toy_posed",
            "data.preprocessing.resize=370",  # half of the 741 px width
            "model.extractor.max_num_keypoints=512",
            "eval.progress=false",
            "eval.num_worst=1",
            "eval.estimator=poselib",
            "eval.ransac_th=1.0",
        ],
    )
    res = read_results(out / "results.h5")
    # means for the match metrics, medians for the inliers (MegaDepth-1500)
    assert s["mepi_prec@1e-3"] == pytest.approx(np.mean(res["epi_prec@1e-3"]))
    assert s["mreproj_prec@3px"] == pytest.approx(np.mean(res["reproj_prec@3px"]))
    assert s["mransac_inl"] == pytest.approx(np.median(res["ransac_inl"]))
    assert s["rel_pose_error@5°"] == s["rel_pose_error@5deg"]
    # keypoints rescaled to the original resolution of the evaluation loader: wrong
    # scales would put the matches far off the (horizontal) epipolar lines
    assert s["mepi_prec@1e-3"] > 0.5
    assert s["mreproj_prec@5px"] > 0.5
    assert 0 < s["mgt_match_recall@3px"] <= 1
    assert (out / "pose_recall.png").is_file()
    with h5py.File(out / "predictions.h5", "r") as f:
        assert f["motorcycle/left-right"]["keypoints0"][()][:, 0].max() > 370


def test_compare_two_runs(first_run, capsys):
    from gluefactory.eval.compare import main as compare_main

    hp("--tag", "u", "eval.ransac_th=3.0")  # reuses t's predictions
    table = compare_main(["t", "u", "--benchmark", "hpatches"])
    head = table.splitlines()[0].split()
    assert head[:3] == ["metric", "t", "u"]
    line = next(row for row in table.splitlines() if row.startswith("ransac_th "))
    assert line.split()[1:3] == ["1.0000", "3.0000"]
    out = capsys.readouterr().out
    fig = out.strip().splitlines()[-1].split(": ", 1)[1]
    assert fig.endswith(".png") and Path(fig).stat().st_size > 10_000


@pytest.fixture
def forwards(monkeypatch):
    """Counts the pipeline's forward passes: ``forwards["n"]``."""
    calls = {"n": 0}
    forward = TwoViewPipeline._forward

    def counting(self, data):
        calls["n"] += 1
        return forward(self, data)

    monkeypatch.setattr(TwoViewPipeline, "_forward", counting)
    return calls


def test_overwrite_reruns_the_network(first_run, forwards):
    calls = forwards
    hp("eval.ransac_th=2.5")  # reuses the predictions of "t"
    assert calls["n"] == 0
    hp("eval.ransac_th=2.5", "--overwrite")  # never reuses another export
    assert calls["n"] == 4


CKPT_ARGS = [
    "data.name=eval_toy_homography",
    "data.preprocessing.resize=240",
    "model.extractor.max_num_keypoints=128",
    "eval.progress=false",
    "eval.num_worst=0",
]


def fake_experiment(roots, name: str):
    """A training experiment holding the xfeat+NN eval model as its one checkpoint."""
    from omegaconf import OmegaConf

    from gluefactory.eval.io import compose_eval_conf
    from gluefactory.trainer.checkpoints import atomic_save

    bench = HPatchesPipeline(compose_eval_conf("hpatches", "xfeat+NN"))
    model = bench.build_model(None)
    exp = roots / "outputs" / "training" / name
    train_conf = {"model": OmegaConf.to_container(bench.conf.model), "train": {}}
    exp.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(train_conf), exp / "config.yaml")
    atomic_save(
        {"model": model.state_dict(), "conf": train_conf}, exp / "checkpoint_0_10.tar"
    )
    return exp, model, train_conf


def test_checkpoint_of_an_experiment(roots):
    """--checkpoint NAME evaluates the experiment's weights with its model config."""
    ref, _ = run_benchmark(HPatchesPipeline, ["--conf", "xfeat+NN", *CKPT_ARGS])
    fake_experiment(roots, "my_exp")
    s, out = run_benchmark(HPatchesPipeline, ["--checkpoint", "my_exp", *CKPT_ARGS])
    assert out.name.startswith("my_exp_")
    assert s["mnum_matches"] == ref["mnum_matches"]
    assert s["H_error_dlt_mAA"] == ref["H_error_dlt_mAA"]


def test_retrained_checkpoint_is_not_taken_from_the_cache(roots):
    """The same --checkpoint NAME after retraining is another model: the cached
    predictions of the first weights must not be reused (sha256 of the file)."""
    import torch

    from gluefactory.trainer.checkpoints import atomic_save

    args = CKPT_ARGS
    exp, model, train_conf = fake_experiment(roots, "retrained")
    first, out = run_benchmark(HPatchesPipeline, ["--checkpoint", "retrained", *args])
    again, _ = run_benchmark(HPatchesPipeline, ["--checkpoint", "retrained", *args])
    assert again == first  # unchanged weights: cached

    # "retraining": a newer checkpoint with other weights, under the same name
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    for v in state.values():
        if v.is_floating_point() and v.dim() == 4:  # conv kernels
            v.add_(torch.randn_like(v) * v.std())
    atomic_save({"model": state, "conf": train_conf}, exp / "checkpoint_0_20.tar")
    with pytest.raises(ConfigError, match="checkpoint_sha256"):
        run_benchmark(HPatchesPipeline, ["--checkpoint", "retrained", *args])
    new, out2 = run_benchmark(
        HPatchesPipeline, ["--checkpoint", "retrained", "--overwrite", *args]
    )
    assert out2 == out
    assert new["mnum_matches"] != first["mnum_matches"]


def test_changed_data_files_are_exported_again(roots, monkeypatch, forwards):
    """A real HPatches-format tree: identical files reuse the predictions (also after
    the data folder moved), an edited homography file is exported and evaluated again."""
    import os

    from tests.datasets.test_hpatches import skd, write_sequence

    data = roots / "data" / "hp"
    write_sequence(data / "v_coffee", skd.coffee()[::2, ::2].copy())
    args = ["--conf", "sift+NN", "data.data_dir=hp", "--tag", "t",
            "model.extractor.max_num_keypoints=128", "eval.progress=false",
            "eval.num_worst=0", "eval.ransac_th=3.0", "eval.workers=1"]  # fmt: skip
    calls = forwards
    first, out = run_benchmark(HPatchesPipeline, args)
    assert calls["n"] == 5 and read_results(out / "results.h5")["prec@3px"].min() > 0.8
    again, _ = run_benchmark(HPatchesPipeline, args)
    assert calls["n"] == 5 and again == pytest.approx(first, nan_ok=True)
    # the data root moved (same relative layout, times kept): still reused
    os.rename(roots / "data", roots / "data2")
    monkeypatch.setenv("GLUEFACTORY_DATA", str(roots / "data2"))
    run_benchmark(HPatchesPipeline, args)
    assert calls["n"] == 5
    # one homography file rewritten: exported and evaluated again, with its effect
    h = roots / "data2" / "hp" / "v_coffee" / "H_1_2"
    st = h.stat()
    np.savetxt(h, np.eye(3))
    os.utime(h, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    changed, _ = run_benchmark(HPatchesPipeline, args)
    assert calls["n"] == 10
    prec = read_results(out / "results.h5")["prec@3px"]  # pair 1-2 first
    assert prec[0] == 0 and prec[1:].min() > 0.8  # its GT is now the identity
    assert read_json(out / "summaries.json") == pytest.approx(changed, nan_ok=True)


def test_metrics_loop_decodes_no_image(roots, monkeypatch):
    """The evaluation reads sizes and geometry without decoding images (HPatches
    ``read_image: false``); only the figure decodes its pair; the summaries equal those
    of an evaluation that decodes every image."""
    from gluefactory.datasets import hpatches as hpatches_data
    from gluefactory.datasets.sources import builtin_hpatches

    builtin_hpatches.build(roots / "hp", 0, only=["v_astronaut"])
    args = ["--conf", "sift+NN", f"data.data_dir={roots / 'hp'}",
            "data.preprocessing.resize=240", "model.extractor.max_num_keypoints=256",
            "eval.progress=false", "eval.num_worst=1", "eval.ransac_th=1.0",
            "eval.estimator=poselib", "--tag", "t"]  # fmt: skip
    run_benchmark(HPatchesPipeline, args)  # the export
    decoded, read = [], hpatches_data.read_image
    monkeypatch.setattr(hpatches_data, "read_image",
                        lambda path, **kw: decoded.append(path) or read(path, **kw))  # fmt: skip
    sizes_only, out = run_benchmark(HPatchesPipeline, [*args, "--overwrite_eval"])
    assert len(decoded) == 2 and (out / "worst_pairs.png").is_file()
    monkeypatch.setattr(hpatches_data.HPatches, "sizes_without_images", False)
    decoded.clear()
    all_images, _ = run_benchmark(HPatchesPipeline, [*args, "--overwrite_eval"])
    assert len(decoded) == 2 * 5 + 2  # 5 pairs, and the figure's
    assert sizes_only == pytest.approx(all_images, nan_ok=True)
