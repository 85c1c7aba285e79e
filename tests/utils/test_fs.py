"""The write layer: files and folders appear whole or not at all; memoised digests."""

from __future__ import annotations

import hashlib

import pytest

from gluefactory.utils import fs


def test_atomic_path_replaces_only_on_success(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    with fs.atomic_path(path, ".txt") as tmp:
        assert tmp.parent == path.parent and tmp.name.endswith(".tmp.txt")
        tmp.write_text("one")
        assert not path.exists()
    assert path.read_text() == "one"
    with pytest.raises(RuntimeError), fs.atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "one"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]


def test_atomic_write_text_and_bytes(tmp_path):
    fs.atomic_write_text(tmp_path / "a.txt", "héllo")
    fs.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01", fsync=True)
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_atomic_folder_replaces_whole_folders(tmp_path):
    target = tmp_path / "set"
    with fs.atomic_folder(target) as tmp:
        (tmp / "x").write_text("1")
    assert (target / "x").read_text() == "1"
    with pytest.raises(ValueError), fs.atomic_folder(target) as tmp:
        (tmp / "y").write_text("2")
        raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["x"]
    with fs.atomic_folder(target) as tmp:
        (tmp / "z").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["z"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_remove_stale_temporaries(tmp_path):
    (tmp_path / ".results.h5.abc.tmp.h5").write_text("")
    (tmp_path / ".set.xyz.tmp").mkdir()
    (tmp_path / "keep.h5").write_text("")
    fs.remove_stale_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.h5"]


def test_sha256_is_memoised_and_follows_rewrites(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    fs.checksums.clear()
    assert fs.sha256_of(path) == hashlib.sha256(b"abc").hexdigest()
    assert len(fs.checksums) == 1
    fs.atomic_write_bytes(path, b"abcd")
    assert fs.sha256_of(path) == hashlib.sha256(b"abcd").hexdigest()


def test_file_lock_refuses_a_second_writer_and_names_the_holder(tmp_path):
    import os

    from gluefactory.utils.errors import LockedError

    lock = tmp_path / ".tag.lock"
    with fs.file_lock(lock, wait=False, what="Results tag T"):
        with pytest.raises(
            LockedError, match=f"Results tag T is in use by PID {os.getpid()}"
        ):
            with fs.file_lock(lock, wait=False, what="Results tag T"):
                pass
    assert not lock.exists()


def test_a_stale_lock_file_is_taken_over(tmp_path):
    lock = tmp_path / ".exp.lock"
    lock.write_text("PID 999999 on a-host-that-died")  # no process holds it
    with fs.file_lock(lock, wait=False):
        assert "PID" in lock.read_text()


def test_guarded_file_keeps_the_first_write_error_and_stays_consistent(
    tmp_path, monkeypatch
):
    import errno

    f = fs.GuardedFile(tmp_path / ".x.tmp", tmp_path / "x.h5")
    f.write(b"abcdef")
    original = fs.GuardedFile._pwrite

    def full(self, data, offset):  # room for 2 more bytes, then ENOSPC
        if offset + len(data) > 8:
            n = original(self, data[: max(8 - offset, 0)], offset)
            if n:
                return n
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data, offset)

    monkeypatch.setattr(fs.GuardedFile, "_pwrite", full)
    assert f.write(b"ghijkl") == 6  # no exception: the writer (HDF5) must not see it
    assert isinstance(f.error, OSError) and f.error.errno == errno.ENOSPC
    f.seek(2)
    f.write(b"ZZ")  # after the fault: held in memory
    f.seek(0)
    assert f.read(12) == b"abZZefghijkl"  # reads see every write
    assert f.seek(0, 2) == 12 and f.tell() == 12
    with pytest.raises(OSError) as e:
        f.check()
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "x.h5")
    f.close()


def test_atomic_h5_round_trip_and_fault(tmp_path, monkeypatch):
    import errno

    import h5py
    import numpy as np

    path = tmp_path / "a.h5"
    with fs.atomic_h5(path) as (f, guard):
        f.create_dataset("x", data=np.arange(1000))
        guard.check()
    with h5py.File(path, "r") as f:
        assert f["x"][()].sum() == 499500

    def full(self, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fs.GuardedFile, "_pwrite", full)
    with pytest.raises(OSError) as e, fs.atomic_h5(path) as (f, guard):
        for i in range(50):
            f.create_dataset(f"y{i}", data=np.arange(10_000))
        guard.check()
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]  # the old one


def test_check_output_file(tmp_path):
    from gluefactory.utils.errors import ConfigError

    assert (
        fs.check_output_file(tmp_path / "new" / "out.png")
        == tmp_path / "new" / "out.png"
    )
    with pytest.raises(ConfigError, match=f"--output {tmp_path} is a folder"):
        fs.check_output_file(tmp_path)
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        fs.check_output_file(tmp_path / "f" / "sub" / "out.png", "--output")
