"""Organ profiles beyond the liver: lung nodules, pancreas and kidney tumors, multi-organ labels.

Statistics are taken over seeded samples on small synthetic bodies (ellipsoid organs of a
known HU in soft tissue and air), against values written out here from REFERENCE.md
section 5, not read back from the package.
"""

import argparse

import numpy as np
import pytest
from scipy import ndimage

from labelfree.evaluation.report import pair_metric_columns
from labelfree.evaluation.scoring import score_label_pairs
from tumor_synthesis import TumorGenerated, get_organ_profile, synthesize_tumors
from labelfree.config.flags import resolve_num_classes
from labelfree.config.settings import RunSettings

SPACING = (2.0, 2.0, 2.0)
SHAPE = (80, 64, 56)  # 160 x 128 x 112 mm


def ellipsoid(center_mm, radii_mm, shape=SHAPE, spacing=SPACING) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g * s - c) / r) ** 2 for g, s, c, r in zip(grids, spacing, center_mm, radii_mm)) < 1


def body(organs, seed=0, organ_noise=8.0):
    """(image int16 HU, label uint8): air around a -100 HU body; ``organs``: (center, radii, label, HU)."""
    rng = np.random.default_rng(seed)
    inside = ellipsoid((80, 64, 56), (76, 58, 60))
    image = np.where(inside, -100.0, -1000.0)
    label = np.zeros(SHAPE, dtype=np.uint8)
    for center, radii, value, hu in organs:
        mask = ellipsoid(center, radii)
        image[mask] = hu
        label[mask] = value
    image += rng.normal(0, organ_noise, SHAPE)
    return image.astype(np.int16), label


LUNG = ((80, 64, 56), (60, 48, 46), 1, -850)
PANCREAS = ((80, 60, 56), (36, 12, 12), 1, 60)
# Near the body's right edge, so exophytic growth can meet air.
KIDNEY = ((128, 64, 56), (22, 16, 30), 1, 150)


def paint(organ, image, label, seed, tumor_type=None):
    profile = get_organ_profile(organ)
    rng = np.random.default_rng(seed)
    if tumor_type is None:
        tumor_type = profile.tumor_types[rng.choice(len(profile.tumor_types), p=profile.type_probabilities)]
    return synthesize_tumors(image, label, rng, tumor_type, profile, spacing=SPACING)


def test_profiles_hold_the_published_windows_labels_and_mixes():
    lung, pancreas, kidney = (get_organ_profile(n) for n in ("lung", "pancreas", "kidney"))
    assert lung.window == (-1000.0, 500.0) and lung.class_names == ("background", "lung", "nodule")
    assert pancreas.window == kidney.window == (-175.0, 250.0)
    for profile in (pancreas, kidney):
        mix = dict(zip(profile.tumor_types, profile.type_probabilities))
        assert mix["few_tiny"] + mix["few_small"] == pytest.approx(0.8)  # early tumors (DiffTumor)
        assert mix["one_medium"] == mix["one_large"] == pytest.approx(0.1)
    assert dict(zip(lung.tumor_types, lung.type_probabilities)) == {"few_tiny": 0.5, "few_small": 0.5}
    assert get_organ_profile("liver").window == (-21.0, 189.0)  # unchanged


def test_cli_window_and_class_count_follow_the_organ():
    from labelfree.config.flags import ConventionDefault

    def ns(organ, **kw):
        return argparse.Namespace(organ=organ, a_min=None, a_max=None, out_channels=ConventionDefault(3),
                                  num_classes=ConventionDefault(3), **kw)

    assert RunSettings.from_train_args(ns("lung")).window == (-1000.0, 500.0)
    assert RunSettings.from_train_args(ns("kidney")).window == (-175.0, 250.0)
    assert resolve_num_classes(ns("liver")) == (3, 3)
    assert resolve_num_classes(ns("multi")) == (7, 7)
    given = ns("multi")
    given.num_classes = 5
    assert resolve_num_classes(given) == (7, 5)  # a given flag is kept (main.py then rejects the mismatch)
    assert RunSettings.create("lung").class_tags == ["val_lung_dice", "val_nodule_dice"]
    assert RunSettings.create("multi").class_tags == [
        "val_liver_dice", "val_liver_tumor_dice", "val_pancreas_dice", "val_pancreas_tumor_dice",
        "val_kidney_dice", "val_kidney_tumor_dice",
    ]


