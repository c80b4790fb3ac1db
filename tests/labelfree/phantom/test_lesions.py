"""Tests of the pancreas and kidney tumour phantoms and of the multi-organ (FreeTumor) labels."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from labelfree.phantom import BTCV_LABELS, KIDNEY_LESIONS, PANCREAS_LESIONS, Tissue, add_lesions, generate_case
from labelfree.phantom.labels import MULTIORGAN_LABELS, multiorgan_label, single_organ_label
from labelfree.phantom.lesions import sample_lesions
from tests.conftest import TEST_SPACING
from labelfree.data.checks import check_datalist
from labelfree.data.datalist import check_datalist_files, load_datalist

KIDNEY_CODES = (BTCV_LABELS["right_kidney"], BTCV_LABELS["left_kidney"])
#: Seeds whose cases cover the kinds of lesions: kidney 1 and 4 hold exophytic cysts that
#: bulge out of the kidney, 1, 2 and 4 solid masses, 2 a necrotic one; pancreas 1 and 5 necrotic ones.
PANCREAS_SEEDS = (1, 4, 5)
KIDNEY_SEEDS = (1, 2, 4)


def _case(organ: str, seed: int, lesions: bool = True):
    return generate_case("abdomen", seed=seed, lesions=lesions, spacing=TEST_SPACING, organ=organ)


@pytest.fixture(scope="module")
def pancreas_cases():
    return {seed: _case("pancreas", seed) for seed in PANCREAS_SEEDS}


@pytest.fixture(scope="module")
def kidney_cases():
    return {seed: _case("kidney", seed) for seed in KIDNEY_SEEDS}


@pytest.fixture(scope="module")
def healthy_twins():
    """The same anatomy without lesions, for the kidney cases with bulging tumours and one pancreas case."""
    return {("kidney", 1): _case("kidney", 1, False), ("kidney", 4): _case("kidney", 4, False),
            ("pancreas", 4): _case("pancreas", 4, False)}


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    img = nib.load(path)
    return np.asarray(img.dataobj), img.affine, img.get_data_dtype()


def _lesion_cores(label: np.ndarray, min_voxels: int = 10) -> list[np.ndarray]:
    """Eroded lesion components (no partial volume with the surroundings) of at least ``min_voxels``."""
    components, n = ndimage.label(label == 2)
    cores = [ndimage.binary_erosion(components == k) for k in range(1, n + 1)]
    return [core for core in cores if core.sum() >= min_voxels]


# --- label conventions -------------------------------------------------------------------

def test_multiorgan_label_from_hand_made_maps():
    organs = np.array([[0, 6, 6, 11, 11, 2, 3, 1, 7]], dtype=np.uint8)
    tissue = np.full(organs.shape, Tissue.MUSCLE, dtype=np.uint8)
    tissue[0, [2, 4, 6, 7]] = Tissue.LESION  # liver, pancreas and left-kidney tumours; a spleen "lesion" is ignored
    multi = multiorgan_label(organs, tissue)
    np.testing.assert_array_equal(multi, [[0, 1, 2, 3, 4, 5, 6, 0, 0]])
    np.testing.assert_array_equal(single_organ_label(multi, "liver"), [[0, 1, 2, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(single_organ_label(multi, "pancreas"), [[0, 0, 0, 1, 2, 0, 0, 0, 0]])
    np.testing.assert_array_equal(single_organ_label(multi, "kidney"), [[0, 0, 0, 0, 0, 1, 2, 0, 0]])
    with pytest.raises(ValueError, match="spleen"):
        single_organ_label(multi, "spleen")
    with pytest.raises(ValueError, match="shape"):
        multiorgan_label(organs, tissue[:, :-1])


def test_generate_case_rejects_unknown_organs():
    with pytest.raises(ValueError, match="stomach"):
        generate_case("abdomen", organ="stomach")
    with pytest.raises(ValueError, match="lung"):
        generate_case("chest", organ="pancreas")


def test_case_labels_follow_the_conventions(pancreas_cases, kidney_cases):
    for organ, cases, tumour in (("pancreas", pancreas_cases, 4), ("kidney", kidney_cases, 6)):
        for seed, c in cases.items():
            assert c.organ == organ
            assert set(np.unique(c.label)) == {0, 1, 2}, (organ, seed)
            assert set(np.unique(c.multiorgan)) == {0, 1, 3, 5, tumour}, (organ, seed)
            # Independent of phantom.labels: organ codes of the BTCV map and the tissue map.
            codes = (BTCV_LABELS["pancreas"],) if organ == "pancreas" else KIDNEY_CODES
            in_organ = np.isin(c.organs, codes)
            np.testing.assert_array_equal(c.label == 2, in_organ & (c.tissue == Tissue.LESION))
            np.testing.assert_array_equal(c.label == 1, in_organ & (c.tissue != Tissue.LESION))
            np.testing.assert_array_equal(c.multiorgan == 1, c.organs == BTCV_LABELS["liver"])


# --- lesion placement, size and appearance -----------------------------------------------

def test_pancreas_tumours_stay_inside_the_pancreas(pancreas_cases, healthy_twins):
    for seed, c in pancreas_cases.items():
        assert np.all(c.organs[c.label == 2] == BTCV_LABELS["pancreas"]), seed
        assert all(r["organ"] == "pancreas" and not r["exophytic"] and r["n_voxels_outside_organ"] == 0
                   for r in c.lesions)
    c, healthy = pancreas_cases[4], healthy_twins[("pancreas", 4)]
    pancreas = healthy.organs == BTCV_LABELS["pancreas"]
    assert np.all(pancreas[c.label == 2])
    np.testing.assert_array_equal(healthy.label, np.minimum(c.label, 1))
    # Nothing changes away from the tumours (their soft edge reaches one voxel beyond the label).
    far = ~ndimage.binary_dilation(c.label == 2, iterations=2)
    np.testing.assert_array_equal(healthy.image[far], c.image[far])


def test_kidney_tumours_inside_or_bulging_into_perirenal_fat(kidney_cases, healthy_twins):
    bulging = 0
    for seed in (1, 4):
        c, healthy = kidney_cases[seed], healthy_twins[("kidney", seed)]
        kidney = np.isin(healthy.organs, KIDNEY_CODES)
        tumour = c.label == 2
        outside = tumour & ~kidney
        assert outside.any(), f"seed {seed} should hold an exophytic tumour"
        # Outside the kidney, tumours only occupy what was perirenal fat, and every tumour
        # touches its kidney (no island in the fat).
        assert np.all(healthy.tissue[outside] == Tissue.VISCERAL_FAT)
        components, n = ndimage.label(tumour)
        for k in range(1, n + 1):
            assert np.any(kidney[components == k]), f"seed {seed}: tumour component {k} does not touch the kidney"
        # The bulging voxels belong to the kidney in every label of the case, as in KiTS.
        assert np.all(np.isin(c.organs[outside], KIDNEY_CODES))
        assert np.all(c.multiorgan[outside] == 6)
        # Only lesions drawn as exophytic leave the kidney.
        recorded = sum(r["n_voxels_outside_organ"] for r in c.lesions)
        assert recorded == outside.sum()
        assert all(r["exophytic"] for r in c.lesions if r["n_voxels_outside_organ"] > 0)
        bulging += sum(r["n_voxels_outside_organ"] > 0 for r in c.lesions)
        # Other organs are untouched.
        others = ~np.isin(healthy.organs, (0, *KIDNEY_CODES))
        np.testing.assert_array_equal(c.organs[others], healthy.organs[others])
    assert bulging >= 2


def test_lesion_sizes_and_counts_over_seeds(pancreas_cases, kidney_cases):
    for cases, style, organ in ((pancreas_cases, PANCREAS_LESIONS, "pancreas"), (kidney_cases, KIDNEY_LESIONS, "kidney")):
        for c in cases.values():
            assert style.count[0] <= len(c.lesions) <= style.count[1]
            # Every case has one lesion visible at coarse spacing.
            assert max(r["diameter_mm"] for r in c.lesions) >= style.first_min_diameter_mm
            half_diagonal = np.linalg.norm(c.spacing) / 2.0
            for r in c.lesions:
                assert r["organ"] == organ
                assert style.diameter_mm[0] <= r["diameter_mm"] <= style.diameter_mm[1]
                # A lesion fits in a sphere of its diameter, so its (disjoint) voxels fit in
                # that sphere grown by half a voxel diagonal.
                bound = 4.0 / 3.0 * np.pi * (r["diameter_mm"] / 2.0 + half_diagonal) ** 3
                assert 0 < r["n_voxels"] * np.prod(c.spacing) <= bound, r


@pytest.mark.parametrize("style,lo,hi", [(PANCREAS_LESIONS, 5.0, 30.0), (KIDNEY_LESIONS, 5.0, 40.0)])
def test_size_distribution_and_exophytic_share(style, lo, hi):
    """Many draws on a roomy ellipsoidal organ: sizes span the range, exophytic only when large enough."""
    shape = (48, 48, 48)
    grid = np.indices(shape).astype(float)
    organ = (((grid - 23.5) / np.array([22.0, 20.0, 22.0])[:, None, None, None]) ** 2).sum(axis=0) < 1.0
    diameters, exophytic, counts = [], [], []
    for seed in range(60):
        lesions = sample_lesions(organ, (2.0, 2.0, 2.0), np.random.default_rng(seed), style=style, reference_hu=100.0)
        counts.append(len(lesions))
        diameters += [les.diameter_mm for les in lesions]
        exophytic += [(les.diameter_mm, les.exophytic) for les in lesions]
    d = np.array(diameters)
    assert d.min() >= lo and d.max() <= hi
    assert np.mean(d < 10) > 0.1 and np.mean(d > 20) > 0.1, "sizes should span the range (log-uniform)"
    assert set(counts) == set(range(style.count[0], style.count[1] + 1))
    flags = [flag for diameter, flag in exophytic if diameter >= style.exophytic_min_diameter_mm]
    assert not any(flag for diameter, flag in exophytic if diameter < style.exophytic_min_diameter_mm)
    if style.exophytic_prob > 0:
        assert 0.25 <= np.mean(flags) <= 0.75
    else:
        assert not any(flags)


def test_pancreas_tumours_are_hypoattenuating(pancreas_cases):
    measured = 0
    for seed, c in pancreas_cases.items():
        assert all(-60.0 <= r["contrast_hu"] <= -20.0 for r in c.lesions)
        pancreas = np.median(c.image[ndimage.binary_erosion(c.tissue == Tissue.PANCREAS)])
        for core in _lesion_cores(c.label):
            contrast = c.image[core].mean() - pancreas
            # -60..-20 HU drawn; a necrotic centre weighs more in the eroded core.
            assert -85 <= contrast <= -10, f"seed {seed}: contrast {contrast:.1f} HU"
            measured += 1
    assert measured >= 3


def test_kidney_tumours_hypo_or_iso_to_cortex_and_cysts_near_water(kidney_cases):
    kinds = {"solid": 0, "cyst": 0}
    for seed, c in kidney_cases.items():
        cortex = np.median(c.image[ndimage.binary_erosion(c.tissue == Tissue.KIDNEY_CORTEX)])
        for r in c.lesions:
            if r["kind"] == "cyst":
                assert 0.0 <= r["hu"] <= 20.0
            else:
                assert -100.0 <= r["contrast_hu"] <= -5.0
        centres = [np.array(r["centre_voxel"]) for r in c.lesions]
        for core in _lesion_cores(c.label):
            # The lesion whose centre is nearest to this core's centroid.
            r = c.lesions[int(np.argmin([np.linalg.norm(np.argwhere(core).mean(0) - p) for p in centres]))]
            mean = c.image[core].mean()
            if r["kind"] == "cyst":
                assert -15 <= mean <= 35, f"seed {seed}: cyst mean {mean:.1f} HU"
                kinds["cyst"] += 1
            else:
                assert -125 <= mean - cortex <= 10, f"seed {seed}: contrast {mean - cortex:.1f} HU to the cortex"
                kinds["solid"] += 1
    assert kinds["cyst"] >= 2 and kinds["solid"] >= 2


def test_add_lesions_grows_exophytic_lesions_only_into_the_outside_mask():
    shape = (64, 56, 56)
    grid = np.indices(shape).astype(float)
    kidney = (((grid - np.array([32.0, 28.0, 28.0])[:, None, None, None])
               / np.array([14.0, 12.0, 18.0])[:, None, None, None]) ** 2).sum(axis=0) < 1.0
    fat = ~kidney & (grid[1] < 40)  # "muscle" beyond y = 40 must not be invaded
    image = np.where(kidney, 170.0, np.where(fat, -90.0, 50.0)).astype(np.float32)
    style = dataclasses.replace(KIDNEY_LESIONS, kinds=("homogeneous",), kind_probs=(1.0,), count=(2, 2),
                                diameter_mm=(18.0, 24.0), first_min_diameter_mm=18.0, exophytic_prob=1.0)
    out, mask, records = add_lesions(image, kidney, np.random.default_rng(3), spacing=(1.0, 1.0, 1.0), style=style,
                                     outside_mask=fat)
    assert all(r["exophytic"] for r in records)
    assert (mask & fat).any() and not (mask & ~kidney & ~fat).any()
    assert sum(r["n_voxels_outside_organ"] for r in records) == (mask & ~kidney).sum()
    components, n = ndimage.label(mask)
    assert all(np.any(kidney[components == k]) for k in range(1, n + 1))
    muscle = ~kidney & ~fat
    np.testing.assert_array_equal(out[muscle], image[muscle])
    # Without a mask to grow into, the same lesions stay inside the kidney.
    _, inner, _ = add_lesions(image, kidney, np.random.default_rng(3), spacing=(1.0, 1.0, 1.0), style=style)
    assert inner.any() and not (inner & ~kidney).any()
    np.testing.assert_array_equal(inner, mask & kidney)


# --- files of the data root --------------------------------------------------------------

EXPECTED_MULTI = {"healthy": {0, 1, 3, 5}, "tumor": {0, 1, 2, 3, 5}, "pancreas_tumor": {0, 1, 3, 4, 5},
                  "kidney_tumor": {0, 1, 3, 5, 6}}


def test_root_files_agree_with_each_other(phantom_root, phantom_info):
    """Every abdomen case's single-organ labels equal its multi-organ label's view of that organ."""
    seen = set()
    for case in phantom_info["cases"]:
        group = case["group"]
        if group not in EXPECTED_MULTI:
            continue
        seen.add(group)
        image, affine, dtype = _load(phantom_root / case["image"])
        assert dtype == np.int16
        multi, multi_affine, multi_dtype = _load(phantom_root / case["multiorgan_label"])
        assert multi_dtype == np.uint8 and multi.shape == image.shape
        np.testing.assert_allclose(multi_affine, affine)
        assert set(np.unique(multi)) == EXPECTED_MULTI[group], (case["name"], np.unique(multi))
        label, _, label_dtype = _load(phantom_root / case["label"])
        assert label_dtype == np.uint8
        organ = {"healthy": "liver", "tumor": "liver", "pancreas_tumor": "pancreas", "kidney_tumor": "kidney"}[group]
        assert case["organ"] == organ
        value = {"liver": 1, "pancreas": 3, "kidney": 5}[organ]
        expected = np.where(multi == value, 1, np.where(multi == value + 1, 2, 0))
        np.testing.assert_array_equal(label, expected)
        if group == "healthy":
            organs, _, _ = _load(phantom_root / case["organs"])
            pancreas, _, _ = _load(phantom_root / case["pancreas_label"])
            kidney, _, _ = _load(phantom_root / case["kidney_label"])
            assert set(np.unique(pancreas)) == {0, 1} and set(np.unique(kidney)) == {0, 1}
            np.testing.assert_array_equal(pancreas, organs == BTCV_LABELS["pancreas"])
            np.testing.assert_array_equal(kidney, np.isin(organs, KIDNEY_CODES))
            np.testing.assert_array_equal(multi == 3, pancreas == 1)
            np.testing.assert_array_equal(multi == 1, label == 1)
        else:
            assert case["n_lesions"] >= 1 and set(np.unique(label)) == {0, 1, 2}
    assert seen == set(EXPECTED_MULTI)


def test_phantom_info_records_every_lesion(phantom_root, phantom_info):
    cases = [c for c in phantom_info["cases"] if c["group"] in ("pancreas_tumor", "kidney_tumor")]
    assert len(cases) == 4
    for case in cases:
        label, affine, _ = _load(phantom_root / case["label"])
        organ_distance = ndimage.distance_transform_edt(label == 0, sampling=case["spacing"])
        for r in case["lesions"]:
            assert {"organ", "centre_world_mm", "centre_voxel", "diameter_mm", "contrast_hu", "exophytic",
                    "n_voxels_outside_organ", "kind"} <= set(r)
            assert r["organ"] == case["organ"]
            centre = np.array(r["centre_voxel"])
            world = (affine @ np.r_[centre, 1.0])[:3]
            np.testing.assert_allclose(world, r["centre_world_mm"], atol=0.01)
            # The centre lies in its organ (within a few mm: it is drawn on a 2.5 mm grid).
            idx = tuple(np.clip(np.rint(centre).astype(int), 0, np.array(label.shape) - 1))
            assert organ_distance[idx] <= 4.0, (case["name"], r)
    assert phantom_info["labels"]["multiorgan"] == {str(k): v for k, v in MULTIORGAN_LABELS.items()}


@pytest.mark.parametrize("name,train_label,val_folders,allowed", [
    ("pancreas", "label/pancreas-label", {"07_Pancreas"}, (0, 1, 2)),
    ("kidney", "label/kidney-label", {"08_Kidney"}, (0, 1, 2)),
    ("multiorgan", "label/multiorgan-label", {"04_LiTS", "07_Pancreas", "08_Kidney"}, tuple(range(7))),
])
def test_new_datalists_resolve_to_matching_files(phantom_root, name, train_label, val_folders, allowed):
    path = phantom_root / "datafolds" / f"{name}.json"
    data = json.loads(path.read_text())
    assert len(data["training"]) == 8 and all(e["label"].startswith(train_label) for e in data["training"])
    assert all(e["image"].startswith("01_Multi-Atlas_Labeling/img/") for e in data["training"])
    assert {e["image"].split("/")[0] for e in data["validation"]} == val_folders
    assert len(data["validation"]) == {"pancreas": 2, "kidney": 2, "multiorgan": 8}[name]
    for split in ("training", "validation"):
        items = load_datalist(path, split, phantom_root)
        check_datalist_files(items, what=f"{name} {split}")
    # Labels readable, of the image's geometry and values, with a non-empty organ.
    organ_values = (1, 3, 5) if name == "multiorgan" else (1,)
    results, _ = check_datalist(path, phantom_root, phantom_root, allowed_labels=allowed, organ_labels=organ_values)
    assert results and all(r.ok for r in results), [r.problems for r in results if not r.ok]
