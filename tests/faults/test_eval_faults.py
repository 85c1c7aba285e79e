"""Evaluation under faults: a full disk at each write site (predictions, results,
summaries) is one ``error:`` line and exit 2, nothing partial is left, what the tag
held before is intact, and a rerun ends with the results of an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fault_injection import disk_full_at, disk_full_in_h5, leftovers

from gluefactory.eval.hpatches import main as hpatches_main
from gluefactory.eval.results import read_json
from gluefactory.utils.fs import sha256_of

ARGS = [
    "--conf", "sift+NN", "data.name=eval_toy_homography",
    "data.preprocessing.resize=240", "model.extractor.max_num_keypoints=256",
    "eval.progress=false", "eval.num_worst=1", "--tag", "t",
]  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run (export + evaluation), copied by the tests."""
    root = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLUEFACTORY_OUTPUTS", str(root / "outputs"))
        hpatches_main(ARGS)
    return root / "outputs" / "results" / "hpatches" / "t"


@pytest.fixture
def tag(tmp_path, monkeypatch):
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path / "outputs"))
    return tmp_path / "outputs" / "results" / "hpatches" / "t"


def _fails_with_one_line(capsys, *names: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    assert "no space left on the device" in lines[0]
    assert all(n in lines[0] for n in names), lines[0]
    return lines[0]


def test_disk_full_in_the_predictions_export(tag, reference, monkeypatch, capsys):
    refused = disk_full_in_h5(monkeypatch, "predictions.h5", after=30_000)
    with pytest.raises(SystemExit) as e:
        hpatches_main(ARGS)
    assert e.value.code == 2 and refused
    _fails_with_one_line(capsys, str(tag / "predictions.h5"))
    assert leftovers(tag.parent) == []
    assert not (tag / "predictions.h5").exists()
    monkeypatch.undo()
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tag.parents[2]))
    assert hpatches_main(ARGS) == read_json(reference / "summaries.json")


@pytest.mark.parametrize(
    "site",
    [
        "results.h5",
        "summaries.json",
        pytest.param("sweep.json", marks=pytest.mark.slow),
        pytest.param("homography_recall.png", marks=pytest.mark.slow),
    ],
)
def test_disk_full_at_a_result_file_keeps_the_predictions(
    site, tag, reference, monkeypatch, capsys
):
    shutil.copytree(reference, tag)
    before = {p.name: sha256_of(p) for p in tag.iterdir()}
    digest = before["predictions.h5"]
    # another eval config: the predictions are reused, the results recomputed
    args = [*ARGS, "--overwrite_eval", "eval.ransac_th=3.0"]
    if site.endswith(".h5"):
        refused = disk_full_in_h5(monkeypatch, site, after=2_000)
    else:
        refused = disk_full_at(monkeypatch, site)
    with pytest.raises(SystemExit) as e:
        hpatches_main(args)
    assert e.value.code == 2 and refused
    _fails_with_one_line(capsys, str(tag / site))
    assert leftovers(tag.parent) == []
    assert sha256_of(tag / "predictions.h5") == digest  # the export is intact
    # the previous summaries are intact (nothing is deleted ahead of its replacement;
    # a results.h5 written before the failure no longer matches them, so a rerun
    # recomputes), and conf.yaml still describes them (it is written last)
    for name in ("summaries.json", "conf.yaml", site):
        assert sha256_of(tag / name) == before[name], name
    monkeypatch.undo()
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tag.parents[2]))
    again = hpatches_main(args)  # reuses the export, completes the results
    assert sha256_of(tag / "predictions.h5") == digest
    assert again["ransac_th"] == 3.0 and read_json(tag / "summaries.json") == again


