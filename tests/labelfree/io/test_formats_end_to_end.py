"""A MetaImage case and a DICOM-series case through training (one epoch) and evaluation.

The datalist mixes formats as real data roots do: an LNDb-style ``.mhd``/``.raw`` image with
a ``.mhd``/``.zraw`` label, and a DICOM folder with a NIfTI label whose affine is computed
from the slices' DICOM tags (not from ITK). ``main.py`` trains one epoch with synthetic
tumors on them; ``validation.py`` segments and scores them and writes predictions whose
affines put every voxel at the world point of the input's voxel.
"""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("itk", reason="the MetaImage/DICOM readers need the [formats] extra (itk-io)")
pytest.importorskip("pydicom", reason="the test writes its DICOM series with pydicom")

from tests.format_writers import dicom_world_ras, metaimage_world_ras, world_of  # noqa: E402
from tests.format_writers import write_dicom_series, write_metaimage  # noqa: E402
from labelfree.cli import train as train_cli  # noqa: E402
from labelfree.cli import validate as validation  # noqa: E402

SHAPE = (48, 48, 32)
SPACING = (3.0, 3.0, 3.0)
SMALL = ["--roi_x", "32", "--roi_y", "32", "--roi_z", "32", "--space_x", "3", "--space_y", "3", "--space_z", "3",
         "--workers", "0", "--warmup_epochs", "1", "--max_epochs", "1", "--val_every", "100", "--cache_num", "2"]


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
    root = tmp_path_factory.mktemp("mixed")
    (root / "img").mkdir()
    (root / "label").mkdir()
    # LNDb-like: axes along LPS, the origin of a chest scan.
    image, label = torso_case(0)
    directions = np.eye(3)
    write_metaimage(root / "img" / "LNDb-0001.mhd", image, directions, (-70.0, -70.0, -300.0), SPACING,
                    "LNDb-0001.raw")
    write_metaimage(root / "label" / "LNDb-0001.mhd", label, directions, (-70.0, -70.0, -300.0), SPACING,
                    "LNDb-0001.zraw", compress=True)
    # DICOM: a typical axial series: rows run to the patient's left (+x LPS), columns to posterior.
    image, label = torso_case(1)
    series = write_dicom_series(root / "img" / "series_1", image.astype(float), (1, 0, 0), (0, 1, 0),
                                (SPACING[1], SPACING[0]), SPACING[2], (-72.0, -60.0, -450.0))
    corners = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    world = dicom_world_ras(series, corners)  # from the DICOM tags, independently of ITK
    affine = np.eye(4)
    affine[:3, :3] = (world[1:] - world[0]).T
    affine[:3, 3] = world[0]
    nib.save(nib.Nifti1Image(label, affine), str(root / "label" / "series_1.nii.gz"))
    cases = [{"image": "img/LNDb-0001.mhd", "label": "label/LNDb-0001.mhd"},
             {"image": "img/series_1", "label": "label/series_1.nii.gz"}]
    (root / "datalist.json").write_text(json.dumps({"training": cases, "validation": cases}))
    return root


@pytest.mark.slow
def test_metaimage_and_dicom_cases_train_one_epoch_and_evaluate(tmp_path, mixed_root):
    logdir = tmp_path / "runs" / "formats"
    data = ["--json_dir", str(mixed_root / "datalist.json"), "--train_dir", str(mixed_root), "--val_dir",
            str(mixed_root)]
    train_cli.main([*data, "--logdir", str(logdir), "--save_checkpoint", "--syn", "--noamp", *SMALL])
    checkpoint = logdir / "model_final.pt"  # no in-training validation: validation.py evaluates
    assert checkpoint.is_file()

    save_dir = tmp_path / "outs"
    assert validation.cli([*data[:2], "--val_dir", str(mixed_root), "--log_dir", str(logdir),
                           "--checkpoint", str(checkpoint), "--save_dir", str(save_dir), "--device", "cpu",
                           "--no_postprocess"]) == 0
    out = save_dir / "formats" / "0.5"
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["LNDb-0001", "series_1"]
    for r in rows:  # scored (numbers, not blanks); an untrained-for-long net may score anything
        assert 0.0 <= float(r["liver_dice"]) <= 1.0
    ijk = np.argwhere(np.ones(SHAPE, bool))[::101]
    mhd = nib.load(out / "pred" / "LNDb-0001.nii.gz")
    assert mhd.shape == SHAPE
    np.testing.assert_allclose(world_of(mhd.affine, ijk),
                               metaimage_world_ras(mixed_root / "img" / "LNDb-0001.mhd", ijk), atol=1e-3)
    dicom = nib.load(out / "pred" / "series_1.nii.gz")
    assert dicom.shape == SHAPE
    np.testing.assert_allclose(world_of(dicom.affine, ijk), dicom_world_ras(mixed_root / "img" / "series_1", ijk),
                               atol=1e-3)
