"""The data-files fingerprint: changes with the files, not with where the folder is."""

import os
import shutil

from gluefactory.utils.fingerprint import files_fingerprint


def _tree(root):
    (root / "seq").mkdir(parents=True)
    (root / "seq" / "1.ppm").write_bytes(b"x" * 10)
    (root / "seq" / "H_1_2").write_text("1 0 0\n0 1 0\n0 0 1\n")
    (root / "other.txt").write_text("not listed")
    return root


def test_changes_with_the_files_not_with_the_location(tmp_path):
    root = _tree(tmp_path / "a")
    fp = files_fingerprint(root, [root / "seq"])
    assert files_fingerprint(root, [root / "seq"]) == fp
    (root / "other.txt").write_text("changed")  # not listed: no effect
    assert files_fingerprint(root, [root / "seq"]) == fp
    # moved elsewhere (times kept, as by mv, tar or cp -p): the same
    moved = tmp_path / "b"
    shutil.copytree(root, moved, copy_function=shutil.copy2)
    assert files_fingerprint(moved, [moved / "seq"]) == fp
    # an edit of the same size (newer time), a resize, a new file, a removal: changed
    h = root / "seq" / "H_1_2"
    st = h.stat()
    h.write_text("2 0 0\n0 1 0\n0 0 1\n")
    os.utime(h, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    seen = {fp, files_fingerprint(root, [root / "seq"])}
    (root / "seq" / "1.ppm").write_bytes(b"x" * 11)
    seen.add(files_fingerprint(root, [root / "seq"]))
    (root / "seq" / "2.ppm").write_bytes(b"y")
    seen.add(files_fingerprint(root, [root / "seq"]))
    (root / "seq" / "2.ppm").unlink()
    (root / "seq" / "1.ppm").unlink()
    seen.add(files_fingerprint(root, [root / "seq"]))
    assert len(seen) == 5


def test_listed_files_and_missing_ones(tmp_path):
    root = _tree(tmp_path)
    files = [root / "seq" / "1.ppm", root / "seq" / "H_1_2"]
    fp = files_fingerprint(root, files)
    assert files_fingerprint(root, files[::-1]) != fp  # the dataset's order counts
    (root / "seq" / "1.ppm").unlink()
    assert files_fingerprint(root, files) != fp  # missing: recorded, not an error
