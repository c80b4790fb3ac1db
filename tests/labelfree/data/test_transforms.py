"""labelfree.data.transforms: the one pipeline factory (order, geometry, intensities, cache split, inversion)."""

import copy
import importlib.util

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    Invertd,
    RandCropByPosNegLabeld,
    RandRotate90d,
    ScaleIntensityRanged,
    SpatialPadd,
    Spacingd,
)

from labelfree.data.loaders import build_train_dataset
from labelfree.data.transforms import get_train_stages, get_transforms, split_at_cache_boundary

A_MIN, A_MAX = -21.0, 189.0
SPACING = (2.5, 2.0, 3.0)  # mm, on disk
SHAPE = (40, 36, 20)
has_synthesis = importlib.util.find_spec("tumor_synthesis") is not None and (
    importlib.util.find_spec("tumor_synthesis.organs") is not None
)


def lps_affine(spacing=SPACING):
    """Voxel -> RAS+ world for a volume stored the DICOM way (i towards left, j towards posterior)."""
    return np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])


def write_case(tmp_path, name="case"):
    """An LPS-stored volume: air, a 40 HU body, a 100 HU 'organ' block (label 1), a 30 HU 'tumor' (label 2).

    The organ sits at low i (the patient's right side in this LPS grid), so a correct RAS
    reorientation moves it to high indices of axis 0.
    """
    image = np.full(SHAPE, -1000, np.int16)
    label = np.zeros(SHAPE, np.uint8)
    image[2:38, 4:32, 2:18] = 40
    image[4:16, 8:28, 4:16] = 100
    label[4:16, 8:28, 4:16] = 1
    image[8:12, 14:20, 8:12] = 30
    label[8:12, 14:20, 8:12] = 2
    paths = {}
    for key, data in (("image", image), ("label", label)):
        path = tmp_path / f"{name}_{key}.nii.gz"
        nib.save(nib.Nifti1Image(data, lps_affine()), str(path))
        paths[key] = str(path)
    return paths, image, label


def world_centroid(mask, affine):
    idx = np.argwhere(mask).mean(axis=0)
    return (np.asarray(affine) @ np.append(idx, 1.0))[:3]