def test_lung_nodules_are_brighter_inside_the_lung_in_the_solid_or_ground_glass_range():
    image, label = body([LUNG])
    lung = label == 1
    # In-plane chessboard distance to the lung's edge, slice by slice: the centre's 11 x 11
    # neighbourhood (10 mm each side at 2 mm) must be lung.
    inplane = np.stack([ndimage.distance_transform_cdt(lung[:, :, z], metric="chessboard")
                        for z in range(lung.shape[2])], axis=2)
    kinds, diameters = [], []
    for seed in range(24):
        result = paint("lung", image, label, seed)
        nodule = result.label == 2
        assert nodule.any() and np.all(lung[nodule])  # clipped to the lung
        changed = result.image != image
        assert not changed[~lung].any()  # nothing outside the lung moves
        assert np.all(result.image >= image)  # the difference is added, never subtracted
        intensity = result.plan.intensity
        kinds.append(intensity.kind)
        lo, hi = {"solid": (-100, 100), "ground_glass": (-750, -300)}[intensity.kind]
        assert lo <= intensity.target_hu <= hi
        # The nodule's core (full soft-mask weight) sits at the target, give or take the texture.
        core = ndimage.binary_erosion(nodule, iterations=1)
        if core.sum() >= 5:
            assert abs(np.median(result.image[core]) - intensity.target_hu) < 45
        for tumor in result.plan.tumors:
            # Centres at least 10 mm inside the lung in their slice: away from the pleura.
            assert inplane[tumor.center] >= 10.0 / SPACING[0] + 1
            diameters += [2 * r for r in tumor.spec.radii_mm]
    assert {"solid", "ground_glass"} <= set(kinds)
    assert 3 <= min(diameters) and max(diameters) <= 30  # nodules, not masses


@pytest.mark.parametrize("organ, organ_spec", [("pancreas", PANCREAS), ("kidney", KIDNEY)])
def test_pancreas_and_kidney_tumors_are_darker_and_follow_difftumor_counts(organ, organ_spec):
    image, label = body([organ_spec])
    organ_mask = label == 1
    counts = {}
    for seed in range(20):
        result = paint(organ, image, label, seed)
        tumor = result.label == 2
        assert tumor.any()
        clipped = not any(t.exophytic for t in result.plan.tumors)
        if clipped:
            assert np.all(organ_mask[tumor]) and np.all(result.image[~organ_mask] == image[~organ_mask])
            assert np.all(result.image[organ_mask] <= image[organ_mask])  # hypo-attenuating
        inside = tumor & organ_mask
        assert result.image[inside].mean() < image[inside].mean() - 10  # darker than the organ it replaced
        counts.setdefault(result.plan.tumor_type, []).append(len(result.plan.tumors))
    for tumor_type, n in counts.items():
        allowed = {1, 2, 3} if tumor_type.startswith("few_") else {1}
        assert set(n) <= allowed, (tumor_type, n)


def test_tumor_type_mix_of_the_transform_is_early_0_8():
    transform = TumorGenerated(prob=1.0, organ="pancreas").set_random_state(0)
    draws = []
    for _ in range(2000):
        transform.randomize(None)
        draws.append(transform.tumor_generate._tumor_type)  # the dictionary transform draws in its array one
    early = np.mean([d in ("few_tiny", "few_small") for d in draws])
    assert early == pytest.approx(0.8, abs=0.03)
    assert np.mean([d == "one_large" for d in draws]) == pytest.approx(0.1, abs=0.02)


def test_large_pancreas_tumors_sit_at_the_organ_center():
    image, label = body([PANCREAS])
    organ = np.argwhere(label == 1)
    nearest = organ[np.argmin((((organ - organ.mean(axis=0)) * SPACING) ** 2).sum(axis=1))]
    for seed in range(3):
        result = paint("pancreas", image, label, seed, "one_large")
        assert result.plan.tumors[0].center == tuple(int(v) for v in nearest)
    # Other sizes are spread over the organ.
    centres = {paint("pancreas", image, label, s, "one_medium").plan.tumors[0].center for s in range(6)}
    assert len(centres) > 1


def test_exophytic_kidney_tumors_grow_into_soft_tissue_not_air_and_touch_the_kidney():
    image, label = body([KIDNEY])
    kidney = label == 1
    near_kidney = ndimage.binary_dilation(kidney, iterations=1)
    exophytic = 0
    for seed in range(12):
        result = paint("kidney", image, label, seed, "one_large")
        tumor = result.label == 2
        outside = tumor & ~kidney
        if result.plan.tumors[0].exophytic:
            exophytic += outside.any()
            assert np.all(image[outside] >= -300)  # never into air
            components, n = ndimage.label(tumor, structure=np.ones((3, 3, 3)))
            for k in range(1, n + 1):
                assert (near_kidney & (components == k)).any()  # every piece touches the kidney
            # Outside the kidney the tumor looks like the tumor, not like the fat it replaced.
            if outside.sum() > 20:
                assert result.image[outside].mean() > image[outside].mean() + 50
            changed = result.image != image
            assert not (changed & ~kidney & ~tumor).any()
        else:
            assert not outside.any()
    assert 0 < exophytic < 12  # about half of the medium/large kidney tumors


def multi_organ_case():
    return body([((40, 64, 56), (30, 36, 36), 1, 100), PANCREAS[:2] + (3, 60), KIDNEY[:2] + (5, 150)])


