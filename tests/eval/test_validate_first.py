"""The evaluation CLIs validate everything before touching a results folder, report
faults of the environment as one line, and allow one writer per results tag
(docs/errors.md, rules 1 to 3). Nothing here runs a model: each case fails before."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from gluefactory.eval import provenance, stages
from gluefactory.eval.cli import prepare_benchmark
from gluefactory.eval.hpatches import HPatchesPipeline
from gluefactory.eval.hpatches import main as hpatches_main
from gluefactory.eval.megadepth1500 import main as md_main

TOY = ["--conf", "sift+NN", "data.name=eval_toy_homography", "eval.progress=false"]
FILES = ("conf.yaml", "predictions.h5", "results.h5", "summaries.json")

BAD = {
    "model typo": (
        "model.extractor.max_num_keypointz=3",
        "Did you mean 'max_num_keypoints'",
    ),
    "data typo": ("data.preprocessing.resise=240", "Did you mean 'resize'"),
    "data value": ("data.num_workers=-1", "data.num_workers must be an integer >= 0"),
    "eval typo": ("eval.ransac_thr=2", "Did you mean 'ransac_th'"),
    "estimator": ("eval.estimator=poselibb", "poselibb"),
    # found by tests/faults/test_eval_config_properties.py (tracebacks before)
    "yaml": ("eval.ransac_th=[", "cannot be parsed"),
    "section for a threshold": ("eval.ransac_th={a: 1}", "eval.ransac_th must be"),
    "interpolation": ("data.seed=${nothing}", "Interpolation key 'nothing' not found"),
}


def fails(main, argv, capsys) -> str:
    """Run a CLI in-process; it must exit 2 with one ``error:`` line and no
    traceback. Returns its stderr."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert err.count("error: ") == 1 and "Traceback" not in err, err
    return err


def tag_dir(roots: Path, tag: str = "T", bench: str = "hpatches") -> Path:
    return roots / "outputs" / "results" / bench / tag


@pytest.fixture
def earlier_run(roots):
    """Tag T holding the files of an earlier run of the toy config (contents
    stand-ins: nothing here reads them past ``conf.yaml``)."""
    bench, out, _ = prepare_benchmark(HPatchesPipeline, [*TOY, "--tag", "T"])
    out.mkdir(parents=True)
    OmegaConf.save(
        OmegaConf.create(provenance.saved_conf(bench.conf, None)), out / "conf.yaml"
    )
    for name in FILES[1:]:
        (out / name).write_bytes(f"earlier {name}".encode())
    return {p.name: p.read_bytes() for p in out.iterdir()}


@pytest.mark.parametrize("case", sorted(BAD))
def test_overwrite_with_a_bad_config_deletes_nothing(roots, earlier_run, capsys, case):
    override, message = BAD[case]
    err = fails(hpatches_main, [*TOY, "--tag", "T", "--overwrite", override], capsys)
    assert message in err
    out = tag_dir(roots)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier_run


def test_a_typo_on_an_existing_tag_is_a_typo_not_a_changed_key(
    roots, earlier_run, capsys
):
    err = fails(hpatches_main, [*TOY, "--tag", "T", BAD["model typo"][0]], capsys)
    assert "Did you mean 'max_num_keypoints'" in err
    assert "another data/model config" not in err and "--overwrite" not in err


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_config_writes_nothing(roots, capsys, case):
    override, message = BAD[case]
    assert message in fails(hpatches_main, [*TOY, "--tag", "T", override], capsys)
    assert not (roots / "outputs").exists()  # no conf.yaml, no folder, no lock


def test_the_model_is_checked_before_the_dataset_is_built(roots, monkeypatch, capsys):
    """HPatches is not there: building it would download 1.3 GB. A model typo is
    reported first."""
    from gluefactory.datasets.sources import locate

    def download(*args, **kwargs):
        raise AssertionError("the dataset was fetched before the model was checked")

    monkeypatch.setattr(locate, "ensure_archive", download)
    err = fails(hpatches_main, ["--conf", "sift+NN", BAD["model typo"][0]], capsys)
    assert "max_num_keypointz" in err


def test_weights_are_refused_before_the_data_is_fetched_and_leave_no_folder(
    roots, tmp_path, monkeypatch, capsys
):
    """Offline with an empty weights cache, HPatches absent: the weights manager's
    message, no download tried, no results folder made."""
    from gluefactory.datasets.sources import locate

    def download(*args, **kwargs):
        raise AssertionError("the dataset was fetched before the weights were found")

    monkeypatch.setattr(locate, "ensure_archive", download)
    monkeypatch.setenv("GLUEFACTORY_OFFLINE", "1")
    monkeypatch.setenv("GLUEFACTORY_WEIGHTS", str(tmp_path / "no_weights"))
    argv = ["--conf", "aliked+lightglue-official", "--tag", "T"]
    assert "are not in the cache" in fails(hpatches_main, argv, capsys)
    assert not tag_dir(roots).exists()


