"""TumorGenerated: invariants, input types, reproducibility, workers, edge cases, statistics."""

import warnings

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from scipy import ndimage

import tumor_synthesis.models.ellipsoid as ellipsoid_module
from tests.tumor_synthesis.cases import (ALL_TYPES, INPUTS, as_numpy, check_painted, make_case, meta_tensor, only,
                                         output_type, torch_dtype)
from tumor_synthesis import TumorGenerated, get_organ_profile, synthesize_tumors


def unpainted(out, data) -> bool:
    """``out`` holds ``data``'s image and label unpainted: tensors of the same values, sharing their memory."""
    return all(isinstance(out[k], torch.Tensor) and np.shares_memory(as_numpy(out[k]), as_numpy(data[k]))
               and np.array_equal(as_numpy(out[k]), as_numpy(data[k])) for k in ("image", "label"))


@pytest.mark.parametrize("kind", list(INPUTS))
def test_output_keeps_type_dtype_and_metadata(kind):
    img, lab = make_case()
    img_in, lab_in = INPUTS[kind](img, lab)
    if isinstance(img_in, MetaTensor):
        img_in.applied_operations.append({"class": "Spacingd"})
    before = (as_numpy(img_in).copy(), as_numpy(lab_in).copy())
    t = TumorGenerated(keys=("image", "label"), prob=1.0, tumor_prob=only("medium")).set_random_state(0)
    out = t({"image": img_in, "label": lab_in, "other": "kept"})
    assert out["other"] == "kept"
    for key, ref in (("image", img_in), ("label", lab_in)):
        # MONAI's convention: tensors out (a MetaTensor stays one), the input's dtype.
        assert type(out[key]) is output_type(ref)
        assert out[key].dtype == torch_dtype(ref) and tuple(out[key].shape) == tuple(ref.shape)
    if isinstance(img_in, MetaTensor):
        assert out["image"].meta["filename_or_obj"] == "img.nii.gz"
        assert out["label"].meta["filename_or_obj"] == "lab.nii.gz"
        assert torch.equal(out["image"].affine, img_in.affine)
        assert out["image"].applied_operations == [{"class": "Spacingd"}]
    check_painted(img_in, lab_in, out["image"], out["label"])
    # The inputs themselves are left alone.
    assert np.array_equal(as_numpy(img_in), before[0]) and np.array_equal(as_numpy(lab_in), before[1])


@pytest.mark.parametrize("kind", list(INPUTS))
def test_output_types_are_the_same_painted_or_not(kind):
    """Painted, not drawn (prob 0), skipped (a tumor already there) or without organ: one output type."""
    img, lab = make_case()
    with_tumor = lab.copy()
    with_tumor[20:23, 20:23, 16:19] = 2
    samples = {"painted": (1.0, lab), "not drawn": (0.0, lab), "has a tumor": (1.0, with_tumor),
               "no organ": (1.0, np.zeros_like(lab))}
    seen = {}
    for name, (prob, label) in samples.items():
        img_in, lab_in = INPUTS[kind](img, label)
        out = TumorGenerated(prob=prob).set_random_state(0)({"image": img_in, "label": lab_in})
        seen[name] = tuple((type(out[k]), out[k].dtype, out[k].device) for k in ("image", "label"))
        assert seen[name] == ((output_type(img_in), torch_dtype(img_in), torch.device("cpu")),
                              (output_type(lab_in), torch_dtype(lab_in), torch.device("cpu")))
        assert bool((as_numpy(out["label"]) == 2).sum() > (label == 2).sum()) == (name == "painted")
    assert len(set(seen.values())) == 1


def test_inplace_writes_into_the_inputs():
    img, lab = make_case()
    img_in, lab_in = img[None].copy(), lab[None].copy()
    out = TumorGenerated(prob=1.0, inplace=True).set_random_state(1)({"image": img_in, "label": lab_in})
    assert np.shares_memory(as_numpy(out["image"]), img_in) and np.shares_memory(as_numpy(out["label"]), lab_in)
    check_painted(img[None], lab[None], img_in, lab_in)


def test_prob_zero_and_existing_tumor_leave_the_sample_unchanged():
    img, lab = make_case()
    data = {"image": img[None], "label": lab[None]}
    out = TumorGenerated(prob=0.0).set_random_state(0)(data)
    assert unpainted(out, data)
    with_tumor = lab.copy()
    with_tumor[20:23, 20:23, 16:19] = 2
    data = {"image": img[None], "label": with_tumor[None]}
    out = TumorGenerated(prob=1.0).set_random_state(0)(data)
    assert unpainted(out, data)