def test_multi_organ_labels_paint_each_organ_with_its_own_tumor_label():
    image, label = multi_organ_case()
    transform = TumorGenerated(prob=1.0, organ="multi", spacing=SPACING).set_random_state(0)
    seen = set()
    for _ in range(4):
        out = transform({"image": image[None].copy(), "label": label[None].copy()})
        out_label = out["label"][0]
        for organ_value, tumor_value in ((1, 2), (3, 4), (5, 6)):
            tumor = out_label == tumor_value
            seen.add(tumor_value) if tumor.any() else None
            # Tumors stay in or (exophytic kidney tumors) touch their own organ.
            organ = label == organ_value
            assert np.all(ndimage.binary_dilation(organ, iterations=1)[tumor])
            if tumor_value != 6:
                assert np.all(organ[tumor])
        # Organ voxels of one organ never turn into another organ's tumor.
        assert np.all(np.isin(out_label[label == 1], (1, 2)))
        assert np.all(np.isin(out_label[label == 3], (3, 4)))
        assert np.all(np.isin(out_label[label == 5], (5, 6)))
    assert seen == {2, 4, 6}
    # Same seed, same sample.
    a = TumorGenerated(prob=1.0, organ="multi").set_random_state(3)({"image": image[None], "label": label[None]})
    b = TumorGenerated(prob=1.0, organ="multi").set_random_state(3)({"image": image[None], "label": label[None]})
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])


def test_multi_organ_skips_only_the_organ_that_already_has_a_tumor():
    image, label = multi_organ_case()
    label = label.copy()
    real_tumor = ellipsoid((40, 64, 56), (6, 6, 6))
    label[real_tumor] = 2
    transform = TumorGenerated(prob=1.0, organ="multi", spacing=SPACING).set_random_state(1)
    out = transform({"image": image[None].copy(), "label": label[None].copy()})["label"][0]
    assert np.array_equal(out == 2, real_tumor)  # the liver keeps its real tumor only
    assert np.array_equal(out[label == 1], label[label == 1])
    assert (out == 4).any() and (out == 6).any()
    with pytest.raises(ValueError, match="tumor_prob must be None"):
        TumorGenerated(organ="multi", tumor_prob=(0.5, 0.5))


def test_multi_organ_scores_one_column_group_per_organ():
    ref = np.zeros((30, 30, 30), dtype=np.uint8)
    ref[2:12, 2:12, 2:12] = 1
    ref[5:8, 5:8, 5:8] = 2
    ref[15:25, 2:10, 2:10] = 3
    ref[18:22, 4:8, 4:8] = 4
    ref[2:10, 15:28, 15:28] = 5
    pred = ref.copy()
    pred[18:22, 4:8, 4:8] = 3  # pancreas tumor missed
    pred[20:24, 20:24, 20:24] = 6  # a false kidney tumor
    pairs = get_organ_profile("multi").label_pairs
    scores = score_label_pairs(pred, ref, (1.0, 1.0, 1.0), pairs)
    assert scores["liver_dice"] == pytest.approx(1.0) and scores["liver_tumor_dice"] == pytest.approx(1.0)
    assert scores["pancreas_dice"] == pytest.approx(1.0)  # the organ region includes its tumor
    assert scores["pancreas_tumor_dice"] == 0.0
    assert scores["pancreas_tumor_lesions"] == 1 and scores["pancreas_tumor_detected"] == 0
    assert scores["kidney_tumor_false_positives"] == 1
    assert scores["lesions"] == 2 and scores["detected"] == 1  # summed over organs
    columns = pair_metric_columns(pairs)
    assert columns[:9] == ["name", "liver_dice", "liver_nsd", "liver_tumor_dice", "liver_tumor_nsd",
                           "pancreas_dice", "pancreas_nsd", "pancreas_tumor_dice", "pancreas_tumor_nsd"]
    assert set(columns[1:]) <= set(scores)
    # Single-organ conventions keep the original columns.
    assert pair_metric_columns(get_organ_profile("liver").label_pairs)[:5] == [
        "name", "liver_dice", "liver_nsd", "tumor_dice", "tumor_nsd"]


def test_presets_are_data_of_the_organ_profile():
    from dataclasses import replace

    from tumor_synthesis.organs import PRESETS, Preset, preset_of, with_preset

    liver = get_organ_profile("liver")
    assert PRESETS == ("original", "realistic")
    assert with_preset(liver, "original") is liver and preset_of(liver, "original") == Preset()
    realistic = preset_of(liver, "realistic")
    changed = with_preset(liver, "realistic")
    assert changed == replace(liver, **realistic.profile)
    assert changed.edge_blur_mm[1] <= liver.edge_blur_mm[0]  # sharper than the published sigma U(1, 2) mm
    assert 0 < changed.label_visible_edge < 1 and liver.label_visible_edge is None
    assert changed.difference_hu[0] > liver.difference_hu[0]
    assert realistic.learned["inside_label"] is True and "difference_hu" in realistic.growth
    with pytest.raises(ValueError, match="no 'realistic' synthesis preset.*liver"):
        with_preset(get_organ_profile("pancreas"), "realistic")
    with pytest.raises(ValueError, match="no 'realistic'"):
        with_preset(get_organ_profile("multi"), "realistic")  # pancreas and kidney have none
    with pytest.raises(ValueError, match="unknown synthesis preset 'nice'"):
        preset_of(liver, "nice")
    with pytest.raises(ValueError, match="unknown presets"):
        replace(liver, presets={"nice": Preset()})
