"""A scan whose header no real scan can have is refused by every entry point before it writes anything.

The scan: a NIfTI whose stored ``pixdim[3]`` (slice spacing) is 0. nibabel repairs it to 1 mm
on load and says so only in its log, so without the check ``main.py`` trained on it. Here
``main.py``, ``validation.py`` and ``labelfree-check-data`` exit non-zero with one message that
names the file, no traceback, and nothing in ``--logdir`` / ``--save_dir``.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from labelfree.cli import check_data
from labelfree.cli import train as train_cli
from labelfree.cli import validate as validation
from labelfree.data import case_geometry
from tests.helpers.evaluation import write_checkpoint
from tests.helpers.training import SMALL, data_flags, make_root


@pytest.fixture()
def flat_root(tmp_path):
    """A data root whose first training image has a slice spacing of 0 in its stored header."""
    root = tmp_path / "data"
    make_root(root, n_train=2, n_val=1)
    bad = root / "img" / "train0.nii.gz"
    image = nib.load(bad)
    flat = nib.Nifti1Image(np.asarray(image.dataobj), None)
    flat.header["pixdim"][1:4] = (3.0, 3.0, 0.0)  # after the constructor, which would repair it
    nib.save(flat, str(bad))
    case_geometry.clear_cache()  # the header cache is per process; the file was rewritten in place
    return root, bad


def error_lines(captured: str, bad) -> list[str]:
    assert "Traceback" not in captured
    assert "setting 0 dims to 1" not in captured  # nibabel's repair note would contradict the refusal
    assert captured.startswith("error: ")
    naming = [line for line in captured.splitlines() if str(bad) in line]
    assert len(naming) == 1, captured
    assert "impossible voxel grid" in naming[0] and "0 along axis 2" in naming[0], naming[0]
    return naming


def nothing_in(folder) -> bool:
    return not folder.exists() or not any(folder.rglob("*"))


def test_main_py_refuses_a_slice_spacing_of_0_before_writing(flat_root, tmp_path, capsys):
    root, bad = flat_root
    logdir = tmp_path / "runs" / "flat"
    with pytest.raises(SystemExit) as exit_:
        train_cli.main([*data_flags(root), "--logdir", str(logdir), "--save_checkpoint", "--max_epochs", "1", *SMALL])
    assert exit_.value.code != 0
    error_lines(capsys.readouterr().err, bad)
    assert nothing_in(logdir)


def test_validation_py_refuses_a_slice_spacing_of_0_before_writing(flat_root, tmp_path, capsys):
    root, bad = flat_root
    checkpoint = write_checkpoint(tmp_path / "model.pt")
    # the bad image as a validation case
    (root / "datalist.json").write_text(
        '{"training": [], "validation": [{"image": "img/train0.nii.gz", "label": "label/train0.nii.gz"}]}')
    save_dir = tmp_path / "outs"
    status = validation.cli(["--json_dir", str(root / "datalist.json"), "--val_dir", str(root), "--checkpoint",
                             str(checkpoint), "--save_dir", str(save_dir), "--device", "cpu"])
    assert status != 0
    error_lines(capsys.readouterr().err, bad)
    assert nothing_in(save_dir)


def test_check_data_names_the_file(flat_root, tmp_path, capsys):
    root, bad = flat_root
    report = tmp_path / "report.json"
    assert check_data.main([*data_flags(root), "--report", str(report)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert f"image file has an impossible voxel grid: {bad} (voxel spacing (3, 3, 0) mm" in captured.out
