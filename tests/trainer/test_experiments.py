"""Experiments on disk: load_experiment, experiment_conf, train.load_experiment."""

from __future__ import annotations

import pytest
import torch
from toy_training import lightglue_pipeline, toy_conf

from gluefactory.experiments import checkpoint_file, experiment_conf, load_experiment
from gluefactory.trainer import checkpoints as ckpts
from gluefactory.trainer import train
from gluefactory.utils.errors import ConfigError


@pytest.fixture
def trained(outputs):
    res = train("homog", toy_conf({"epochs": 1, "eval_0": False}, num_train=12))
    return outputs / "homog", res


def test_load_experiment_by_name_folder_and_file(trained):
    folder, res = trained
    saved = ckpts.load(res["checkpoint"])["model"]
    for ref in ("homog", folder, res["checkpoint"]):
        model = load_experiment(ref)
        assert not model.training
        for k, v in model.state_dict().items():
            assert torch.equal(v, saved[k]), k
    conf = experiment_conf("homog")
    assert conf.train.epochs == 1 and conf.model.matcher.n_layers == 2
    assert experiment_conf(res["checkpoint"]).data.name == "toy_training"
    # overrides of the model config (inference options) apply
    model = load_experiment("homog", {"matcher": {"filter_threshold": 0.5}})
    assert model.matcher.conf.filter_threshold == 0.5


def test_checkpoint_file_is_the_one_loaded(trained, tmp_path):
    folder, res = trained
    assert checkpoint_file("homog") == res["checkpoint"]
    assert checkpoint_file(folder) == res["checkpoint"]
    assert checkpoint_file(res["checkpoint"]) == res["checkpoint"]
    if (folder / "checkpoint_best.tar").exists():
        assert checkpoint_file("homog", "best") == folder / "checkpoint_best.tar"
    with pytest.raises(ConfigError, match="'last' or 'best'"):
        checkpoint_file("homog", "first")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="has no checkpoint"):
        checkpoint_file(tmp_path / "empty")


def test_load_experiment_errors(trained):
    with pytest.raises(
        ConfigError, match="No experiment 'homg'.*Known experiments: homog"
    ):
        load_experiment("homg")
    with pytest.raises(ConfigError, match="do not fit"):
        load_experiment("homog", {"matcher": {"descriptor_dim": 64}})


def test_train_load_experiment_initialises_weights(trained, outputs, caplog):
    # the step-0 validation of the new run evaluates the old weights
    conf = toy_conf({"epochs": 1, "load_experiment": "homog"}, num_train=12)
    conf["model"] = lightglue_pipeline(filter_threshold=0.1)
    caplog.set_level("INFO")
    res = train("finetune", conf)
    old = ckpts.load(trained[1]["checkpoint"])["eval"]
    import json

    first_val = next(
        json.loads(x)
        for x in (outputs / "finetune" / "metrics.jsonl").read_text().splitlines()
        if json.loads(x)["kind"] == "val"
    )
    assert first_val["step"] == 0
    assert first_val["loss/total"] == pytest.approx(old["loss/total"], rel=1e-5)
    assert "tensors loaded" in caplog.text and res["status"] == "finished"


def test_train_load_experiment_reports_new_keys_and_rejects_shapes(trained, caplog):
    conf = toy_conf(
        {"epochs": 1, "eval_0": False, "load_experiment": "homog", "max_steps": 1},
        num_train=8,
    )
    conf["model"] = lightglue_pipeline(n_layers=3)
    caplog.set_level("INFO")
    train("deeper", conf)
    assert (
        "Keys new in this model" in caplog.text
        and "matcher.transformers.2" in caplog.text
    )
    conf["model"] = lightglue_pipeline(descriptor_dim=48)
    with pytest.raises(
        ConfigError,
        match=r"train.load_experiment=homog: .* does not fit the model: .*checkpoint \(32",
    ):
        train("wider", conf)


@pytest.mark.parametrize("text", ["model: x\n", "a\n", ""])
def test_a_text_file_is_not_a_checkpoint(tmp_path, text):
    """The loader of ``eval --checkpoint`` and ``train --restore``: a file that is
    not a torch.save archive is named as such, without PyTorch's weights_only advice."""
    from gluefactory.experiments import load
    from gluefactory.utils.errors import DataError

    path = tmp_path / "notes.tar"
    path.write_text(text)
    with pytest.raises(DataError, match="is not a checkpoint") as e:
        load(path)
    assert str(path) in str(e.value) and "weights_only" not in str(e.value)
