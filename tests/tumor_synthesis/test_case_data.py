"""Per-case synthesis facts: computed once, the same samples as without them, never used for other arrays."""

import copy

import numpy as np
import pytest
import torch
from monai.transforms import SpatialCropd

import tumor_synthesis.case_data as case_data_module
import tumor_synthesis.growth_engine as growth_engine
from tests.tumor_synthesis.cases import make_case, meta_tensor
from tumor_synthesis import TumorGenerated
from tumor_synthesis.case_data import CASE_DATA_KEY, CaseData, organ_statistics
from tumor_synthesis.case_transform import TumorCaseDatad


def multi_organ_case(seed=0):
    """(image int16 HU, label uint8) with a liver (1), a pancreas (3) and a kidney (5) in soft tissue."""
    shape = (56, 48, 40)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    label = np.zeros(shape, np.uint8)
    for value, centre, radii in ((1, (18, 24, 20), (14, 16, 14)), (3, (40, 14, 20), (7, 6, 8)),
                                 (5, (42, 36, 20), (9, 8, 10))):
        label[sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) < 1] = value
    rng = np.random.default_rng(seed)
    image = np.where(label > 0, 60, 20) + rng.normal(0, 8, shape)  # soft tissue around the organs
    return image.astype(np.int16), label


def sample(image, label, seed, **kwargs):
    return {"image": meta_tensor(image[None].astype(np.float32), "img.nii.gz"),
            "label": meta_tensor(label[None].copy(), "lab.nii.gz")}


CASES = {
    "liver ellipsoid": (make_case, dict(organ="liver")),
    "liver ellipsoid rim": (make_case, dict(organ="liver", surface_rim_mm=2.0)),
    "liver growth": (make_case, dict(organ="liver", synthesis="growth")),
    "kidney exophytic": (lambda: make_case(seed=3), dict(organ="kidney", tumor_prob=[0.0, 0.0, 0.5, 0.5])),
    "multi ellipsoid": (multi_organ_case, dict(organ="multi")),
    "multi growth": (multi_organ_case, dict(organ="multi", synthesis="growth")),
}


def no_scan(*args, **kwargs):
    raise AssertionError("the label was scanned for the organ although the case data were given")


@pytest.mark.parametrize("name, kind", [(name, "metatensor") for name in CASES]
                         + [("liver ellipsoid", "numpy"), ("liver growth", "tensor")])
def test_precomputed_case_data_paint_the_same_samples_bit_for_bit(name, kind, monkeypatch):
    make, options = CASES[name]
    image, label = make()

    def sample(image, label):
        if kind == "metatensor":
            return {"image": meta_tensor(image[None].astype(np.float32), "img.nii.gz"),
                    "label": meta_tensor(label[None].copy(), "lab.nii.gz")}
        arrays = {"image": image[None].astype(np.float32), "label": label[None].copy()}
        return arrays if kind == "numpy" else {k: torch.from_numpy(v) for k, v in arrays.items()}

    precompute = TumorCaseDatad(keys=("image", "label"), **options)
    cached = precompute(sample(image, label))
    assert isinstance(cached[CASE_DATA_KEY], CaseData)
    painted = 0
    for seed in range(3):
        synthesis = TumorGenerated(prob=1.0, inplace=True, **options)
        without = synthesis.set_random_state(seed)(sample(image, label))
        # As a CacheDataset hands the cached sample over: a deep copy (which shares the case data).
        drawn = copy.deepcopy(cached)
        assert drawn[CASE_DATA_KEY] is cached[CASE_DATA_KEY]
        with monkeypatch.context() as m:  # the case data are used, not silently recomputed
            m.setattr(case_data_module, "scan_label", no_scan)
            m.setattr(growth_engine, "scan_label", no_scan)
            with_data = synthesis.set_random_state(seed)(drawn)
        assert CASE_DATA_KEY not in with_data  # consumed: crops and collation never see it
        assert torch.equal(with_data["image"], without["image"])
        assert torch.equal(with_data["label"], without["label"])
        painted += int((without["label"] != torch.as_tensor(label[None])).any())
    assert painted >= 2  # prob 1: the comparison is between painted samples


def test_case_data_made_for_other_arrays_are_ignored():
    image, label = make_case(shape=(60, 52, 44), center=(26, 24, 20))
    stale = TumorCaseDatad(keys=("image", "label"))(sample(image, label, 0))
    crop = SpatialCropd(keys=("image", "label"), roi_start=(6, 4, 2), roi_end=(54, 48, 40))
    cropped = crop(stale)  # a crop between the case data and the synthesis: other shape, other affine
    assert cropped[CASE_DATA_KEY] is stale[CASE_DATA_KEY]
    fresh = crop({k: v for k, v in stale.items() if k != CASE_DATA_KEY})
    for seed in range(3):
        synthesis = TumorGenerated(prob=1.0)
        a = synthesis.set_random_state(seed)(cropped)
        b = synthesis.set_random_state(seed)(fresh)
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    # Same shape, another spacing: ignored too.
    other = TumorGenerated(prob=1.0, spacing=(1.0, 1.0, 1.0))
    data = {"image": torch.from_numpy(image[None]), "label": torch.from_numpy(label[None])}
    at_2mm = TumorCaseDatad(keys=("image", "label"), spacing=(2.0, 2.0, 2.0))(data)
    a = other.set_random_state(5)(dict(at_2mm))
    b = other.set_random_state(5)(dict(data))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_case_data_hold_the_organ_box_and_statistics():
    image, label = make_case(seed=3)
    data = TumorCaseDatad(keys=("image", "label"), organ="kidney")(sample(image, label, 0))[CASE_DATA_KEY]
    case = data.organ("kidney")
    organ = np.argwhere(label == 1)
    first, last = organ.min(axis=0), organ.max(axis=0)
    # The original's crop: one voxel off the low side, up to the last organ index (exclusive) on the high side.
    assert case.crop.start == tuple(int(v) + 1 for v in first)
    assert case.crop.mask.shape == tuple(int(b - a - 2) for a, b in zip(first, last))
    # Statistics precomputed (kidney tumors may be exophytic), against a direct computation.
    median, noise = case.organ_hu
    values = image.astype(np.float32)
    assert median == float(np.median(values[label == 1]))
    pairs = (label[1:] == 1) & (label[:-1] == 1)
    steps = values[1:][pairs] - values[:-1][pairs]
    assert noise == pytest.approx(1.4826 * np.median(np.abs(steps - np.median(steps))) / np.sqrt(2.0))
    assert organ_statistics(image, label, 1, case.crop) == (median, noise)
    # A label that already holds a tumor has nothing to paint.
    painted = label.copy()
    painted[tuple(organ[len(organ) // 2])] = 2
    skipped = TumorCaseDatad(keys=("image", "label"), organ="kidney")(sample(image, painted, 0))[CASE_DATA_KEY]
    assert skipped.organ("kidney").crop is None
