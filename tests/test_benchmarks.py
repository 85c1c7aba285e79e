"""The benchmark scripts that check results before timing them run and print their
table (timings themselves are not asserted: they belong to docs/benchmarks.md)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch

from benchmarks import common, deploy_onnx
from gluefactory.utils.errors import UserError


def test_time_alternately_and_table():
    calls = []
    t = common.time_alternately(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b"), "c": None}, 3
    )
    assert calls == ["a", "b"] * 4  # one warm-up each, then in turn
    assert t["c"] is None and t["a"].min <= t["a"].median <= t["a"].max
    assert common.table(["x", "y"], [(1, "2")]) == "| x | y |\n|---|---|\n| 1 | 2 |"


def test_peer_runner_measures_a_script_under_the_driver(tmp_path, monkeypatch):
    """The driver runs a script in any interpreter (here ours), records its optimizer
    steps and outermost module calls, and keeps benchmarks/ off the script's path."""
    script = tmp_path / "steps.py"
    script.write_text(
        "import sys, torch\n"
        "assert not any(p.endswith('benchmarks') for p in sys.path), sys.path\n"
        "p = torch.nn.Parameter(torch.zeros(2))\n"
        "opt = torch.optim.SGD([p], 0.1)\n"
        "for _ in range(3):\n"
        "    torch.nn.Linear(2, 2)(p[None]).sum().backward()\n"
        "    opt.step()\n"
    )
    from benchmarks import peer

    ours = common.Interpreter.ours(1, tmp_path / "outputs")
    assert ours.env["OMP_NUM_THREADS"] == "1"
    r = ours.run(str(script), [], "train", tmp_path / "train.log")
    assert r["code"] == 0 and r["wall_s"] >= r["run_s"] > 0 and r["peak_rss_mb"] > 0
    assert len(r["steps"]) == 3 and r["calls"] == 0
    assert r["versions"]["torch"] == torch.__version__
    # peer.both: upstream's side, then ours (here the same interpreter twice)
    args = SimpleNamespace(workdir=tmp_path, sides={"ours": ours, "peer": ours},
                           versions={"ours": {}, "peer": {}})  # fmt: skip
    runs = peer.both(args, "eval", (str(script), []), (str(script), []), "eval")
    for r in runs.values():
        assert r["steps"] == [] and r["calls"] == 3 and r["by_class"]["Linear"][0] == 3
    assert args.versions["peer"]["torch"] == torch.__version__
    assert {p.name for p in tmp_path.glob("eval_*.log")} == {
        "eval_ours.log",
        "eval_peer.log",
    }
    log = tmp_path / "plain.log"
    script.write_text("raise SystemExit(3)\n")
    with pytest.raises(RuntimeError, match="exit 3"):
        ours.run(str(script), [], "plain", log)
    with pytest.raises(UserError, match="build_peer.sh"):
        common.Interpreter.peer(1, tmp_path / "no-peer")
    (tmp_path / "peer" / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "peer" / "venv" / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.setenv("GLUEFACTORY_DATA", "ours")
    peer = common.Interpreter.peer(1, tmp_path / "peer")  # none of our variables
    assert "GLUEFACTORY_DATA" not in peer.env and "PYTHONPATH" not in peer.env


@pytest.mark.slow
def test_deploy_onnx_checks_matches_and_prints_every_row(capsys):
    """ONNX against PyTorch: matches agree (asserted inside) before the timing rows."""
    pytest.importorskip("onnxruntime")
    deploy_onnx.main(["--keypoints", "256", "--runs", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line[:2] == "| "]
    assert len(rows) == 5, rows  # header; matcher full, adaptive; extractor; image pair


def test_learning_report_goes_through_the_eval_stages(tmp_path, monkeypatch):
    """The learning experiment's held-out numbers are the homographies benchmark's
    summaries (export, evaluate, summarize), with the training's precision / recall,
    their standard errors and a per-image breakdown."""
    from benchmarks import learning

    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("GLUEFACTORY_DATA", str(tmp_path / "data"))
    learning.PHOTOS.clear()
    monkeypatch.setattr(learning, "HELD_OUT", ("skimage_astronaut.png",))
    models = learning.matchers(trained=False)
    models.pop("official LighterGlue")
    res = learning.held_out(models, pairs=2)
    assert res["pairs"] == 2
    s = res["table"]["mutual NN"]
    assert 0 < s["mean_match_prec"] <= 1 and 0 < s["mean_match_rec"] <= 1
    assert s["sem_match_prec"] >= 0 and "H_error_ransac@3px" in s
    image = res["per_image"]["mutual NN"]["skimage_astronaut.png"]
    assert image["mean_match_rec"] == s["mean_match_rec"]  # the only image
    out = tmp_path / "outputs" / "results" / "learning" / "held-out" / "mutual_NN"
    assert (out / "summaries.json").is_file()
    assert "mutual NN" in learning.markdown({"held-out": res})[2]
    learning.PHOTOS.clear()


def test_speed_parts_and_their_options():
    """benchmarks.speed: one part per table; bad options fail before any work."""
    from benchmarks import speed

    args = speed.parse(
        ["--part", "extractors", "lightglue", "--sizes", "512", "--runs", "1"]
    )
    assert args.part == ["extractors", "lightglue"] and args.device == "cpu"
    for bad in ([], ["--part", "nope"], ["--part", "lightglue", "--sizes", "640x480"],
                ["--part", "extractors", "--only", "orb"]):  # fmt: skip
        with pytest.raises(SystemExit):
            speed.parse(bad)
    assert set(speed.PARTS) == {"extractors", "lightglue", "lsd", "lines", "gluestick"}


def test_speed_helpers():
    from benchmarks import speed

    x = common.photo("camera", "64x48")  # a grey photograph: three equal channels
    assert x.shape == (1, 3, 48, 64) and 0 <= x.min() and x.max() <= 1
    assert common.photo("motorcycle", "100").shape[-1] == 100
    f = (torch.rand(5, 2), torch.rand(5, 3), torch.tensor([640.0, 480.0]))
    one = speed.ours_input(f, f, [(4, 2)])
    assert one["keypoints0"].shape == (1, 4, 2) and "keypoint_mask0" not in one
    batch = speed.ours_input(f, f, [(4, 2), (1, 5)])
    assert batch["descriptors1"].shape == (2, 5, 3)
    assert batch["keypoint_mask0"].sum(1).tolist() == [4, 1]
    assert torch.equal(batch["keypoints1"][1], f[0])
    seg = torch.tensor([[[0.0, 0], [10, 0]], [[0, 5], [0, 15]]])
    assert speed.endpoint_share(seg, seg.flip(1)[:1]) == 0.5  # either orientation
    assert speed.endpoint_share(seg, seg[:0]) == 0.0
    cells = speed.versus(lambda: None, lambda: None, 2)[0]
    assert len(cells) == len(speed.VERSUS)
    assert speed.versus(lambda: None, None, 1)[0][1:] == ["-"] * 3


@pytest.mark.slow
def test_speed_lsd_part_prints_its_table(tmp_path):
    """The shortest part end to end: both LSD backends on the six photographs."""
    pytest.importorskip("pytlsd")
    from benchmarks import speed

    out = tmp_path / "lsd.md"
    text = speed.main(["--part", "lsd", "--runs", "1", "--output", str(out)])
    rows = [r for r in text.splitlines() if r.startswith("| ")]
    assert len(rows) == 1 + len(speed.PHOTOS) and out.read_text() == text
    assert all(int(r.split("|")[2]) > 50 for r in rows[1:])  # segments per photo


def test_gpu_check_trains_the_learning_recipe():
    """benchmarks/gpu.py's runs: the learning experiment's recipe, valid for the trainer."""
    from benchmarks import gpu
    from gluefactory.trainer.config import build_train_conf

    conf = build_train_conf(gpu.train_conf("float16", 5, devices=2))
    assert (conf.train.device, conf.train.num_devices, conf.train.max_steps) == (
        "cuda",
        2,
        5,
    )
    assert conf.train.mixed_precision == "float16" and conf.data.batch_size == 8
    assert (conf.model.matcher.n_layers, conf.model.matcher.num_heads) == (4, 4)


def test_recorded_run_and_the_learning_lines_report(tmp_path, monkeypatch):
    """A long run's record (wall, CPU, load) is what learning_lines' table states, and
    its curves are drawn from the experiment's metrics.jsonl."""
    import json

    from benchmarks import learning_lines

    with common.recorded(tmp_path / "run.json", period=0.01) as info:
        info["steps"], info["command"] = 7, "python -m gluefactory.train x"
        sum(i * i for i in range(10**5))
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["steps"] == 7 and run["wall_s"] >= 0 and run["cpu_s"] >= 0
    assert (
        run["load_1min"]["min"] <= run["load_1min"]["mean"] <= run["load_1min"]["max"]
    )
    results = {"trained GlueStick": {"mean_line_prec": 0.5, "mean_line_rec": float("nan"),
                                     "num_pairs": 4},
               "line NN": {"mean_line_prec": 0.25, "sem_line_prec": 0.0125,
                           "mean_num_line_matches": 12.0, "sem_num_line_matches": 1}}  # fmt: skip
    assert "went on" not in learning_lines.markdown(results, run, 7)
    text = learning_lines.markdown(results, run, 12)
    assert "went on after that run" in text and "step 12" in text
    assert (
        "4 pairs" in text
        and "7 steps" in text
        and "| trained GlueStick | 0.500 | n/a |" in text
        and "| line NN | 0.250 ± 0.013 | n/a | 12.0 |" in text  # sem: rates only
    )
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path))
    exp = tmp_path / "training" / "exp"
    exp.mkdir(parents=True)
    recs = [
        {"kind": "train", "step": 1, "loss/total": 2.0, "loss/assignment_nll": 1.0},
        {"kind": "val", "step": 1, "line_match_precision": 0.4, "match_recall": 0.3},
    ]
    (exp / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert learning_lines.curves("exp", tmp_path / "c.png").stat().st_size > 0


@pytest.mark.parametrize(
    "bad", [["--warmup", "0"], ["--size", "640"], ["--features", "orb"]]
)
def test_training_benchmark_rejects_bad_options(bad):
    from benchmarks import training

    with pytest.raises(SystemExit):
        training.main(bad)


@pytest.mark.slow
def test_gpu_check_evaluation_runs_both_devices_under_the_driver(tmp_path, monkeypatch):
    """The GPU check's evaluation part, on one built-in sequence: on a machine without a
    GPU both runs are CPU runs, so their summaries agree."""
    import shutil

    from benchmarks import gpu
    from gluefactory.datasets.sources.builtin import ensure_builtin

    shutil.copytree(
        ensure_builtin("hpatches") / "v_coffee", tmp_path / "hp" / "v_coffee"
    )
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path / "outputs"))
    text = gpu.evaluation(
        (f"data.data_dir={tmp_path / 'hp'}", "data.preprocessing.resize=240")
    )
    cells = [
        [c.strip() for c in r.strip("| ").split("|")] for r in text.splitlines()[4:]
    ]
    rows = {r[0]: r[1:] for r in cells}
    assert "models" in rows["time (s)"][0] and "models" in rows["time (s)"][1], text
    assert rows["H_error_dlt@3px"][0] == rows["H_error_dlt@3px"][1], text