def test_disk_full_during_an_overwrite_keeps_the_previous_results(
    tag, reference, monkeypatch, capsys
):
    """--overwrite runs the network again; a full disk on the way leaves the tag as
    it was, and a rerun without --overwrite trusts it again."""
    shutil.copytree(reference, tag)
    before = {p.name: sha256_of(p) for p in tag.iterdir()}
    refused = disk_full_in_h5(monkeypatch, "predictions.h5", after=30_000)
    with pytest.raises(SystemExit) as e:
        hpatches_main([*ARGS, "--overwrite"])
    assert e.value.code == 2 and refused
    _fails_with_one_line(capsys, str(tag / "predictions.h5"))
    assert leftovers(tag.parent) == []
    assert {p.name: sha256_of(p) for p in tag.iterdir()} == before
    monkeypatch.undo()
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tag.parents[2]))
    assert hpatches_main(ARGS) == read_json(reference / "summaries.json")


REAL_DISK_FULL = """
import sys
from gluefactory.eval.hpatches import main
main(sys.argv[1:])
"""


def _namespace_can(mount: str) -> bool:
    """Whether a user namespace may run ``mount`` (unshare; Linux)."""
    if not shutil.which("unshare") or sys.platform != "linux":
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", mount], capture_output=True)
    return probe.returncode == 0


def _hpatches_in_namespace(script: str, args: list[str]) -> subprocess.CompletedProcess:
    """``eval.hpatches ARGS`` run by the shell ``script`` (as ``"$@"``) in a user
    namespace where it may mount."""
    return subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            script,
            "sh",
            sys.executable,
            "-c",
            REAL_DISK_FULL,
            *args,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "eval")},
        cwd=Path(__file__).parents[2],
    )


@pytest.mark.skipif(
    not _namespace_can("mount -t tmpfs -o size=4k tmpfs /mnt"),
    reason="needs user namespaces (unshare)",
)
def test_a_really_full_disk_during_the_export_is_one_message(tmp_path):
    """No injection: the outputs on a 12 kB tmpfs (in a user namespace). HDF5 used to
    print an ``Exception ignored`` traceback per object and die with a segfault."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = textwrap.dedent(f"""
        mount -t tmpfs -o size=12k tmpfs {mnt} || exit 99
        GLUEFACTORY_OUTPUTS={mnt}/outputs "$@"
        rc=$?
        ls -A {mnt}/outputs/results/hpatches/t >&2
        exit $rc
    """)
    proc = _hpatches_in_namespace(script, ARGS)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert "predictions.h5: no space left on the device" in proc.stderr
    # `ls` of the results folder printed nothing after the error: nothing partial left,
    # and no conf.yaml (it is written last, for results that exist)
    assert proc.stderr.splitlines()[-1].startswith("(set GLUEFACTORY_DEBUG=1")


@pytest.mark.skipif(
    not _namespace_can("mount --bind /tmp /tmp"),
    reason="needs user namespaces (unshare)",
)
@pytest.mark.parametrize("existing", [False, True])
def test_a_really_read_only_outputs_folder_is_one_message(
    existing, reference, tmp_path
):
    """No injection, and true for root too: the outputs folder is bind-mounted
    read-only in a user namespace. Empty, or holding a tag's results that
    ``--overwrite`` would replace: one line, exit 2, the results untouched."""
    outputs = tmp_path / "outputs"
    tag = outputs / "results" / "hpatches" / "t"
    if existing:
        shutil.copytree(reference, tag)
    else:
        outputs.mkdir()
    before = {p.name: sha256_of(p) for p in tag.iterdir()} if existing else {}
    script = textwrap.dedent(f"""
        mount --bind {outputs} {outputs} && mount -o remount,ro,bind {outputs} || exit 99
        GLUEFACTORY_OUTPUTS={outputs} "$@"
    """)
    proc = _hpatches_in_namespace(script, [*ARGS, "--overwrite"] if existing else ARGS)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "the filesystem is read-only" in errors[0], errors
    assert str(outputs) in errors[0]
    after = {p.name: sha256_of(p) for p in tag.iterdir()} if existing else {}
    assert after == before
