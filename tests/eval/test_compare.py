"""``python -m gluefactory.eval.compare``: refusals before any work, unreadable result
files named, runs of different benchmarks never in one table."""

from __future__ import annotations

import pytest

from gluefactory.eval import compare as compare_mod
from gluefactory.eval.compare import main as compare_main
from gluefactory.eval.results import write_json, write_results


def _run(roots, bench: str, tag: str, key: str, value: float):
    """A results folder as the benchmark writes it (summaries.json, results.h5)."""
    out = roots / "outputs" / "results" / bench / tag
    errors = [0.5, 2.0, 4.0, 30.0]
    write_results(
        out / "results.h5",
        {key: errors},
        list("abcd"),
        ["s"] * 4,
        {f"{key}_mAA": value},
    )
    write_json(out / "summaries.json", {f"{key}_mAA": value, "ransac_th": 1.0})
    return out


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return next(ln for ln in err.splitlines() if ln.startswith("error: "))


def test_output_naming_a_folder_is_refused_before_any_work(roots, capsys, monkeypatch):
    _run(roots, "hpatches", "a", "H_error_ransac", 0.5)
    monkeypatch.setattr(compare_mod, "read_json", pytest.fail)  # no work done
    with pytest.raises(SystemExit) as e:
        compare_main(["a", "--output", str(roots)])
    assert e.value.code == 2
    line = _error_line(capsys)
    assert f"--output {roots} is a folder" in line
    assert not (roots / "outputs" / "results" / "compare").exists()


def test_a_truncated_results_file_is_named(roots, capsys):
    out = _run(roots, "hpatches", "a", "H_error_ransac", 0.5)
    data = (out / "results.h5").read_bytes()
    (out / "results.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(SystemExit) as e:
        compare_main(["a"])
    assert e.value.code == 2
    line = _error_line(capsys)
    assert f"Could not read {out / 'results.h5'}: it is truncated or corrupt" in line


def test_runs_of_two_benchmarks_get_one_table_each(roots, capsys):
    _run(roots, "hpatches", "a", "H_error_ransac", 0.5)
    _run(roots, "hpatches", "b", "H_error_ransac", 0.25)
    _run(roots, "megadepth1500", "m", "rel_pose_error", 0.75)
    fig = roots / "cmp.png"
    text = compare_main(["a", "m", "b", "--output", str(fig)])
    hp, md = text.split("\n\n")
    assert hp.splitlines()[0] == "hpatches (2 runs):"
    assert hp.splitlines()[1].split() == ["metric", "a", "b", "upstream", "key"]
    assert md.splitlines()[0] == "megadepth1500 (1 run):"
    assert md.splitlines()[1].split() == ["metric", "m", "upstream", "key"]
    assert "H_error_ransac_mAA" in hp and "rel_pose_error" not in hp
    assert "rel_pose_error_mAA" in md and "H_error" not in md
    rows = {ln.split()[0]: ln.split()[1:] for ln in hp.splitlines()[3:]}
    assert rows["H_error_ransac_mAA"][:2] == ["0.5000", "0.2500"]
    out = capsys.readouterr().out
    assert f"Recall curves: {roots / 'cmp_hpatches.png'}" in out
    assert f"Recall curves: {roots / 'cmp_megadepth1500.png'}" in out
    assert (roots / "cmp_hpatches.png").stat().st_size > 1000
    assert not fig.exists()
