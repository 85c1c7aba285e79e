"""A function run in a helper process: same results, its exceptions raised here, the
helper replaced past its memory bound or when it dies, one helper per copy."""

from __future__ import annotations

import copy
import os
import pickle
import sys

import numpy as np
import pytest

from gluefactory.utils.isolated import IsolatedFunction


def test_results_and_exceptions_come_back():
    fsum = IsolatedFunction("math", "fsum")
    assert fsum([0.1] * 10) == 1.0
    sqrt = IsolatedFunction("math", "sqrt")
    with pytest.raises(ValueError, match="math domain error"):
        sqrt(-1.0)
    assert sqrt(4.0) == 2.0  # the helper survives an exception
    fsum.close(), sqrt.close()


def test_one_helper_until_the_memory_bound():
    getpid = IsolatedFunction("os", "getpid")
    first = getpid()
    assert first != os.getpid() and getpid() == first
    getpid.max_rss = 1  # past the bound: replaced before the next call
    assert getpid() != first
    getpid.close()


def test_a_large_parent_does_not_count_against_the_helper():
    """Linux hands a parent's peak memory to its children through fork and exec: the
    bound must be on the helper's own memory, or a helper started by a 300 MB
    training process would be replaced at every call."""
    ballast = np.ones(300 * 2**20 // 8)  # touched: resident
    getpid = IsolatedFunction("os", "getpid", max_rss_mb=256)
    assert getpid() == getpid() == getpid()
    getpid.close()
    del ballast


def test_a_dead_helper_is_one_error_then_replaced():
    exit_ = IsolatedFunction("os", "_exit")
    with pytest.raises(RuntimeError, match=r"os\._exit died \(exit code 3\)"):
        exit_(3)
    getpid = IsolatedFunction("os", "getpid")
    assert getpid() > 0
    getpid.close()


def test_copies_start_their_own_helper():
    getpid = IsolatedFunction("os", "getpid")
    pid = getpid()
    for other in (copy.deepcopy(getpid), pickle.loads(pickle.dumps(getpid))):
        assert other() not in (pid, os.getpid())
        other.close()
    assert getpid() == pid
    getpid.close()


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_lsd_with_pytlsd_does_not_grow_the_process():
    """pytlsd leaks about 4 MB per 480 x 360 image: 40 images in-process would add
    160 MB; through the helpers nothing stays here."""
    pytest.importorskip("pytlsd")
    import torch

    from gluefactory.models import get_model

    lsd = get_model("lines.lsd")({"backend": "pytlsd", "num_threads": 2})
    image = torch.rand(4, 1, 360, 480, generator=torch.Generator().manual_seed(0))
    lsd({"image": image})  # helpers started, buffers allocated
    before = _rss_mb()
    for _ in range(10):
        lsd({"image": image})
    assert _rss_mb() - before < 40


def test_lsd_results_through_the_helper_equal_pytlsd_in_process():
    pytlsd = pytest.importorskip("pytlsd")
    from gluefactory.models.lines.lsd import detect_segments

    grey = np.random.default_rng(0).random((120, 160)) * 255
    helper = IsolatedFunction("pytlsd", "lsd")
    here = detect_segments(grey, "pytlsd", 5, None, pytlsd.lsd)
    there = detect_segments(grey, "pytlsd", 5, None, helper)
    helper.close()
    for a, b in zip(here, there, strict=True):
        np.testing.assert_array_equal(a, b)
