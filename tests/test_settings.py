from pathlib import Path

from gluefactory import settings


def test_defaults_relative_to_cwd(monkeypatch, tmp_path):
    monkeypatch.delenv(settings.DATA_ENV, raising=False)
    monkeypatch.delenv(settings.OUTPUTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert settings.data_root() == tmp_path / "data"
    assert settings.outputs_root() == tmp_path / "outputs"
    assert settings.training_root() == tmp_path / "outputs" / "training"
    assert settings.eval_root() == tmp_path / "outputs" / "results"
    assert "site-packages" not in str(settings.data_root())


def test_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.DATA_ENV, str(tmp_path / "d"))
    monkeypatch.setenv(settings.OUTPUTS_ENV, str(tmp_path / "o"))
    monkeypatch.setenv(settings.WEIGHTS_ENV, str(tmp_path / "w"))
    assert settings.data_root() == tmp_path / "d"
    assert settings.outputs_root() == tmp_path / "o"
    assert settings.weights_dir() == tmp_path / "w"


def test_relative_env_is_relative_to_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(settings.DATA_ENV, "mydata")
    assert settings.data_root() == tmp_path / "mydata"


def test_weights_dir_defaults_to_torch_hub(monkeypatch, tmp_path):
    import torch.hub

    monkeypatch.delenv(settings.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert settings.weights_dir() == Path(tmp_path / "hub" / "checkpoints")
