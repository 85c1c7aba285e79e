"""Faults of the environment become one message naming the path, and exit code 2."""

from __future__ import annotations

import errno

import pytest

from gluefactory.utils.cli import main_wrapper
from gluefactory.utils.errors import environment_fault


@pytest.mark.parametrize(
    "code,text",
    [
        (errno.ENOSPC, "no space left on the device"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permission denied"),
        (errno.ENOTDIR, "a file stands where a folder is expected"),
        (errno.EISDIR, "a folder stands where a file is expected"),
    ],
)
def test_environment_faults_name_the_path(code, text):
    message = environment_fault(OSError(code, "x", "/out/results.h5"))
    assert message.startswith("/out/results.h5: ") and text in message


def test_h5py_style_messages_are_read_and_other_errors_are_not_faults():
    h5 = OSError(
        "Can't write data (file write failed: errno = 28, error message = ...)"
    )
    assert "no space left" in environment_fault(h5)
    assert environment_fault(OSError(errno.ECONNRESET, "reset")) is None
    assert environment_fault(ValueError("x")) is None


def test_mkdir_where_a_file_stands_is_a_fault_but_other_collisions_are_not(tmp_path):
    (tmp_path / "outputs").write_text("not a folder")
    with pytest.raises(FileExistsError) as caught:
        (tmp_path / "outputs").mkdir(parents=True, exist_ok=True)
    message = environment_fault(caught.value)
    assert message.startswith(str(tmp_path / "outputs"))
    assert "a file stands where a folder is expected" in message
    # an existing folder (e.g. an exclusive create that lost a race) is not the user's to fix
    assert environment_fault(FileExistsError(errno.EEXIST, "x", str(tmp_path))) is None
    # the file that blocks a deeper folder is the one named
    with pytest.raises(NotADirectoryError) as caught:
        (tmp_path / "outputs" / "results" / "x").mkdir(parents=True, exist_ok=True)
    assert environment_fault(caught.value).startswith(str(tmp_path / "outputs") + ":")


def test_main_wrapper_turns_a_full_disk_into_exit_2(capsys):
    @main_wrapper
    def main():
        raise OSError(errno.ENOSPC, "No space left on device", "/out/x.h5")

    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: /out/x.h5: no space left") and "Traceback" not in err


def test_main_wrapper_keeps_tracebacks_of_bugs():
    @main_wrapper
    def main():
        raise OSError(errno.ECONNRESET, "reset")

    with pytest.raises(ConnectionResetError):
        main()
