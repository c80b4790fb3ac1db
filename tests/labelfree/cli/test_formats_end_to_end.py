"""MetaImage, NRRD and DICOM-series cases through main.py (one epoch) and validation.py, default install.

The datalist mixes formats as real data roots do: an LNDb-style ``.mhd``/``.raw`` image with
a ``.mhd``/``.zraw`` label, a 3D Slicer-style ``.nrrd`` image with a ``.seg.nrrd`` label map,
and a DICOM folder with a NIfTI label whose affine is computed from the slices' DICOM tags.
Nothing beyond ``requirements.txt`` is needed to read them (SimpleITK), and the test does not
skip: it is the acceptance test of "every format in the default install". ``main.py`` trains
one epoch with synthetic tumors on them; ``validation.py`` segments and scores them and writes
predictions whose affines put every voxel at the world point of the label's voxel, computed
from the label files' header fields (never from SimpleITK).
"""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from labelfree.cli import train as train_cli
from labelfree.cli import validate as validation
from tests.helpers.training import SMALL as TINY_TRAINING
from tests.format_writers import (
    dicom_world_ras,
    metaimage_world_ras,
    nrrd_world_ras,
    world_of,
    write_dicom_series,
    write_metaimage,
    write_nrrd,
)

SHAPE = (48, 48, 32)
SPACING = (3.0, 3.0, 3.0)
SMALL = [*TINY_TRAINING, "--max_epochs", "1", "--val_every", "100", "--cache_num", "3"]


def torso_case(seed: int):
    """Body ellipse (40 HU), liver ellipsoid (110 HU, label 1), noise; values >= -1024 HU."""
    x, y, z = np.meshgrid(*[np.arange(s, dtype=float) for s in SHAPE], indexing="ij")
    c = [s / 2 for s in SHAPE]
    rng = np.random.default_rng(seed)
    image = np.full(SHAPE, -1000.0)
    image[((x - c[0]) / 21) ** 2 + ((y - c[1]) / 17) ** 2 < 1] = 40
    liver = ((x - c[0] + 5) / 12) ** 2 + ((y - c[1]) / 10) ** 2 + ((z - c[2]) / 10) ** 2 < 1
    image[liver] = 110
    image = np.clip(np.round(image + rng.normal(0, 8, SHAPE)), -1024, 3000).astype(np.int16)
    return image, liver.astype(np.uint8)


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory):
    """A data root of one case per format; returns (root, {case name: world function of its label})."""
    root = tmp_path_factory.mktemp("mixed")
    (root / "img").mkdir()
    (root / "label").mkdir()
    label_world = {}
    # LNDb-like: axes along LPS, the origin of a chest scan.
    image, label = torso_case(0)
    origin = (-70.0, -70.0, -300.0)
    write_metaimage(root / "img" / "LNDb-0001.mhd", image, np.eye(3), origin, SPACING, "LNDb-0001.raw")
    path = write_metaimage(root / "label" / "LNDb-0001.mhd", label, np.eye(3), origin, SPACING, "LNDb-0001.zraw",
                           compress=True)
    label_world["LNDb-0001"] = lambda ijk, path=path: metaimage_world_ras(path, ijk)
    # 3D Slicer-like: gzip NRRD in LPS, the first axis running right (-x LPS), the second anterior.
    image, label = torso_case(1)
    steps = np.diag([-SPACING[0], -SPACING[1], SPACING[2]])
    origin = (95.0, 80.0, -120.0)
    write_nrrd(root / "img" / "CTChest1.nrrd", image, steps, origin, gzip=True)
    path = write_nrrd(root / "label" / "CTChest1.seg.nrrd", label, steps, origin, gzip=True)
    label_world["CTChest1"] = lambda ijk, path=path: nrrd_world_ras(path, ijk)
    # DICOM: a typical axial series: rows run to the patient's left (+x LPS), columns to posterior.
    image, label = torso_case(2)
    series = write_dicom_series(root / "img" / "series_1", image.astype(float), (1, 0, 0), (0, 1, 0),
                                (SPACING[1], SPACING[0]), SPACING[2], (-72.0, -60.0, -450.0))
    corners = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    world = dicom_world_ras(series, corners)  # from the DICOM tags, independently of SimpleITK
    affine = np.eye(4)
    affine[:3, :3] = (world[1:] - world[0]).T
    affine[:3, 3] = world[0]
    path = root / "label" / "series_1.nii.gz"
    nib.save(nib.Nifti1Image(label, affine), str(path))
    label_world["series_1"] = lambda ijk, path=path: world_of(nib.load(path).affine, ijk)
    cases = [{"image": "img/LNDb-0001.mhd", "label": "label/LNDb-0001.mhd"},
             {"image": "img/CTChest1.nrrd", "label": "label/CTChest1.seg.nrrd"},
             {"image": "img/series_1", "label": "label/series_1.nii.gz"}]
    (root / "datalist.json").write_text(json.dumps({"training": cases, "validation": cases}))
    return root, label_world


@pytest.mark.slow
def test_metaimage_nrrd_and_dicom_cases_train_one_epoch_and_are_predicted_on_the_label_grid(tmp_path, mixed_root):
    root, label_world = mixed_root
    logdir = tmp_path / "runs" / "formats"
    data = ["--json_dir", str(root / "datalist.json"), "--train_dir", str(root), "--val_dir", str(root)]
    train_cli.main([*data, "--logdir", str(logdir), "--save_checkpoint", "--syn", "--noamp", *SMALL])
    checkpoint = logdir / "model_final.pt"  # no in-training validation: validation.py evaluates
    assert checkpoint.is_file()

    save_dir = tmp_path / "outs"
    assert validation.cli([*data[:2], "--val_dir", str(root), "--log_dir", str(logdir),
                           "--checkpoint", str(checkpoint), "--save_dir", str(save_dir), "--device", "cpu",
                           "--no_postprocess"]) == 0
    out = save_dir / "formats" / "0.5"
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["LNDb-0001", "CTChest1", "series_1"]
    for r in rows:  # scored (numbers, not blanks); a net trained for one epoch may score anything
        assert 0.0 <= float(r["liver_dice"]) <= 1.0
    ijk = np.argwhere(np.ones(SHAPE, bool))[::101]
    for name, world in label_world.items():
        pred = nib.load(out / "pred" / f"{name}.nii.gz")
        assert pred.shape == SHAPE, name
        np.testing.assert_allclose(world_of(pred.affine, ijk), world(ijk), atol=1e-3, err_msg=name)
