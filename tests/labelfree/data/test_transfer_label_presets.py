"""transfer_label.py --dataset presets of public datasets, on small files in their real layouts.

LNDb as distributed (MetaImage CT + one mask per radiologist), MSD Task06 Lung, KiTS (a
folder per case) and TotalSegmentator label maps. Expected outputs are computed here from
the arrays written (np.isin, counts), and the output geometry from the MetaImage header.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from labelfree.data import transfer_label
from tests.format_writers import metaimage_world_ras, world_of, write_metaimage
from tests.helpers.volumes import chest_phantom, save

AFFINE = np.diag([1.5, 1.5, 5.0, 1.0])


def load(path):
    img = nib.load(str(path))
    return img, np.asarray(img.dataobj)


def nodule_at(shape, center, half=1, value=1):
    out = np.zeros(shape, np.uint8)
    x, y, z = center
    out[x - half:x + half + 1, y - half:y + half + 1, z - half:z + half + 1] = value
    return out


def test_lndb_as_distributed_merges_radiologists_by_agreement(tmp_path, capsys):
    root = tmp_path / "root"
    image, lungs = chest_phantom()
    cx, cy = image.shape[0] // 2, image.shape[1] // 2
    a = nodule_at(image.shape, (cx + 9, cy, 7), value=1)  # marked by both radiologists
    b = nodule_at(image.shape, (cx - 9, cy + 3, 10), value=2)  # by radiologist 1 only (nodule id 2)
    origin, directions, spacing = (-36.0, -30.0, -200.0), np.eye(3), (1.5, 1.5, 5.0)
    (root / "LNDb" / "data").mkdir(parents=True)
    (root / "LNDb" / "masks").mkdir(parents=True)
    ct_path = write_metaimage(root / "LNDb/data/LNDb-0001.mhd", image, directions, origin, spacing, "LNDb-0001.raw")
    write_metaimage(root / "LNDb/masks/LNDb-0001_rad1.mhd", a + b, directions, origin, spacing, "LNDb-0001_rad1.raw")
    write_metaimage(root / "LNDb/masks/LNDb-0001_rad2.mhd", a * 3, directions, origin, spacing, "LNDb-0001_rad2.raw")

    assert transfer_label.main(["--data_path", str(root), "--dataset", "lndb_mhd"]) == 0
    out_img, out = load(root / "label/lndb-LNDb-0001.nii.gz")
    np.testing.assert_array_equal(out == 2, (a > 0) | (b > 0))  # default: any radiologist
    lung = out >= 1
    assert 2 * (lung & lungs).sum() / (lung.sum() + lungs.sum()) > 0.95
    ijk = np.array([[0, 0, 0], [47, 0, 0], [0, 39, 15], [10, 20, 5]])
    np.testing.assert_allclose(world_of(out_img.affine, ijk), metaimage_world_ras(ct_path, ijk), atol=1e-4)
    assert "radiologist" in capsys.readouterr().out

    assert transfer_label.main(["--data_path", str(root), "--dataset", "lndb_mhd", "--lndb_agreement", "2",
                                "--overwrite"]) == 0
    _, out = load(root / "label/lndb-LNDb-0001.nii.gz")
    np.testing.assert_array_equal(out == 2, a > 0)
    manifest = json.loads((root / "label/manifest.json").read_text())
    record = manifest["outputs"]["lndb-LNDb-0001.nii.gz"]
    assert record["image"] == "LNDb/data/LNDb-0001.mhd" and record["organ"] == "lung" and record["has_tumor"]


def test_lndb_mask_on_another_grid_is_reported_and_left_out(tmp_path, capsys):
    root = tmp_path / "root"
    image, _ = chest_phantom()
    a = nodule_at(image.shape, (image.shape[0] // 2 + 9, image.shape[1] // 2, 7))
    write_metaimage(_mkdir(root / "LNDb/data") / "LNDb-0002.mhd", image, np.eye(3), (0, 0, 0), (1.5, 1.5, 5), "c.raw")
    write_metaimage(_mkdir(root / "LNDb/masks") / "LNDb-0002_rad1.mhd", a, np.eye(3), (0, 0, 0), (1.5, 1.5, 5), "1.raw")
    write_metaimage(root / "LNDb/masks/LNDb-0002_rad2.mhd", a, np.eye(3), (3, 0, 0), (1.5, 1.5, 5), "2.raw")
    assert transfer_label.main(["--data_path", str(root), "--dataset", "lndb_mhd", "--lndb_agreement", "2"]) == 0
    report = capsys.readouterr().out
    assert "mask LNDb-0002_rad2.mhd is not on the CT's voxel grid: left out" in report
    _, out = load(root / "label/lndb-LNDb-0002.nii.gz")
    assert not (out == 2).any()  # one usable reader cannot reach an agreement of 2


def _mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_msd_task06_lung_tumor_becomes_2_in_an_extracted_lung(tmp_path):
    root = tmp_path / "root"
    image, lungs = chest_phantom()
    tumor = nodule_at(image.shape, (image.shape[0] // 2 + 9, image.shape[1] // 2, 8), half=2)
    save(root / "Task06_Lung/imagesTr/lung_001.nii.gz", image, affine=AFFINE, dtype=np.int16)
    save(root / "Task06_Lung/labelsTr/lung_001.nii.gz", tumor, affine=AFFINE)
    assert transfer_label.main(["--data_path", str(root), "--dataset", "msd_lung"]) == 0
    out_img, out = load(root / "label/msd06-lung_001.nii.gz")
    np.testing.assert_array_equal(out == 2, tumor == 1)
    lung = out >= 1
    assert 2 * (lung & lungs).sum() / (lung.sum() + lungs.sum()) > 0.95
    np.testing.assert_array_equal(out_img.affine, AFFINE)


def test_kits_case_folders_map_to_the_kidney_profile(tmp_path, capsys):
    root = tmp_path / "root"
    rng = np.random.default_rng(0)
    shape = (20, 18, 10)
    for i, values in enumerate(([0, 1, 2, 3], [0, 1, 2], [0, 2])):
        label = rng.choice(values, size=shape).astype(np.uint8)
        save(root / f"kits23/dataset/case_{i:05d}/segmentation.nii.gz", label, affine=AFFINE)
        save(root / f"kits23/dataset/case_{i:05d}/imaging.nii.gz", rng.integers(-100, 200, shape), affine=AFFINE,
             dtype=np.int16)
    assert transfer_label.main(["--data_path", str(root), "--dataset", "kits"]) == 0
    report = capsys.readouterr().out
    for i in (0, 1):
        source = np.asarray(nib.load(root / f"kits23/dataset/case_{i:05d}/segmentation.nii.gz").dataobj)
        _, out = load(root / f"label/kits-case_{i:05d}.nii.gz")
        np.testing.assert_array_equal(out == 1, np.isin(source, (1, 3)))
        np.testing.assert_array_equal(out == 2, source == 2)
    assert not (root / "label/kits-case_00002.nii.gz").exists()  # no kidney voxel: reported, not written
    assert "organ empty: no kidney voxel" in report
    assert "cyst voxels counted as kidney" in report


@pytest.mark.parametrize("preset, expected", [
    ("liver", {5: 1}), ("pancreas", {7: 1}), ("kidney", {2: 1, 3: 1}),
    ("lung", {10: 1, 11: 1, 12: 1, 13: 1, 14: 1}), ("multi", {5: 1, 7: 3, 2: 5, 3: 5}),
])
def test_totalsegmentator_label_maps(tmp_path, preset, expected):
    root = tmp_path / "root"
    rng = np.random.default_rng(1)
    shape = (16, 14, 8)
    label = rng.choice([0, 1, 2, 3, 5, 7, 10, 11, 12, 13, 14, 20, 117], size=shape).astype(np.uint8)
    save(root / "TotalSegmentator/labelsTr/s0001.nii.gz", label, affine=AFFINE)
    save(root / "TotalSegmentator/imagesTr/s0001.nii.gz", rng.integers(-100, 200, shape), affine=AFFINE,
         dtype=np.int16)
    assert transfer_label.main(["--data_path", str(root), "--dataset", f"totalseg_{preset}"]) == 0
    out_img, out = load(root / f"label/ts-{preset}-s0001.nii.gz")
    want = np.zeros(shape, np.uint8)
    for source, target in expected.items():
        want[label == source] = target
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(out_img.affine, AFFINE)
