"""One header pass, one 3D rule, one grid rule (labelfree.data.case_geometry, labelfree.io.readers).

* every header of a datalist is read once, however many checks look at it (the datalist
  check, the pre-flight's header pass), and read again when the file changes;
* a 4D (H, W, D, 1) NIfTI is a 3D volume for every path that reads it;
* "same grid" means the same thing, with the same tolerance, in the header pass, the data
  checker and transfer_label.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from labelfree.data import case_geometry, preflight
from labelfree.data.checks import check_case
from labelfree.data.datalist import check_datalist_files, find_unreadable_files
from labelfree.data.make_datafolds import read_label
from labelfree.data.transfer_label import check_image_geometry
from labelfree.evaluation.scoring import score_files
from labelfree.io import readers

SHAPE = (20, 18, 10)
SPACING = (1.5, 1.5, 3.0)
AFFINE = np.diag([*SPACING, 1.0])
LIVER = preflight.LabelConvention((0, 1, 2), (1,), "liver")
LIVER_PAIRS = (("liver", 1, "tumor", 2),)


def volumes(seed=0):
    """An int16 CT (HU) and its label: a liver block (1) holding a tumor block (2)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(-100, 100, SHAPE).astype(np.int16)
    label = np.zeros(SHAPE, np.uint8)
    label[3:15, 4:14, 2:8] = 1
    label[6:9, 6:9, 4:6] = 2
    return image, label


def save(path: Path, data: np.ndarray, affine=AFFINE) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return str(path)


def entry(root: Path, name: str, image_affine=AFFINE, label_affine=AFFINE, four_d=False) -> dict:
    image, label = volumes()
    if four_d:
        image, label = image[..., None], label[..., None]
    return {"image": save(root / "img" / f"{name}.nii.gz", image, image_affine),
            "label": save(root / "lab" / f"{name}.nii.gz", label, label_affine)}


@pytest.fixture
def header_reads(monkeypatch):
    """Path -> how many times ``readers.read_header`` read it (each test starts with no cached header)."""
    case_geometry.clear_cache()
    counts: Counter = Counter()
    real = readers.read_header

    def counting(path):
        counts[os.fspath(path)] += 1
        return real(path)

    monkeypatch.setattr(readers, "read_header", counting)
    yield counts
    case_geometry.clear_cache()


# ------------------------------------------------------------------------- one header pass
def test_the_datalist_check_and_the_preflight_read_each_header_once(tmp_path, header_reads):
    lists = {"training": [entry(tmp_path, f"train{i}") for i in range(3)],
             "validation": [entry(tmp_path, "val0")]}
    files = [e[k] for items in lists.values() for e in items for k in ("image", "label")]

    for items in lists.values():
        check_datalist_files(items)
    kept = preflight.screen(lists, LIVER, workers=0)

    assert kept == lists  # every case is good: the checks ran to the end
    assert header_reads == Counter({f: 1 for f in files})


def test_a_rewritten_file_is_read_again(tmp_path, header_reads):
    case = entry(tmp_path, "a")
    assert find_unreadable_files([case]) == []
    image, _ = volumes()
    save(Path(case["label"]), image[..., :5].astype(np.uint8))  # replaced by a file of another shape
    os.utime(case["label"], ns=(1, 1))  # a new modification time, whatever the clock's resolution

    problems = preflight.header_problems(case)

    assert header_reads[case["label"]] == 2 and header_reads[case["image"]] == 1
    assert problems == [f"shape mismatch: image {SHAPE} vs label {SHAPE[:2] + (5,)} ({case['label']})"]


