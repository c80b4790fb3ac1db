"""Tests of the procedural phantom: anatomy, HU values, labels, geometry on disk, datalists, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from labelfree.phantom import (
    BTCV_LABELS,
    CHEST_LABELS,
    LUNG_NODULES,
    Tissue,
    add_lesions,
    generate_case,
    make_phantom_dataset,
)
from labelfree.phantom.dataset import build_datalists, case_paths, case_seed
from tests.conftest import DEFAULT_COUNTS, TEST_SPACING
from labelfree.data.datalist import check_datalist_files, load_datalist

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def abdomen_case():
    return generate_case("abdomen", seed=11, spacing=TEST_SPACING)


@pytest.fixture(scope="module")
def tumor_case():
    return generate_case("abdomen", seed=12, lesions=True, spacing=TEST_SPACING)


@pytest.fixture(scope="module")
def nodule_case():
    return generate_case("chest", seed=13, lesions=True, spacing=TEST_SPACING)


def _world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask).mean(axis=0)
    return (affine @ np.r_[idx, 1.0])[:3]


def _interior(case, tissue: Tissue, iterations: int = 1) -> np.ndarray:
    """Voxels of ``tissue`` away from its boundary (no partial volume)."""
    return ndimage.binary_erosion(case.tissue == tissue, iterations=iterations)


# --- determinism -------------------------------------------------------------------------

def test_same_seed_same_case_and_other_seed_other_anatomy(abdomen_case):
    again = generate_case("abdomen", seed=11, spacing=TEST_SPACING)
    np.testing.assert_array_equal(again.image, abdomen_case.image)
    np.testing.assert_array_equal(again.organs, abdomen_case.organs)
    other = generate_case("abdomen", seed=99, spacing=TEST_SPACING)
    a, b = abdomen_case.label == 1, other.label == 1
    dice = 2 * np.count_nonzero(a & b) / (a.sum() + b.sum())
    assert dice < 0.95, f"different seeds gave nearly the same liver (Dice {dice:.3f})"
    assert abs(other.volumes_ml["liver"] - abdomen_case.volumes_ml["liver"]) > 1.0


def test_lesions_do_not_change_anatomy_or_noise(tumor_case):
    healthy = generate_case("abdomen", seed=12, lesions=False, spacing=TEST_SPACING)
    np.testing.assert_array_equal(healthy.organs, tumor_case.organs)
    outside = tumor_case.label != 2
    # Lesions have a soft edge that reaches one voxel beyond their label.
    far = ~ndimage.binary_dilation(~outside, iterations=2)
    np.testing.assert_array_equal(healthy.image[far], tumor_case.image[far])
    assert np.array_equal(healthy.label, np.where(tumor_case.label == 2, 1, tumor_case.label))


def test_case_seed_depends_on_group_and_index_only():
    assert case_seed(0, "healthy", 3) == case_seed(0, "healthy", 3)
    groups = ("healthy", "tumor", "chest_healthy", "chest_nodule", "pancreas_tumor", "kidney_tumor")
    seeds = {case_seed(0, g, i) for g in groups for i in range(8)}
    assert len(seeds) == 48
    assert case_seed(1, "healthy", 0) != case_seed(0, "healthy", 0)


# --- anatomy and HU ----------------------------------------------------------------------

def test_hu_of_abdominal_tissues(abdomen_case):
    c = abdomen_case
    med = {t: float(np.median(c.image[_interior(c, t)])) for t in (
        Tissue.LIVER, Tissue.SUBCUTANEOUS_FAT, Tissue.MUSCLE, Tissue.GAS, Tissue.AIR, Tissue.KIDNEY_CORTEX,
        Tissue.SPLEEN, Tissue.ARTERY)}
    assert 90 <= med[Tissue.LIVER] <= 120  # portal-venous phase
    assert -115 <= med[Tissue.SUBCUTANEOUS_FAT] <= -85
    assert 38 <= med[Tissue.MUSCLE] <= 65
    assert med[Tissue.GAS] <= -950 and med[Tissue.AIR] <= -950
    assert 140 <= med[Tissue.KIDNEY_CORTEX] <= 210
    assert med[Tissue.SPLEEN] > med[Tissue.LIVER]
    assert 140 <= med[Tissue.ARTERY] <= 210
    bone = np.isin(c.tissue, [Tissue.CORTICAL_BONE, Tissue.CANCELLOUS_BONE])
    assert np.median(c.image[bone]) >= 300
    vessels = c.tissue == Tissue.LIVER_VESSEL
    assert vessels.sum() > 50, "the liver should hold a vessel tree"
    assert 120 <= np.median(c.image[vessels]) <= 210  # thin vessels lose some contrast to partial volume


def test_noise_std_in_homogeneous_region(abdomen_case):
    c = abdomen_case
    region = _interior(c, Tissue.LIVER, iterations=2)
    std = float(np.std(c.image[region]))
    assert 10 <= std <= 20
    # The liver's texture adds at most a few HU to the image noise.
    assert abs(std - c.noise_std) < 3.5


def test_abdominal_organs_in_place_and_sized(abdomen_case):
    c = abdomen_case
    assert set(np.unique(c.organs)) <= {0, *BTCV_LABELS.values()}
    liver_x = _world_centroid(c.organs == BTCV_LABELS["liver"], c.affine)[0]
    spleen_x = _world_centroid(c.organs == BTCV_LABELS["spleen"], c.affine)[0]
    assert liver_x > 20 and spleen_x < -20  # patient's right is +x in RAS world coordinates
    assert _world_centroid(c.organs == BTCV_LABELS["right_kidney"], c.affine)[0] > 0
    assert _world_centroid(c.organs == BTCV_LABELS["left_kidney"], c.affine)[0] < 0
    voxel_ml = np.prod(c.spacing) / 1000.0
    for name, (lo, hi) in {"right_kidney": (120, 180), "left_kidney": (120, 180), "pancreas": (60, 100)}.items():
        measured = np.count_nonzero(c.organs == BTCV_LABELS[name]) * voxel_ml
        assert lo <= measured <= hi, f"{name} volume {measured:.1f} mL"
        assert measured == pytest.approx(c.volumes_ml[name], abs=0.01)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_liver_volume_in_adult_range(seed):
    case = generate_case("abdomen", seed=seed, spacing=(2.5, 2.5, 3.0))
    liver_l = np.count_nonzero(case.label >= 1) * np.prod(case.spacing) / 1e6
    assert 1.2 <= liver_l <= 2.0


def test_same_anatomy_at_other_spacing(abdomen_case):
    coarse = generate_case("abdomen", seed=11, spacing=(3.0, 3.0, 4.0))
    fine, rough = abdomen_case.label == 1, coarse.label == 1
    v_fine = fine.sum() * np.prod(abdomen_case.spacing)
    v_rough = rough.sum() * np.prod(coarse.spacing)
    assert v_rough == pytest.approx(v_fine, rel=0.04)
    d = np.linalg.norm(_world_centroid(fine, abdomen_case.affine) - _world_centroid(rough, coarse.affine))
    assert d < 2.0


def test_chest_hu_labels_and_nodules(nodule_case):
    c = nodule_case
    lung = _interior(c, Tissue.LUNG)
    assert -880 <= np.median(c.image[lung]) <= -820
    assert np.median(c.image[_interior(c, Tissue.AIRWAY_LUMEN)]) <= -900
    assert np.count_nonzero(c.tissue == Tissue.LUNG_VESSEL) > 100
    assert set(np.unique(c.label)) == {0, 1, 2}
    lungs = np.isin(c.organs, [CHEST_LABELS["right_lung"], CHEST_LABELS["left_lung"]])
    assert np.all(lungs[c.label >= 1]) and np.all(c.label[lungs] >= 1)
    assert not np.any(c.label[c.organs == CHEST_LABELS["airway"]]), "trachea and main bronchi are not lung"
    assert 1 <= len(c.lesions) <= 5
    for rec in c.lesions:
        assert 3.0 <= rec["diameter_mm"] <= 30.0
        lo, hi = (-100, 100) if rec["kind"] == "solid" else (-750, -300)
        assert lo <= rec["hu"] <= hi


# --- lesions -----------------------------------------------------------------------------

def test_tumor_labels_inside_liver_with_negative_contrast(tumor_case):
    c = tumor_case
    assert set(np.unique(c.label)) == {0, 1, 2}
    assert np.all(c.organs[c.label == 2] == BTCV_LABELS["liver"])
    assert 1 <= len(c.lesions) <= 8
    for rec in c.lesions:
        assert 3.0 <= rec["diameter_mm"] <= 40.0
        assert -100 <= rec["contrast_hu"] <= -20
    parenchyma = np.median(c.image[_interior(c, Tissue.LIVER)])
    components, n = ndimage.label(c.label == 2)
    measured = 0
    for k in range(1, n + 1):
        core = ndimage.binary_erosion(components == k)
        if core.sum() >= 5:
            contrast = c.image[core].mean() - parenchyma
            assert -110 <= contrast <= -12, f"lesion {k}: contrast {contrast:.1f} HU"
            measured += 1
    assert measured >= 1


def test_add_lesions_is_reusable_and_deterministic():
    shape = (60, 60, 40)
    grid = np.indices(shape).astype(float)
    organ = ((grid[0] - 30) ** 2 + (grid[1] - 30) ** 2 + ((grid[2] - 20) * 1.5) ** 2) < 25**2
    image = np.where(organ, 90.0, -100.0).astype(np.float32)
    out1, mask1, rec1 = add_lesions(image, organ, np.random.default_rng(5), spacing=(1.0, 1.0, 1.5))
    out2, mask2, rec2 = add_lesions(image, organ, np.random.default_rng(5), spacing=(1.0, 1.0, 1.5))
    np.testing.assert_array_equal(out1, out2)
    assert rec1 == rec2 and mask1.any()
    assert not np.any(mask1 & ~organ)
    np.testing.assert_array_equal(out1[~organ], image[~organ])
    assert out1[mask1].mean() < 90.0 - 15
    nodules, nmask, nrec = add_lesions(np.where(organ, -850.0, 0.0), organ, np.random.default_rng(1), style=LUNG_NODULES)
    assert nmask.any() and nodules[nmask].mean() > -800
    with pytest.raises(ValueError, match="shape"):
        add_lesions(image, organ[:-1], np.random.default_rng(0))


# --- files on disk -----------------------------------------------------------------------

@pytest.mark.parametrize("orientation,codes", [("RAS", ("R", "A", "S")), ("LPS", ("L", "P", "S"))])
def test_nifti_geometry_on_disk(tmp_path, orientation, codes):
    root = tmp_path / orientation
    make_phantom_dataset(root, n_healthy=1, n_tumor=0, n_chest_healthy=0, n_chest_nodule=0, n_pancreas_tumor=0,
                         n_kidney_tumor=0, seed=3,
                         spacing=(2.0, 2.5, 3.0), orientation=orientation, previews=False, progress=False)
    img = nib.load(root / "01_Multi-Atlas_Labeling/img/img0001.nii.gz")
    lab = nib.load(root / "label/multi-atlas-label0001.nii.gz")
    organs = nib.load(root / "01_Multi-Atlas_Labeling/label/label0001.nii.gz")
    assert nib.aff2axcodes(img.affine) == codes
    assert img.header.get_zooms() == pytest.approx((2.0, 2.5, 3.0))
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    np.testing.assert_allclose(img.get_qform(), img.get_sform())
    assert img.get_data_dtype() == np.int16 and lab.get_data_dtype() == np.uint8
    assert np.allclose(lab.affine, img.affine) and np.allclose(organs.affine, img.affine)
    assert set(np.unique(np.asarray(lab.dataobj))) == {0, 1}
    liver = np.asarray(lab.dataobj) == 1
    assert _world_centroid(liver, img.affine)[0] > 20, "liver must be on the patient's right (+x world)"
    np.testing.assert_array_equal(np.asarray(organs.dataobj) == BTCV_LABELS["liver"], liver)


def test_lps_and_ras_files_hold_the_same_world_data(tmp_path):
    kw = dict(n_healthy=1, n_tumor=0, n_chest_healthy=0, n_chest_nodule=0, n_pancreas_tumor=0, n_kidney_tumor=0, seed=4,
              spacing=(3.0, 3.0, 4.0),
              previews=False, progress=False)
    make_phantom_dataset(tmp_path / "ras", orientation="RAS", **kw)
    make_phantom_dataset(tmp_path / "lps", orientation="LPS", **kw)
    ras = nib.load(tmp_path / "ras/01_Multi-Atlas_Labeling/img/img0001.nii.gz")
    lps = nib.as_closest_canonical(nib.load(tmp_path / "lps/01_Multi-Atlas_Labeling/img/img0001.nii.gz"))
    np.testing.assert_allclose(lps.affine, ras.affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(lps.dataobj), np.asarray(ras.dataobj))


def test_root_layout_info_and_datalists(phantom_root, phantom_info):
    assert phantom_info["seed"] == 0 and phantom_info["spacing_mm"] == list(TEST_SPACING)
    groups = [c["group"] for c in phantom_info["cases"]]
    assert groups.count("healthy") == 8 and groups.count("tumor") == 4
    assert groups.count("pancreas_tumor") == 2 and groups.count("kidney_tumor") == 2
    for case in phantom_info["cases"]:
        for key in ("image", "label"):
            assert (phantom_root / case[key]).is_file()
        if case["group"] == "healthy":
            assert (phantom_root / case["organs"]).is_file()
            assert 1200 <= case["liver_volume_ml"] <= 2000
        if case["group"] == "tumor":
            assert case["n_lesions"] >= 1
            for lesion in case["lesions"]:
                assert {"centre_world_mm", "centre_voxel", "diameter_mm", "contrast_hu", "kind"} <= set(lesion)
    expected = {"healthy", "lits", "chest", "pancreas", "kidney", "multiorgan"} | {
        f"{p}_{k}" for p in ("real", "mix") for k in range(4)}
    assert {p.stem for p in (phantom_root / "datafolds").glob("*.json")} == expected
    real = json.loads((phantom_root / "datafolds/real_0.json").read_text())
    mix = json.loads((phantom_root / "datafolds/mix_0.json").read_text())
    assert len(real["training"]) == 3 and len(real["validation"]) == 1
    assert not {e["image"] for e in real["training"]} & {e["image"] for e in real["validation"]}
    assert len(mix["training"]) == 8 + 3 and mix["validation"] == real["validation"]
    healthy = json.loads((phantom_root / "datafolds/healthy.json").read_text())
    assert all(e["label"].startswith("label/multi-atlas-label") for e in healthy["training"])


@pytest.mark.parametrize("source", ["root", "repo"])
def test_every_datalist_entry_resolves(phantom_root, source):
    folder = phantom_root / "datafolds" if source == "root" else REPO / "datafolds"
    files = sorted(folder.glob("*.json"))
    assert files, f"no datalists in {folder}"
    for path in files:
        for split in ("training", "validation"):
            items = load_datalist(path, split, phantom_root)
            assert items, f"{path.name}: empty {split}"
            check_datalist_files(items, what=f"{path.name} {split}")


def test_repo_datafolds_match_the_default_root():
    expected = build_datalists(**DEFAULT_COUNTS)
    on_disk = {p.stem: json.loads(p.read_text()) for p in (REPO / "datafolds").glob("*.json")}
    assert on_disk == expected


def test_layout_names_follow_the_original_project():
    assert case_paths("healthy", 0)["image"] == "01_Multi-Atlas_Labeling/img/img0001.nii.gz"
    assert case_paths("healthy", 0)["organs"] == "01_Multi-Atlas_Labeling/label/label0001.nii.gz"
    assert case_paths("healthy", 11)["label"] == "label/multi-atlas-label0012.nii.gz"
    assert case_paths("tumor", 3)["label"] == "04_LiTS/label/liver_3.nii.gz"
    assert case_paths("chest_nodule", 0)["image"] == "06_LNDb/img/LNDb-0001.nii.gz"


# --- overwrite protection and CLI --------------------------------------------------------

def test_refuses_to_overwrite_non_empty_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    kw = dict(n_healthy=1, n_tumor=0, n_chest_healthy=0, n_chest_nodule=0, n_pancreas_tumor=0, n_kidney_tumor=0,
              spacing=(4.0, 4.0, 4.0),
              previews=False, progress=False)
    with pytest.raises(FileExistsError, match=str(tmp_path)):
        make_phantom_dataset(tmp_path, **kw)
    assert not (tmp_path / "01_Multi-Atlas_Labeling").exists()
    make_phantom_dataset(tmp_path, overwrite=True, **kw)
    assert (tmp_path / "01_Multi-Atlas_Labeling/img/img0001.nii.gz").is_file()
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    out = tmp_path / "root"
    cmd = [sys.executable, str(REPO / "scripts/make_phantom_data.py"), "--out", str(out), "--n_healthy", "1",
           "--n_tumor", "2", "--n_chest_healthy", "1", "--n_chest_nodule", "1", "--n_pancreas_tumor", "1",
           "--n_kidney_tumor", "1", "--spacing", "3", "3", "4",
           "--seed", "7", "--workers", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "7 cases" in run.stdout and "liver_1" in run.stdout and "kidney_0001" in run.stdout
    info = json.loads((out / "phantom_info.json").read_text())
    assert info["seed"] == 7 and len(info["cases"]) == 7
    assert {p.name for p in (out / "previews").iterdir()} == {
        "img0001.png", "liver_0.png", "liver_1.png", "chest_0001.png", "LNDb-0001.png", "pancreas_0001.png",
        "kidney_0001.png"}
    assert (out / "previews/liver_0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("healthy", "real_0", "real_1", "mix_0", "mix_1", "lits", "chest", "pancreas", "kidney", "multiorgan"):
        assert (out / "datafolds" / f"{name}.json").is_file()
    # The same case written by the API with other counts is byte-identical (per-case seeds).
    make_phantom_dataset(tmp_path / "api", n_healthy=2, n_tumor=0, n_chest_healthy=0, n_chest_nodule=0, n_pancreas_tumor=0,
                         n_kidney_tumor=0, seed=7,
                         spacing=(3, 3, 4), previews=False, progress=False)
    assert (out / "01_Multi-Atlas_Labeling/img/img0001.nii.gz").read_bytes() == (
        tmp_path / "api/01_Multi-Atlas_Labeling/img/img0001.nii.gz").read_bytes()

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert again.returncode == 2
    assert "not empty" in again.stderr and "--overwrite" in again.stderr