def test_data_that_cannot_be_had_leaves_no_folder(roots, monkeypatch, capsys):
    from gluefactory.datasets.sources import locate
    from gluefactory.utils.errors import DataError

    def unreachable(*args, **kwargs):
        raise DataError("HPatches cannot be downloaded here.")

    monkeypatch.setattr(locate, "ensure_archive", unreachable)
    err = fails(hpatches_main, ["--conf", "sift+NN", "--tag", "T"], capsys)
    assert "cannot be downloaded" in err
    assert not tag_dir(roots).exists()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gluefactory.eval.stages import results_lock
    out = Path(sys.argv[1])
    with results_lock(out):
        out.mkdir(parents=True, exist_ok=True)
        (out / ".predictions.h5.abc.tmp.h5").write_bytes(b"being written")
        print("holding", flush=True)
        time.sleep(120)
    """
)


def test_one_writer_per_results_tag(roots, capsys):
    """A second run on a tag that another process is writing says who holds it and
    exits 2; it deletes nothing (not the first run's temporary predictions). Once the
    holder is killed, its stale lock is taken over."""
    out = tag_dir(roots)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        err = fails(hpatches_main, [*TOY, "--tag", "T"], capsys)
        assert f"is in use by PID {holder.pid} on " in err
        assert (out / ".predictions.h5.abc.tmp.h5").read_bytes() == b"being written"
        assert not (out / "conf.yaml").exists()
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert (out.parent / ".T.lock").exists()  # left by the killed holder
    with stages.results_lock(out):  # stale: taken over
        pass


def test_conf_given_a_directory(roots, tmp_path, capsys):
    err = fails(hpatches_main, ["--conf", str(tmp_path)], capsys)
    assert f"--conf {tmp_path} is a directory, expected a config file" in err


@pytest.mark.parametrize(
    "main,key", [(md_main, "data.root"), (hpatches_main, "data.data_dir")]
)
def test_data_folder_given_a_file(roots, tmp_path, capsys, main, key):
    file = tmp_path / "a_file.txt"
    file.write_text("not a folder")
    err = fails(main, ["--conf", "sift+NN", f"{key}={file}"], capsys)
    assert f"{file} is a file, expected a folder" in err


@pytest.mark.parametrize("main", [md_main, hpatches_main])
def test_data_root_set_to_a_file(roots, monkeypatch, capsys, main):
    file = roots / "data_file"
    file.write_text("not a folder")
    monkeypatch.setenv("GLUEFACTORY_DATA", str(file))
    err = fails(main, ["--conf", "sift+NN"], capsys)
    assert str(file) in err


def test_read_only_outputs_folder(roots, monkeypatch, capsys):
    """As root, permissions do not stop writes: the refusal is injected where the
    first write happens (a folder made under the outputs root)."""
    outputs = roots / "outputs"
    mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if str(self).startswith(str(outputs)):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    err = fails(hpatches_main, [*TOY, "--tag", "T"], capsys)
    assert "permission denied: fix the permissions or write elsewhere" in err
    assert str(outputs) in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_outputs_folder_for_real(roots, capsys):
    outputs = roots / "outputs"
    outputs.mkdir()
    outputs.chmod(0o500)
    try:
        err = fails(hpatches_main, [*TOY, "--tag", "T"], capsys)
    finally:
        outputs.chmod(0o700)
    assert "permission denied" in err


def test_a_text_file_as_checkpoint(roots, capsys):
    text = roots / "notes.tar"
    text.write_text("model: x\n")
    err = fails(hpatches_main, ["--checkpoint", str(text)], capsys)
    assert f"{text} is not a checkpoint" in err
    assert "weights_only" not in err
    assert not (roots / "outputs").exists()


def test_keys_of_the_checkpoint_config_are_said_to_come_from_it(roots, capsys):
    """``--conf xfeat+NN --checkpoint EXP`` of a LighterGlue experiment: the matcher
    options the error names were never typed: the checkpoint's config set them."""
    from gluefactory.utils.conf import load_conf

    exp = roots / "outputs" / "training" / "exp"
    exp.mkdir(parents=True)
    OmegaConf.save(load_conf("xfeat+lighterglue_homography"), exp / "config.yaml")
    err = fails(hpatches_main, ["--conf", "xfeat+NN", "--checkpoint", "exp"], capsys)
    assert "'n_layers'" in err
    assert "model.matcher.n_layers: from the config of checkpoint exp" in err
    assert "--conf" not in err.split("model.matcher.n_layers")[1].splitlines()[0]
    assert not (roots / "outputs" / "results").exists()


def test_a_checkpoint_that_does_not_fit_the_model_deletes_nothing(roots, capsys):
    """``--checkpoint EXP --overwrite``: the weights are loaded into the model before
    the tag's earlier results are deleted."""
    import torch

    from gluefactory.trainer.checkpoints import atomic_save

    exp = roots / "outputs" / "training" / "exp"
    exp.mkdir(parents=True)
    bench, _, _ = prepare_benchmark(HPatchesPipeline, TOY)
    train_conf = {"model": OmegaConf.to_container(bench.conf.model), "train": {}}
    OmegaConf.save(OmegaConf.create(train_conf), exp / "config.yaml")
    state = {"matcher.not_in_the_model": torch.zeros(3)}
    atomic_save({"model": state, "conf": train_conf}, exp / "checkpoint_0_10.tar")
    out = tag_dir(roots)
    out.mkdir(parents=True)
    for name in FILES:
        (out / name).write_text(f"earlier {name}")
    argv = ["--checkpoint", "exp", *TOY[2:], "--tag", "T", "--overwrite"]
    err = fails(hpatches_main, argv, capsys)
    assert "not_in_the_model" in err
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        name: f"earlier {name}" for name in FILES
    }