def test_val_pipeline_geometry_and_intensity(tmp_path):
    paths, image, label = write_case(tmp_path)
    out = get_transforms("val", a_min=A_MIN, a_max=A_MAX, space=(2.0, 2.0, 2.0))(paths)
    img, lab = out["image"], out["label"]
    assert isinstance(img, MetaTensor) and img.ndim == 4 and img.shape[0] == 1 and lab.shape == img.shape
    affine = img.affine.numpy()
    # RAS: positive diagonal; resampled to 2 mm; same physical extent within one voxel.
    assert np.allclose(np.diag(affine)[:3], 2.0) and np.allclose(affine[:3, :3] - np.diag(np.diag(affine)[:3]), 0)
    extent_in = np.array(SHAPE) * np.array(SPACING)
    assert np.all(np.abs(np.array(img.shape[1:]) * 2.0 - extent_in) <= 2.0)
    # The organ lies where it lay in the world (Orientationd + Spacingd keep geometry).
    out_organ = lab[0].numpy() == 1
    assert np.allclose(world_centroid(out_organ | (lab[0].numpy() == 2), affine),
                       world_centroid(label > 0, lps_affine()), atol=2.0)
    assert np.argwhere(out_organ)[:, 0].mean() > img.shape[1] / 2  # right side -> high x index in RAS
    # ScaleIntensityRanged: clip((HU - a_min) / (a_max - a_min)) into [0, 1].
    values = img[0].numpy()
    assert values.min() >= 0.0 and values.max() <= 1.0
    inner = np.argwhere(out_organ)[len(np.argwhere(out_organ)) // 2]
    assert set(np.unique(lab.numpy())) <= {0.0, 1.0, 2.0}
    assert values[out_organ].max() == pytest.approx((100 - A_MIN) / (A_MAX - A_MIN), abs=1e-5)
    assert values[tuple(inner)] <= (100 - A_MIN) / (A_MAX - A_MIN) + 1e-6
    assert values[lab[0].numpy() == 0].min() == 0.0  # air clipped to 0


def test_infer_pipeline_reads_image_only(tmp_path):
    paths, _, _ = write_case(tmp_path)
    out = get_transforms("infer", a_min=A_MIN, a_max=A_MAX, space=(2.0, 2.0, 2.0))({"image": paths["image"]})
    assert "label" not in out and out["image"].shape[0] == 1


def test_prediction_inverts_to_the_original_grid(tmp_path):
    # validation.py's use: Invertd needs the MetaTensor's applied_operations to survive.
    paths, _, label = write_case(tmp_path)
    transform = get_transforms("val", a_min=A_MIN, a_max=A_MAX, space=SPACING)
    data = transform(paths)
    assert len(data["image"].applied_operations) >= 2
    data["pred"] = data["label"].clone()  # a perfect "prediction" on the resampled grid
    inverted = Invertd(keys="pred", transform=transform, orig_keys="image", nearest_interp=True)(data)["pred"]
    assert tuple(inverted.shape[1:]) == SHAPE
    np.testing.assert_array_equal(inverted[0].numpy().astype(np.uint8), label)


def test_train_pipeline_output(tmp_path):
    paths, _, _ = write_case(tmp_path)
    transform = get_transforms("train", a_min=A_MIN, a_max=A_MAX, space=(2.0, 2.0, 2.0), roi_size=(16, 16, 16))
    transform.set_random_state(seed=3)
    out = transform(paths)
    assert isinstance(out, list) and len(out) == 1  # RandCropByPosNegLabeld, num_samples=1
    sample = out[0]
    assert sample["image"].shape == (1, 16, 16, 16) and sample["label"].shape == (1, 16, 16, 16)
    assert isinstance(sample["image"], MetaTensor)  # no ToTensord stripping the metadata
    assert set(np.unique(sample["label"].numpy())) <= {0.0, 1.0, 2.0}
    # Intensity augmentation: scale by at most 1.1, shift by at most 0.1 around [0, 1].
    assert -0.11 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.1 * 1.0 + 0.1 + 1e-6


def test_train_pipeline_pads_small_volumes_to_the_roi(tmp_path):
    paths, _, _ = write_case(tmp_path)
    roi = (96, 96, 32)  # larger than the 2 mm volume in x and y
    out = get_transforms("train", a_min=A_MIN, a_max=A_MAX, space=(2.0, 2.0, 2.0), roi_size=roi)(paths)
    assert tuple(out[0]["image"].shape[1:]) == roi


NON_SQUARE_DRAWS = 12


def _draw_shapes(per_draw, cached, seed, draws=NON_SQUARE_DRAWS):
    """Spatial shapes of image and label over ``draws`` runs of the random stage on the cached case."""
    per_draw.set_random_state(seed=seed)
    shapes = set()
    for _ in range(draws):
        sample = per_draw({k: v.clone() if hasattr(v, "clone") else v for k, v in cached.items()})[0]
        shapes |= {tuple(sample[key].shape[1:]) for key in ("image", "label")}
    return shapes


@pytest.mark.parametrize("roi", [(24, 16, 16), (16, 24, 8)])
def test_train_pipeline_keeps_a_non_square_patch_shape_on_every_draw(tmp_path, roi):
    """roi_x != roi_y: a quarter turn in the H-W plane would swap them and the batch would not collate.

    The case is loaded and resampled once (the cached stage); only the random stage runs per draw.
    """
    paths, _, _ = write_case(tmp_path)
    stages = get_train_stages(a_min=A_MIN, a_max=A_MAX, space=(2.0, 2.0, 2.0), roi_size=roi)
    cached = stages.cached(paths)
    assert _draw_shapes(stages.per_draw, cached, seed=0) == {roi}
    # The same draws with a quarter turn added (the bug) do swap x and y at least once: the
    # seed and the number of draws are enough to catch it.
    steps = list(stages.per_draw.transforms)
    after_flips = max(i for i, t in enumerate(steps) if type(t).__name__ == "RandFlipd") + 1
    turning = Compose(steps[:after_flips] + [RandRotate90d(keys=("image", "label"), prob=0.2, max_k=3)]
                      + steps[after_flips:])
    assert (roi[1], roi[0], roi[2]) in _draw_shapes(turning, cached, seed=0)
    square = get_transforms("train", a_min=A_MIN, a_max=A_MAX, space=(2.0, 2.0, 2.0), roi_size=(16, 16, 8))
    assert any(type(t).__name__ == "RandRotate90d" for t in square.transforms)  # square patches still turn


def test_train_pipeline_is_reproducible_per_seed(tmp_path):
    paths, _, _ = write_case(tmp_path)

    def draw(seed):
        transform = get_transforms("train", a_min=A_MIN, a_max=A_MAX, space=(2.0, 2.0, 2.0), roi_size=(16, 16, 16))
        transform.set_random_state(seed=seed)
        return [transform(paths)[0]["image"].numpy() for _ in range(4)]

    first, again, other = draw(7), draw(7), draw(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


def test_cache_boundary_without_synthesis():
    stages = get_train_stages(a_min=A_MIN, a_max=A_MAX, roi_size=(32, 32, 32))
    cached = [type(t).__name__ for t in stages.cached.transforms]
    assert cached == ["LoadImaged", "EnsureChannelFirstd", "Orientationd", "Spacingd", "CastToTyped",
                      "ScaleIntensityRanged", "SpatialPadd"]
    per_draw = [type(t).__name__ for t in stages.per_draw.transforms]
    assert per_draw == ["RandCropByPosNegLabeld", "RandFlipd", "RandFlipd", "RandFlipd", "RandRotate90d",
                        "RandScaleIntensityd", "RandShiftIntensityd"]
    crop = stages.per_draw.transforms[0]
    assert isinstance(crop, RandCropByPosNegLabeld)
    flips = [t for t in stages.per_draw.transforms if type(t).__name__ == "RandFlipd"]
    assert [f.flipper.spatial_axis for f in flips] == [0, 1, 2] and all(f.prob == 0.2 for f in flips)


@pytest.mark.skipif(not has_synthesis, reason="tumor_synthesis is not available yet")
def test_cache_boundary_with_synthesis():
    from tumor_synthesis import TumorGenerated

    full = get_transforms("train", a_min=A_MIN, a_max=A_MAX, roi_size=(32, 32, 32), syn=True)
    from tumor_synthesis.case_transform import TumorCaseDatad

    stages = split_at_cache_boundary(full)
    assert isinstance(stages.cached.transforms[-4], Spacingd)
    # The padding and the per-case facts of the synthesis are cached, on exactly the arrays it paints.
    assert isinstance(stages.cached.transforms[-2], SpatialPadd)
    assert isinstance(stages.cached.transforms[-1], TumorCaseDatad)
    assert isinstance(stages.per_draw.transforms[0], TumorGenerated)  # right after the cache, in HU
    assert isinstance(stages.per_draw.transforms[1], RandCropByPosNegLabeld)  # cropped in HU
    assert stages.per_draw.transforms[1].cropper.image_threshold == A_MIN
    assert isinstance(stages.per_draw.transforms[2], ScaleIntensityRanged)  # then only the patch is scaled


@pytest.mark.skipif(not has_synthesis, reason="tumor_synthesis is not available yet")
def test_synthesis_pipeline_draws_the_samples_of_the_original_order(tmp_path):
    """Padding and case facts cached before the synthesis, the crop taken in HU and only the patch
    scaled: the same patches as the original order (synthesis, scaling, padding, crop with threshold
    0 on the scaled image) on a scan thinner than the patch."""
    from monai.transforms import Compose
    from tumor_synthesis.case_data import CASE_DATA_KEY

    from labelfree.phantom import generate_case

    case = generate_case("abdomen", seed=2, spacing=(4.0, 4.0, 4.0))
    paths = {}
    for key, data in (("image", case.image), ("label", case.label)):
        paths[key] = str(tmp_path / f"{key}.nii.gz")
        nib.save(nib.Nifti1Image(data, case.affine), paths[key])
    roi = (32, 32, max(case.image.shape[2] + 6, 32))  # thicker than the scan: padding matters
    ours = get_transforms("train", a_min=A_MIN, a_max=A_MAX, space=(4.0, 4.0, 4.0), roi_size=roi, syn=True,
                          syn_prob=1.0)
    steps = list(ours.transforms)
    names = [type(t).__name__ for t in steps]
    at = {name: steps[names.index(name)] for name in ("SpatialPadd", "TumorGenerated", "ScaleIntensityRanged")}
    # The original order, built independently of ours: the same synthesis (same random stream),
    # then the scaling, the padding and MONAI's crop with threshold 0 on the scaled image.
    crop = RandCropByPosNegLabeld(keys=("image", "label"), label_key="label", spatial_size=roi, pos=1, neg=1,
                                  num_samples=1, image_key="image", image_threshold=0)
    after_crop = steps[names.index("ScaleIntensityRanged") + 1:]
    original = Compose(steps[: names.index("SpatialPadd")]
                       + [at["TumorGenerated"], at["ScaleIntensityRanged"], at["SpatialPadd"], crop] + after_crop)
    cached = Compose(steps[: names.index("TumorCaseDatad") + 1])(dict(paths))
    assert CASE_DATA_KEY in cached
    for seed in range(3):
        # A deep copy per draw, as CacheDataset hands cached samples over (synthesis paints in place).
        a = split_at_cache_boundary(ours).per_draw.set_random_state(seed)(copy.deepcopy(cached))[0]
        b = original.set_random_state(seed)(dict(paths))[0]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        assert CASE_DATA_KEY not in a


@pytest.mark.skipif(not has_synthesis, reason="tumor_synthesis is not available yet")
def test_synthesis_runs_on_every_draw_in_hu(tmp_path):
    from labelfree.phantom import generate_case

    case = generate_case("abdomen", seed=1, spacing=(3.0, 3.0, 3.0))
    paths = {}
    for key, data in (("image", case.image), ("label", case.label)):
        paths[key] = str(tmp_path / f"{key}.nii.gz")
        nib.save(nib.Nifti1Image(data, case.affine), paths[key])
    stages = get_train_stages(a_min=A_MIN, a_max=A_MAX, space=(3.0, 3.0, 3.0), roi_size=(32, 32, 32), syn=True)
    stages.per_draw.set_random_state(seed=0)
    cached = stages.cached(paths)
    synthesis = stages.per_draw.transforms[0]
    organ = cached["label"][0].numpy() == 1
    painted = []
    for _ in range(4):  # the cache is copied per draw: every draw starts from the healthy case
        drawn = synthesis({k: v.clone() if hasattr(v, "clone") else v for k, v in cached.items()})
        tumor = drawn["label"][0].numpy() == 2
        painted.append(tumor.sum())
        assert not np.any(tumor & ~organ)
        changed = drawn["image"][0].numpy() != cached["image"][0].numpy()
        assert not np.any(changed & ~organ)  # HU edits only inside the organ
        if tumor.any():  # tumors are darker than the organ in HU, before any windowing
            assert drawn["image"][0].numpy()[tumor].mean() < cached["image"][0].numpy()[tumor].mean() - 20
    assert sum(n > 0 for n in painted) >= 2 and len(set(painted)) > 1  # prob 0.9, a new tumor per draw
    sample = stages.per_draw(dict(cached))[0]
    assert sample["image"].shape == (1, 32, 32, 32)


def test_cache_dataset_stores_exactly_the_cached_stage(tmp_path):
    paths, _, _ = write_case(tmp_path)
    kwargs = dict(a_min=A_MIN, a_max=A_MAX, space=(2.0, 2.0, 2.0), roi_size=(16, 16, 16))
    dataset = build_train_dataset([paths], get_transforms("train", **kwargs), cache_num=10, cache_rate=1.0,
                                  workers=0, progress=False)
    expected = get_train_stages(**kwargs).cached(dict(paths))
    cached = dataset._cache[0]
    assert torch.equal(torch.as_tensor(cached["image"]), torch.as_tensor(expected["image"]))
    assert cached["label"].dtype == torch.uint8  # a quarter of float32's cache memory
    assert dataset[0][0]["image"].shape == (1, 16, 16, 16)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown transform mode"):
        get_transforms("test", a_min=0, a_max=1)
    with pytest.raises(ValueError, match="a_max > a_min"):
        get_transforms("val", a_min=100, a_max=100)
    with pytest.raises(ValueError, match="positive spacings"):
        get_transforms("val", a_min=0, a_max=1, space=(1.0, 0.0, 1.0))


def test_in_place_synthesis_never_reaches_the_cache(tmp_path):
    """The synthesis paints in place after the cache; CacheDataset must hand each draw a copy."""
    from labelfree.phantom import generate_case

    case = generate_case("abdomen", seed=2, spacing=(3.0, 3.0, 3.0))
    paths = {}
    for key, data in (("image", case.image), ("label", case.label)):
        paths[key] = str(tmp_path / f"{key}.nii.gz")
        nib.save(nib.Nifti1Image(data, case.affine), paths[key])
    kwargs = dict(a_min=A_MIN, a_max=A_MAX, space=(3.0, 3.0, 3.0), roi_size=(32, 32, 32), syn=True)
    dataset = build_train_dataset([paths], get_transforms("train", **kwargs), cache_num=10, cache_rate=1.0,
                                  workers=0, progress=False)
    dataset.transform.set_random_state(seed=0)
    before_image = torch.as_tensor(dataset._cache[0]["image"]).clone()
    for _ in range(5):  # synthesis probability 0.9: the cached case would be painted at least once
        dataset[0]
    assert not (torch.as_tensor(dataset._cache[0]["label"]) == 2).any()
    assert torch.equal(torch.as_tensor(dataset._cache[0]["image"]), before_image)
