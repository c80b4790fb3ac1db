"""Output folders checked before the work: one line naming the folder and why, nothing left behind."""

from __future__ import annotations

import pytest

from labelfree.io.atomic import OutputWriteError
from labelfree.io.output_dir import check_output_dir, check_output_file


def test_a_writable_folder_passes_and_nothing_is_created(tmp_path):
    assert check_output_dir(tmp_path / "runs" / "x", "--logdir") == tmp_path / "runs" / "x"
    assert list(tmp_path.iterdir()) == []  # no folder, no probe file
    (tmp_path / "outs").mkdir()
    check_output_dir(tmp_path / "outs", "--save_dir")
    assert list((tmp_path / "outs").iterdir()) == []


def test_create_makes_the_folder(tmp_path):
    check_output_dir(tmp_path / "a" / "b", create=True)
    assert (tmp_path / "a" / "b").is_dir() and list((tmp_path / "a" / "b").iterdir()) == []


def test_a_parent_that_is_a_file_is_named(tmp_path):
    (tmp_path / "runs").write_text("")
    with pytest.raises(OutputWriteError) as info:
        check_output_dir(tmp_path / "runs" / "x" / "y", "--logdir")
    assert str(info.value) == (f"--logdir {tmp_path / 'runs' / 'x' / 'y'}: cannot create folder: "
                               f"its parent {tmp_path / 'runs'} is a file")
    with pytest.raises(OutputWriteError, match="cannot create folder: it is a file$"):
        check_output_dir(tmp_path / "runs", "--out", create=True)


def test_output_files(tmp_path):
    (tmp_path / "plots").write_text("")
    with pytest.raises(OutputWriteError) as info:
        check_output_file(tmp_path / "plots" / "a.png", "--out")
    plots = tmp_path / "plots"
    assert str(info.value) == f"--out {plots / 'a.png'}: cannot create folder {plots}: it is a file"
    with pytest.raises(OutputWriteError, match="is a folder, not a file$"):
        check_output_file(tmp_path, "--report")
    assert check_output_file(tmp_path / "new" / "report.json") == tmp_path / "new" / "report.json"


def test_a_folder_that_cannot_be_written_is_refused(tmp_path, monkeypatch):
    import tempfile

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full_disk)
    with pytest.raises(OutputWriteError) as info:
        check_output_dir(tmp_path, "--out")
    assert str(info.value) == f"--out {tmp_path}: cannot write in folder: No space left on device"
    with pytest.raises(OutputWriteError) as info:
        check_output_dir(tmp_path / "new", "--out")
    assert str(info.value) == f"--out {tmp_path / 'new'}: cannot create folder in {tmp_path}: No space left on device"
