"""transfer_label.py and labelfree/data/labels.py: label conversions on small NIfTI roots in the original layout."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from labelfree.data import transfer_label
from labelfree.data.labels import (
    LabelError,
    as_integer_labels,
    extract_lung_mask,
    label_value_counts,
    map_label_values,
    parse_label_map,
)
from tests.helpers.volumes import AFFINE, chest_phantom, save

REPO = Path(__file__).resolve().parents[3]
SHAPE = (24, 24, 12)


def ct(seed: int, shape=SHAPE) -> np.ndarray:
    """Noise CT in HU (noise: a truncated gzip cannot hide in a highly compressible stream)."""
    return np.random.default_rng(seed).integers(-1000, 400, shape).astype(np.int16)


def box(shape=SHAPE, value=1, lo=(4, 4, 3), hi=(14, 14, 9), dtype=np.uint8) -> np.ndarray:
    out = np.zeros(shape, dtype)
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = value
    return out


def make_original_root(root: Path) -> Path:
    """A data root in the original layout with one of each conversion case."""
    # BTCV: 0001 a normal case (liver 6, spleen 1, pancreas 11); 0002 without liver.
    btcv = box(value=6) + box(lo=(16, 4, 2), hi=(20, 10, 6), value=1) + box(lo=(16, 14, 6), hi=(20, 20, 10), value=11)
    save(root / "01_Multi-Atlas_Labeling/img/img0001.nii.gz", ct(1), dtype=np.int16)
    save(root / "01_Multi-Atlas_Labeling/label/label0001.nii.gz", btcv, descrip=b"btcv source")
    save(root / "01_Multi-Atlas_Labeling/img/img0002.nii.gz", ct(2), dtype=np.int16)
    save(root / "01_Multi-Atlas_Labeling/label/label0002.nii.gz", np.where(btcv == 6, 0, btcv))
    # TCIA: liver 6 stored as float32 (a common export), image named PANCREAS_0001.
    save(root / "02_TCIA_Pancreas-CT/img/PANCREAS_0001.nii.gz", ct(3), dtype=np.int16)
    save(root / "02_TCIA_Pancreas-CT/multiorgan_label/label0001.nii.gz", box(value=6), dtype=np.float32)
    # CHAOS: one mask stored 0/255, one empty.
    save(root / "03_CHAOS/ct/img/1_image.nii.gz", ct(4), dtype=np.int16)
    save(root / "03_CHAOS/ct/liver_label/1_segmentation.nii.gz", box(value=255))
    save(root / "03_CHAOS/ct/img/2_image.nii.gz", ct(5), dtype=np.int16)
    save(root / "03_CHAOS/ct/liver_label/2_segmentation.nii.gz", np.zeros(SHAPE, np.uint8))
    # LiTS: 0 tumor; 32 tumor-free (original list); 7 tumor-free (not listed); 34 listed but with tumor.
    tumor = box() + box(lo=(6, 6, 4), hi=(9, 9, 7), value=1)
    for case, label in ((0, tumor), (32, box()), (7, box()), (34, tumor)):
        save(root / f"04_LiTS/img/liver_{case}.nii.gz", ct(10 + case), dtype=np.int16)
        save(root / f"04_LiTS/label/liver_{case}.nii.gz", label)
    return root


def tree_checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "transfer_label.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def load(path: Path):
    img = nib.load(str(path))
    return img, np.asanyarray(img.dataobj)


# --------------------------------------------------------------------------- pure functions


def test_map_label_values_matches_a_direct_comparison():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 14, (10, 9, 8))
    out = map_label_values(label, {6: 1, 11: 3})
    expected = np.where(label == 6, 1, np.where(label == 11, 3, 0))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    # A long map takes the lookup-table path; negative values are never mapped.
    big = {v: (v * 7) % 5 for v in range(12)}
    signed = label - 1
    expected = np.zeros(label.shape, np.uint8)
    for src, dst in big.items():
        expected[signed == src] = dst
    np.testing.assert_array_equal(map_label_values(signed, big), expected)


def test_parse_label_map_and_its_errors():
    assert parse_label_map(["6:1", " 11 : 3 "]) == {6: 1, 11: 3}
    for bad in (["6-1"], ["a:1"], ["6:300"], ["6:1", "6:2"], ["-1:2"]):
        with pytest.raises(ValueError):
            parse_label_map(bad)


def test_as_integer_labels_accepts_float_integers_and_rejects_fractions():
    np.testing.assert_array_equal(as_integer_labels(np.array([0.0, 6.0000001, 2.0])), [0, 6, 2])
    with pytest.raises(LabelError, match="non-integer"):
        as_integer_labels(np.array([0.0, 0.5]))
    with pytest.raises(LabelError, match="NaN"):
        as_integer_labels(np.array([0.0, np.nan]))


def test_label_value_counts_against_numpy_unique():
    label = np.random.default_rng(1).integers(-2, 5, (7, 6, 5))
    values, counts = np.unique(label, return_counts=True)
    assert label_value_counts(label) == dict(zip(values.tolist(), counts.tolist()))
    assert label_value_counts(label.clip(0)) == dict(zip(*[a.tolist() for a in np.unique(label.clip(0), return_counts=True)]))


def test_extract_lung_mask_finds_both_lungs_and_nothing_else():
    image, lungs = chest_phantom()
    mask = extract_lung_mask(image)
    dice = 2 * (mask & lungs).sum() / (mask.sum() + lungs.sum())
    assert dice > 0.97
    assert (mask & ~lungs).sum() < 0.02 * lungs.sum()
    # Both lungs present (the right and left halves), the vessel filled, the gas pocket left out.
    half = image.shape[0] // 2
    assert mask[:half].sum() > 0.4 * lungs[:half].sum() and mask[half:].sum() > 0.4 * lungs[half:].sum()
    cx, cy = image.shape[0] // 2, image.shape[1] // 2
    assert mask[cx - 9, cy, 5]  # vessel voxel inside the left lung
    assert not mask[cx, cy + 11, 1]  # bowel gas


def test_extract_lung_mask_without_lungs_is_empty():
    assert not extract_lung_mask(np.full((16, 16, 6), -1000, np.int16)).any()
    solid = np.full((16, 16, 6), -1000, np.int16)
    solid[3:13, 3:13] = 40
    assert not extract_lung_mask(solid).any()


# --------------------------------------------------------------------------- end to end


def test_end_to_end_original_layout_keeps_geometry_and_sources(tmp_path):
    root = make_original_root(tmp_path / "root")
    before = tree_checksums(root)
    result = run_cli("--data_path", str(root))
    assert result.returncode == 0, result.stderr
    out = root / "label"

    # Sources untouched: every file present before has the same bytes.
    after = tree_checksums(root)
    assert {k: after[k] for k in before} == before

    expected_outputs = {"multi-atlas-label0001.nii.gz", "tcia-label0001.nii.gz", "chaos-1_segmentation.nii.gz",
                        "lits-liver_32.nii.gz", "lits-liver_7.nii.gz"}
    assert {p.name for p in out.glob("*.nii.gz")} == expected_outputs

    src_img, src = load(root / "01_Multi-Atlas_Labeling/label/label0001.nii.gz")
    dst_img, dst = load(out / "multi-atlas-label0001.nii.gz")
    assert dst.dtype == np.uint8
    np.testing.assert_array_equal(dst, (src == 6).astype(np.uint8))
    np.testing.assert_allclose(dst_img.affine, src_img.affine)
    for key in ("sform_code", "qform_code", "descrip", "xyzt_units", "pixdim", "quatern_b", "srow_x"):
        np.testing.assert_array_equal(dst_img.header[key], src_img.header[key], err_msg=key)

    _, tcia = load(out / "tcia-label0001.nii.gz")
    np.testing.assert_array_equal(tcia, box())
    _, chaos = load(out / "chaos-1_segmentation.nii.gz")
    np.testing.assert_array_equal(chaos, box())
    _, lits = load(out / "lits-liver_32.nii.gz")
    np.testing.assert_array_equal(lits, box())

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["outputs"]["tcia-label0001.nii.gz"]["image"] == "02_TCIA_Pancreas-CT/img/PANCREAS_0001.nii.gz"
    assert manifest["outputs"]["chaos-1_segmentation.nii.gz"]["image"] == "03_CHAOS/ct/img/1_image.nii.gz"
    assert manifest["not_written"]["04_LiTS/label/liver_0.nii.gz"]["tumor_case"] is True

    report = result.stdout
    assert "label0002.nii.gz (not written)" in report and "organ missing" in report
    assert "2_segmentation.nii.gz (not written)" in report and "organ empty" in report
    assert "liver_34.nii.gz" in report and "listed tumor-free by the original project" in report
    assert "liver_7.nii.gz: tumor-free (found in the data; not in the original project's list)" in report
    assert "0/255" in report
    assert "not found" in report and "tcia" not in report.split("skipped:")[1].splitlines()[0]

    # Idempotent: a second run skips every output, rewrites nothing, reports the same problems.
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    again = run_cli("--data_path", str(root))
    assert again.returncode == 0, again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")} == mtimes
    assert "existing outputs were skipped" in again.stdout
    assert "organ missing" in again.stdout and "listed tumor-free by the original project" in again.stdout


def test_dry_run_writes_nothing(tmp_path):
    root = make_original_root(tmp_path / "root")
    before = tree_checksums(root)
    result = run_cli("--data_path", str(root), "--dry_run")
    assert result.returncode == 0, result.stderr
    assert tree_checksums(root) == before
    assert not (root / "label").exists()
    assert "dry run" in result.stdout and "would write" in result.stdout


def test_named_missing_dataset_exits_nonzero_with_message(tmp_path):
    root = make_original_root(tmp_path / "root")
    result = run_cli("--data_path", str(root), "--dataset", "msd_liver")
    assert result.returncode == 2
    assert "msd_liver" in result.stderr and "Task03_Liver/labelsTr" in result.stderr and "not found" in result.stderr
    assert not (root / "label").exists()


def test_one_dataset_only_and_overwrite(tmp_path):
    root = make_original_root(tmp_path / "root")
    assert transfer_label.main(["--data_path", str(root), "--dataset", "chaos"]) == 0
    assert {p.name for p in (root / "label").glob("*.nii.gz")} == {"chaos-1_segmentation.nii.gz"}

    # A stale output is kept without --overwrite and redone with it.
    stale = root / "label/chaos-1_segmentation.nii.gz"
    save(stale, np.zeros(SHAPE, np.uint8))
    assert transfer_label.main(["--data_path", str(root), "--dataset", "chaos"]) == 0
    assert not load(stale)[1].any()
    assert transfer_label.main(["--data_path", str(root), "--dataset", "chaos", "--overwrite"]) == 0
    np.testing.assert_array_equal(load(stale)[1], box())


def test_generic_dataset_with_value_map(tmp_path, capsys):
    root = tmp_path / "root"
    label = box(value=6) + box(lo=(16, 14, 6), hi=(20, 20, 10), value=11) + box(lo=(16, 4, 2), hi=(20, 10, 6), value=3)
    save(root / "07_Other/labelsTr/case_01.nii.gz", label)
    save(root / "07_Other/imagesTr/case_01_0000.nii.gz", ct(7), dtype=np.int16)
    argv = ["--data_path", str(root), "--dataset", "generic", "--src_dir", "07_Other/labelsTr",
            "--image_dir", "07_Other/imagesTr", "--prefix", "other-", "--map", "6:1", "--map", "11:3",
            "--image_rename", ".nii.gz:_0000.nii.gz"]
    assert transfer_label.main(argv) == 0
    _, out = load(root / "label/other-case_01.nii.gz")
    np.testing.assert_array_equal(out, np.where(label == 6, 1, np.where(label == 11, 3, 0)))
    manifest = json.loads((root / "label/manifest.json").read_text())
    assert manifest["outputs"]["other-case_01.nii.gz"]["image"] == "07_Other/imagesTr/case_01_0000.nii.gz"
    assert "no problem found" in capsys.readouterr().out

    for incomplete in (["--dataset", "generic", "--src_dir", "07_Other/labelsTr"],  # no --image_dir/--prefix/--map
                       ["--src_dir", "07_Other/labelsTr"],  # generic options without --dataset generic
                       ["--dataset", "generic", "--src_dir", "07_Other/labelsTr", "--image_dir", "x",
                        "--prefix", "lits-", "--map", "6:1"]):  # a built-in prefix
        capsys.readouterr()
        assert transfer_label.main(["--data_path", str(root), *incomplete]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


def test_unexpected_values_and_corrupt_source_are_reported(tmp_path, capsys):
    root = tmp_path / "root"
    label = box(value=6)
    label[0, 0, 0] = 20  # not a BTCV value
    save(root / "01_Multi-Atlas_Labeling/label/label0001.nii.gz", label)
    save(root / "01_Multi-Atlas_Labeling/img/img0001.nii.gz", ct(1), dtype=np.int16)
    good = save(root / "01_Multi-Atlas_Labeling/label/label0003.nii.gz", ct(3) % 14, dtype=np.int16)
    blob = good.read_bytes()
    good.write_bytes(blob[: len(blob) // 2])  # truncated gzip: header readable, data not
    save(root / "01_Multi-Atlas_Labeling/label/label0004.nii.gz", box(value=6),
         affine=AFFINE @ np.diag([2.0, 1, 1, 1]))
    save(root / "01_Multi-Atlas_Labeling/img/img0004.nii.gz", ct(4), dtype=np.int16)
    save(root / "01_Multi-Atlas_Labeling/label/label0005.nii.gz", box(value=6))  # no img0005

    assert transfer_label.main(["--data_path", str(root)]) == 1  # label0003 unreadable
    captured = capsys.readouterr()
    report = captured.out
    assert "1 source(s) could not be read" in captured.err
    assert "unexpected label values [20]" in report
    assert "label0003.nii.gz (not written)" in report and "cannot read" in report
    assert "image missing" in report  # img0005 does not exist
    assert "affine mismatch" in report  # label0004 vs img0004
    assert (root / "label/multi-atlas-label0001.nii.gz").is_file()


def test_broken_links_are_reported_and_give_exit_status_1(tmp_path, capsys):
    root = tmp_path / "root"
    save(root / "01_Multi-Atlas_Labeling/label/label0001.nii.gz", box(value=6))
    save(root / "01_Multi-Atlas_Labeling/img/img0001.nii.gz", ct(1), dtype=np.int16)
    (root / "01_Multi-Atlas_Labeling/label/label0002.nii.gz").symlink_to(tmp_path / "gone" / "label0002.nii.gz")
    save(root / "01_Multi-Atlas_Labeling/label/label0003.nii.gz", box(value=6))
    (root / "01_Multi-Atlas_Labeling/img/img0003.nii.gz").symlink_to(tmp_path / "gone" / "img0003.nii.gz")

    assert transfer_label.main(["--data_path", str(root)]) == 1
    captured = capsys.readouterr()
    assert f"broken link: {root / '01_Multi-Atlas_Labeling/label/label0002.nii.gz'}" in captured.out
    assert f"image is a broken link: {root / '01_Multi-Atlas_Labeling/img/img0003.nii.gz'}" in captured.out
    assert "2 source(s) could not be read" in captured.err
    # What could be converted is written all the same.
    assert sorted(p.name for p in (root / "label").glob("*.nii.gz")) == ["multi-atlas-label0001.nii.gz"]


def test_chest_and_lndb_lungs_from_label_or_extracted(tmp_path, capsys):
    root = tmp_path / "root"
    image, lungs = chest_phantom()
    affine = np.diag([1.5, 1.5, 5.0, 1.0])
    save(root / "05_Chest/img/chest_0001.nii.gz", image, affine=affine, dtype=np.int16)  # no lung label
    save(root / "05_Chest/img/chest_0002.nii.gz", image, affine=affine, dtype=np.int16)
    save(root / "05_Chest/label/chest_0002.nii.gz", lungs.astype(np.uint8) * 3, affine=affine)  # lung = 3
    nodule = np.zeros(image.shape, np.uint8)
    x0, y0 = image.shape[0] // 2 + 9, image.shape[1] // 2
    nodule[x0 - 1:x0 + 2, y0 - 1:y0 + 2, 6:9] = 2
    save(root / "06_LNDb/img/LNDb-0001.nii.gz", image, affine=affine, dtype=np.int16)
    save(root / "06_LNDb/label/LNDb-0001.nii.gz", nodule, affine=affine)  # nodules only: lung extracted

    assert transfer_label.main(["--data_path", str(root), "--dataset", "chest", "--dataset", "lndb",
                                "--lung_label", "3"]) == 0
    report = capsys.readouterr().out
    _, extracted = load(root / "label/chest-chest_0001.nii.gz")
    _, given = load(root / "label/chest-chest_0002.nii.gz")
    _, lndb = load(root / "label/lndb-LNDb-0001.nii.gz")
    np.testing.assert_array_equal(given, lungs.astype(np.uint8))
    dice = 2 * (extracted.astype(bool) & lungs).sum() / (extracted.sum() + lungs.sum())
    assert dice > 0.97
    assert set(np.unique(lndb)) == {0, 1, 2}
    np.testing.assert_array_equal(lndb == 2, nodule == 2)
    assert "chest_0001.nii.gz: no lung label: lung extracted from the CT by threshold (approximate)" in report
    manifest = json.loads((root / "label/manifest.json").read_text())
    assert manifest["outputs"]["lndb-LNDb-0001.nii.gz"]["has_tumor"] is True
    assert manifest["outputs"]["chest-chest_0001.nii.gz"]["organ"] == "lung"


def test_help_documents_the_layout():
    text = transfer_label.get_args_parser().format_help()
    for folder in ("01_Multi-Atlas_Labeling", "02_TCIA_Pancreas-CT", "03_CHAOS", "04_LiTS", "Task03_Liver",
                   "05_Chest", "06_LNDb", "--map", "--dry_run", "--overwrite"):
        assert folder in text


# --------------------------------------------------------------------------- phantom root


def test_phantom_root_labels_are_reproduced_and_lungs_extracted(phantom_root, tmp_path):
    """On the built-in phantom root (original layout), transfer_label rebuilds the phantom's
    own converted liver labels voxel for voxel, and the approximate lung extraction agrees
    with the phantom's lung labels."""
    root = tmp_path / "root"
    # Everything but the converted labels (and the datalists) of the root itself.
    top = str(phantom_root)
    shutil.copytree(phantom_root, root,
                    ignore=lambda d, names: {"label", "datafolds"} & set(names) if d == top else set())
    result = run_cli("--data_path", str(root))
    assert result.returncode == 0, result.stderr
    assert "no problem found" in result.stdout
    reference = sorted((phantom_root / "label").glob("multi-atlas-label*.nii.gz"))
    assert reference
    for ref_path in reference:
        ref_img, ref = load(ref_path)
        out_img, out = load(root / "label" / ref_path.name)
        np.testing.assert_array_equal(out, ref)
        np.testing.assert_allclose(out_img.affine, ref_img.affine)
    manifest = json.loads((root / "label/manifest.json").read_text())
    tumor_cases = [k for k, v in manifest["not_written"].items() if v["tumor_case"]]
    assert len(tumor_cases) == len(list((phantom_root / "04_LiTS/label").glob("*.nii.gz")))

    image_path = sorted((phantom_root / "05_Chest/img").glob("*.nii.gz"))[0]
    _, image = load(image_path)
    _, lungs = load(phantom_root / "05_Chest/label" / image_path.name)
    mask = extract_lung_mask(image)
    dice = 2 * (mask & (lungs == 1)).sum() / (mask.sum() + (lungs == 1).sum())
    assert dice > 0.95


def test_a_source_whose_header_no_scan_can_have_is_reported_and_not_written(tmp_path, capsys):
    root = tmp_path / "root"
    save(root / "01_Multi-Atlas_Labeling/label/label0001.nii.gz", box(value=6))
    save(root / "01_Multi-Atlas_Labeling/img/img0001.nii.gz", ct(1), dtype=np.int16)
    flat = nib.Nifti1Image(box(value=6), None)
    flat.header["pixdim"][1:4] = (1.0, 1.0, 0.0)  # stored slice spacing 0 (nibabel would read 1 mm)
    bad = root / "01_Multi-Atlas_Labeling/label/label0002.nii.gz"
    nib.save(flat, str(bad))
    save(root / "01_Multi-Atlas_Labeling/img/img0002.nii.gz", ct(2), dtype=np.int16)

    assert transfer_label.main(["--data_path", str(root)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert f"{bad}: impossible voxel grid (voxel spacing (1, 1, 0) mm" in captured.out
    assert (root / "label/multi-atlas-label0001.nii.gz").is_file()
    assert not (root / "label/multi-atlas-label0002.nii.gz").exists()
