"""TumorGenerated: invariants, input types, reproducibility, workers, edge cases, statistics."""

import warnings

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from scipy import ndimage

import tumor_synthesis.transform as transform_module
from tumor_synthesis import TumorGenerated, get_organ_profile, synthesize_tumors

ALL_TYPES = ("tiny", "small", "medium", "large", "mix")


def make_case(shape=(48, 44, 36), center=None, radii=(18, 15, 13), seed=0):
    """(image int16 HU, label uint8): an ellipsoid organ of ~60 HU in -100 HU background."""
    center = center if center is not None else tuple(n / 2 for n in shape)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    organ = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii)) < 1
    rng = np.random.default_rng(seed)
    image = np.where(organ, 60, -100) + rng.normal(0, 8, shape)
    return image.astype(np.int16), organ.astype(np.uint8)


def only(tumor_type):
    return [1.0 if t == tumor_type else 0.0 for t in ALL_TYPES]


def as_numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


AFFINE_2MM = np.diag([2.0, 2.0, 2.0, 1.0])


def meta_tensor(array, name, affine=AFFINE_2MM):
    return MetaTensor(torch.from_numpy(array), affine=torch.tensor(affine), meta={"filename_or_obj": name})


# Channel-first inputs as MONAI pipelines hand them over, like MONAI's own transform tests.
INPUTS = {
    "numpy-int16": lambda img, lab: (img[None], lab[None]),
    "numpy-float32": lambda img, lab: (img[None].astype(np.float32), lab[None].astype(np.float32)),
    "torch-float32": lambda img, lab: (torch.from_numpy(img[None].astype(np.float32)), torch.from_numpy(lab[None])),
    "metatensor": lambda img, lab: (
        meta_tensor(img[None].astype(np.float32), "img.nii.gz"),
        meta_tensor(lab[None].astype(np.float32), "lab.nii.gz"),
    ),
}


def check_invariants(img_in, lab_in, img_out, lab_out):
    img_in, lab_in, img_out, lab_out = (as_numpy(a)[0] for a in (img_in, lab_in, img_out, lab_out))
    organ = lab_in == 1
    assert set(np.unique(lab_out)) <= {0, 1, 2}
    assert np.array_equal(lab_out == 0, lab_in == 0)  # background stays background
    assert np.all(organ[lab_out == 2])  # tumor only inside the organ
    assert np.array_equal(img_out[~organ], img_in[~organ])  # bit-identical outside the organ
    assert np.all(img_out[organ] <= img_in[organ])  # liver tumors only darken
    return lab_out == 2


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
        assert type(out[key]) is type(ref)
        assert out[key].dtype == ref.dtype and tuple(out[key].shape) == tuple(ref.shape)
    if isinstance(img_in, MetaTensor):
        assert out["image"].meta["filename_or_obj"] == "img.nii.gz"
        assert out["label"].meta["filename_or_obj"] == "lab.nii.gz"
        assert torch.equal(out["image"].affine, img_in.affine)
        assert out["image"].applied_operations == [{"class": "Spacingd"}]
    tumor = check_invariants(img_in, lab_in, out["image"], out["label"])
    assert tumor.any()
    # The inputs themselves are left alone.
    assert np.array_equal(as_numpy(img_in), before[0]) and np.array_equal(as_numpy(lab_in), before[1])


def test_inplace_writes_into_the_inputs():
    img, lab = make_case()
    img_in, lab_in = img[None].copy(), lab[None].copy()
    out = TumorGenerated(prob=1.0, inplace=True).set_random_state(1)({"image": img_in, "label": lab_in})
    assert np.shares_memory(out["image"], img_in) and np.shares_memory(out["label"], lab_in)
    assert (lab_in == 2).any()
    check_invariants(img[None], lab[None], out["image"], out["label"])


def test_prob_zero_and_existing_tumor_leave_the_sample_unchanged():
    img, lab = make_case()
    data = {"image": img[None], "label": lab[None]}
    out = TumorGenerated(prob=0.0).set_random_state(0)(data)
    assert out["image"] is data["image"] and out["label"] is data["label"]
    with_tumor = lab.copy()
    with_tumor[20:23, 20:23, 16:19] = 2
    data = {"image": img[None], "label": with_tumor[None]}
    out = TumorGenerated(prob=1.0).set_random_state(0)(data)
    assert out["image"] is data["image"] and out["label"] is data["label"]


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
    assert out["image"] is data["image"] and out["label"] is data["label"]


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
        check_invariants(img[None], lab[None], out["image"], out["label"])


def test_spacing_comes_from_the_affine_or_the_argument(monkeypatch):
    seen = []

    def spy(image, label, rng, tumor_type, profile, spacing, inplace):
        seen.append(tuple(spacing))
        return None

    monkeypatch.setattr(transform_module, "synthesize_tumors", spy)
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
    assert TumorGenerated(prob=1.0, allow_missing_keys=True)(data)["image"] is data["image"]


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