def test_set_random_state_reproduces_a_sample_exactly():
    img, lab = make_case()
    data = {"image": img[None], "label": lab[None]}
    t = TumorGenerated(prob=1.0)
    assert t.set_random_state(7) is t
    first = t(data)
    second = t.set_random_state(7)(data)
    assert np.array_equal(first["image"], second["image"]) and np.array_equal(first["label"], second["label"])
    other = t.set_random_state(8)(data)
    assert not np.array_equal(first["label"], other["label"])


def test_dataloader_workers_draw_different_tumors():
    img, lab = make_case()
    items = [{"image": img[None], "label": lab[None]} for _ in range(4)]
    dataset = Dataset(items, transform=TumorGenerated(prob=1.0, tumor_prob=only("small")))
    loader = DataLoader(dataset, batch_size=1, num_workers=2, shuffle=False)
    labels = [batch["label"][0, 0].numpy() for batch in loader]
    # Batches alternate between the two workers: items 0 and 1 come from different ones.
    assert not np.array_equal(labels[0] == 2, labels[1] == 2)
    assert all((x == 2).any() for x in labels)


def test_empty_organ_returns_the_sample_quietly():
    img, lab = make_case()
    data = {"image": img[None], "label": np.zeros_like(lab)[None]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = TumorGenerated(prob=1.0).set_random_state(0)(data)
    assert unpainted(out, data)


@pytest.mark.parametrize(
    "shape, center, radii",
    [
        ((37, 41, 23), (18, 20, 11), (15, 16, 9)),  # odd shape
        ((40, 40, 30), (0, 20, 15), (20, 15, 12)),  # organ cut by the volume border
        ((40, 40, 30), (20, 20, 29), (12, 12, 10)),  # cut at the top slice
        ((20, 20, 16), (10, 10, 8), (3, 3, 4)),  # small organ: eroded slices empty
    ],
)
@pytest.mark.parametrize("tumor_type", ["tiny", "large", "mix"])
def test_edge_cases_keep_the_invariants(shape, center, radii, tumor_type):
    img, lab = make_case(shape, center, radii)
    t = TumorGenerated(prob=1.0, tumor_prob=only(tumor_type))
    for seed in range(3):
        out = t.set_random_state(seed)({"image": img[None], "label": lab[None]})
        check_painted(img[None], lab[None], out["image"], out["label"])


def test_spacing_comes_from_the_affine_or_the_argument(monkeypatch):
    seen = []

    def spy(image, label, rng, tumor_type, profile, spacing, inplace, **options):
        seen.append(tuple(spacing))
        return None

    monkeypatch.setattr(ellipsoid_module, "synthesize_tumors", spy)
    img, lab = make_case()
    affine = np.diag([0.8, 0.75, 2.5, 1.0])
    meta = {"image": meta_tensor(img[None], "img", affine), "label": meta_tensor(lab[None], "lab", affine)}
    TumorGenerated(prob=1.0, spacing=(3, 3, 3))(meta)
    TumorGenerated(prob=1.0)({"image": img[None], "label": lab[None]})
    TumorGenerated(prob=1.0, spacing=(1.5, 1.5, 3.0))({"image": img[None], "label": lab[None]})
    assert seen == [pytest.approx((0.8, 0.75, 2.5)), (1.0, 1.0, 1.0), (1.5, 1.5, 3.0)]


def test_anisotropic_spacing_keeps_tumors_round_in_mm():
    # 1 x 1 x 3 mm voxels: a large tumor spans about 3x fewer slices than columns.
    img, lab = make_case((90, 90, 30), radii=(40, 40, 13))
    profile = get_organ_profile("liver")
    ratios = []
    for seed in range(6):
        res = synthesize_tumors(img, lab, np.random.default_rng(seed), "large", profile, spacing=(1.0, 1.0, 3.0))
        comps, n = ndimage.label(res.label == 2)
        biggest = np.argmax(np.bincount(comps.ravel())[1:]) + 1
        box = ndimage.find_objects((comps == biggest).astype(int))[0]
        ratios.append((box[2].stop - box[2].start) * 3.0 / (box[0].stop - box[0].start))
    assert 0.5 < np.median(ratios) < 2.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"keys": ("image",)}, "exactly two keys"),
        ({"tumor_prob": (0.5, 0.5)}, "one probability per tumor type"),
        ({"tumor_prob": (0.5, 0.5, 0.5, 0.0, 0.0)}, "sum to 1"),
        ({"organ": "spleen"}, "no tumor synthesis profile"),
        ({"spacing": (1.0, 0.0, 1.0)}, "positive voxel sizes"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TumorGenerated(**kwargs)


@pytest.mark.parametrize(
    "image_shape, label_shape, match",
    [
        ((20, 20, 20), (20, 20, 20), "channel-first"),
        ((2, 20, 20, 20), (2, 20, 20, 20), "one channel"),
        ((1, 20, 20, 20), (1, 20, 20, 21), "shapes differ"),
    ],
)
def test_bad_inputs_are_rejected(image_shape, label_shape, match):
    data = {"image": np.zeros(image_shape, np.float32), "label": np.ones(label_shape, np.uint8)}
    with pytest.raises(ValueError, match=match):
        TumorGenerated(prob=1.0)(data)


def test_missing_keys_follow_allow_missing_keys():
    img, lab = make_case()
    with pytest.raises(KeyError):
        TumorGenerated(prob=1.0)({"image": img[None]})
    data = {"image": img[None]}
    out = TumorGenerated(prob=1.0, allow_missing_keys=True)(data)
    assert isinstance(out["image"], torch.Tensor) and np.shares_memory(as_numpy(out["image"]), data["image"])
    assert "label" not in out


def test_application_rate_follows_prob():
    img, lab = make_case((30, 30, 24), radii=(11, 10, 8))
    t = TumorGenerated(prob=0.9, tumor_prob=only("tiny")).set_random_state(0)
    data = {"image": img[None], "label": lab[None]}
    applied = sum(bool((t(data)["label"] == 2).any()) for _ in range(120))
    assert 96 <= applied <= 118  # Binomial(120, 0.9): mean 108, sd 3.3


def test_intensity_statistics_over_many_samples():
    """HU drop in tumor cores = texture x difference: darker by about 0.52 x U(65, 145) HU."""
    img, lab = make_case((44, 40, 34), radii=(19, 16, 14))  # at 2 mm: 76 x 64 x 56 mm organ
    img = img.astype(np.float32)
    profile = get_organ_profile("liver")
    relative, edge_darkened = [], 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        res = synthesize_tumors(img, lab, rng, ALL_TYPES[seed % 5], profile, spacing=(2.0, 2.0, 2.0))
        plan = res.plan
        assert 65 <= plan.intensity.difference_hu <= 145 and 1 <= plan.intensity.blur_sigma_mm <= 2
        assert len(plan.tumors) >= 1
        for tumor in plan.tumors:
            assert lab[tumor.center] == 1  # every centre on the organ
        tumor = res.label == 2
        drop = img - res.image
        assert drop.min() >= 0 and drop.max() <= plan.intensity.difference_hu + 1e-3
        core = ndimage.minimum_filter(tumor, size=7)  # 6 mm from the edge: blur ~ 1
        if core.sum() >= 10:
            relative.append(np.median(drop[core]) / plan.intensity.difference_hu)
        # Soft edges: organ voxels next to the tumor but outside it get darker too.
        rim = ndimage.maximum_filter(tumor, size=3) & ~tumor & (lab == 1)
        edge_darkened += bool(rim.any() and (drop[rim] > 0.5).mean() > 0.5)
    assert len(relative) >= 40
    assert 0.4 < np.min(relative) and np.max(relative) < 0.7
    assert np.mean(relative) == pytest.approx(0.52, abs=0.04)
    assert edge_darkened >= 90


@pytest.mark.parametrize("synthesis", ["ellipsoid", "growth"])
def test_default_preset_is_the_original_bit_for_bit(synthesis):
    image, label = make_case(seed=3)
    outputs = []
    for extra in ({}, {"preset": "original"}):
        t = TumorGenerated(prob=1.0, spacing=(1.0, 1.0, 1.0), synthesis=synthesis, **extra).set_random_state(7)
        out = t({"image": image[None].copy(), "label": label[None].copy()})
        outputs.append((as_numpy(out["image"]), as_numpy(out["label"])))
    assert (outputs[0][1] == 2).any()
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
    np.testing.assert_array_equal(outputs[0][1], outputs[1][1])


def test_realistic_preset_keeps_the_darkening_inside_its_label():
    """On a noise-free organ: the original darkens organ voxels past its label by more than a fifth of the lesion's
    median drop (the halo), the realistic preset half as many, and its label holds no voxel the painting left
    untouched."""
    image, label = make_case(shape=(64, 64, 48), radii=(28, 28, 20), seed=0)
    image = np.where(label == 1, 60, -100).astype(np.float32)
    outside = {}
    for preset in ("original", "realistic"):
        darkened_outside, labelled = 0, 0
        for seed in range(4):
            t = TumorGenerated(prob=1.0, tumor_prob=only("small"), spacing=(1.0, 1.0, 1.0), preset=preset)
            out = t.set_random_state(seed)({"image": image[None].copy(), "label": label[None].copy()})
            change = as_numpy(out["image"])[0] - image
            tumor = as_numpy(out["label"])[0] == 2
            fifth = 0.2 * np.median(change[tumor])
            darkened_outside += int(np.count_nonzero((change < fifth) & ~tumor))
            labelled += int(np.count_nonzero(tumor))
            if preset == "realistic":
                assert not (tumor & (change == 0)).any()
        outside[preset] = darkened_outside / labelled
    assert outside["realistic"] < 0.6 * outside["original"]