def test_file_problems_and_grid_problems_name_the_file(tmp_path):
    case_geometry.clear_cache()
    flat = {"image": save(tmp_path / "flat.nii.gz", np.zeros(SHAPE[:2], np.int16)),
            "label": str(tmp_path / "absent.nii.gz")}
    (tmp_path / "scan.png").write_bytes(b"x")
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti file at all" * 20)
    odd = {"image": str(tmp_path / "scan.png"), "label": str(tmp_path / "broken.nii.gz")}

    # The datalist check names files that cannot be used; a 2D scan is the pre-flight's to refuse.
    lines = find_unreadable_files([flat, odd])
    assert lines[0] == f"label file missing: {tmp_path / 'absent.nii.gz'}"
    assert lines[1].startswith(f"image file unsupported format: {tmp_path / 'scan.png'} (supported: .nii.gz")
    assert lines[2].startswith(f"label file unreadable: {tmp_path / 'broken.nii.gz'} (")
    assert len(lines) == 3
    assert preflight.header_problems(flat) == [
        f"label file missing: {tmp_path / 'absent.nii.gz'}",
        f"image is not 3D: shape {SHAPE[:2]} ({tmp_path / 'flat.nii.gz'})"]


# ------------------------------------------------------------------------- one 3D rule
def test_a_one_channel_4d_nifti_is_3d_for_every_reader(tmp_path):
    case_geometry.clear_cache()
    image, label = volumes()
    four_d = entry(tmp_path, "four_d", four_d=True)
    assert nib.load(four_d["image"]).shape == SHAPE + (1,)  # stored 4D

    np.testing.assert_array_equal(readers.read_volume(four_d["image"]).array, image)
    assert readers.read_geometry(four_d["image"]).shape == SHAPE
    assert readers.read_header(four_d["label"]).shape == SHAPE
    np.testing.assert_array_equal(read_label(Path(four_d["label"])), label)
    assert preflight.header_problems(four_d) == []
    checked = check_case(four_d["image"], four_d["label"], (0, 1, 2), (1,))
    assert checked.ok and checked.shape == SHAPE and checked.organ_voxels == int((label == 1).sum())
    # A 4D prediction against a 3D label (and the reverse) scores as the 3D pair.
    plain = save(tmp_path / "plain_label.nii.gz", label)
    assert score_files(four_d["label"], plain, LIVER_PAIRS)["liver_dice"] == 1.0
    assert score_files(plain, four_d["label"], LIVER_PAIRS)["tumor_dice"] == 1.0


def test_offline_generation_reads_a_one_channel_4d_nifti_as_3d(tmp_path):
    from labelfree.apps.offline.case import _load_pair

    image, label = volumes()
    four_d = entry(tmp_path, "four_d", four_d=True)
    loaded_image, loaded_label, affine, dtype = _load_pair(four_d["image"], four_d["label"])
    np.testing.assert_array_equal(loaded_image, image.astype(np.float32))
    np.testing.assert_array_equal(loaded_label, label)
    np.testing.assert_array_equal(affine, AFFINE)
    assert dtype == np.int16


@pytest.mark.parametrize("shape", [(4, 4, 4, 2), (4, 4), (4, 4, 4, 1, 1)])
def test_only_a_trailing_axis_of_length_one_is_dropped(shape):
    assert readers.grid_shape(shape) == tuple(shape)
    assert readers.grid_shape((4, 5, 6, 1)) == (4, 5, 6)


# ------------------------------------------------------------------------- one grid rule
@pytest.mark.parametrize("shift_in_tolerances, same", [(0.5, True), (2.0, False)])
def test_every_grid_check_uses_the_one_tolerance(tmp_path, shift_in_tolerances, same):
    case_geometry.clear_cache()
    shifted = AFFINE.copy()
    shifted[1, 3] += shift_in_tolerances * readers.GRID_TOLERANCE_MM
    case = entry(tmp_path, "shifted", label_affine=shifted)
    image_grid, label_volume = readers.read_geometry(case["image"]), readers.read_volume(case["label"])

    header = preflight.header_problems(case)
    content = check_case(case["image"], case["label"], (0, 1, 2), (1,)).problems
    converter = check_image_geometry(label_volume, Path(case["image"]))

    assert readers.same_grid(image_grid, label_volume) is same
    assert (header == []) is same and (content == []) is same and (converter == []) is same
    if not same:
        assert header == content == [f"affine mismatch: image and label differ by up to 0.002 mm ({case['label']})"]
