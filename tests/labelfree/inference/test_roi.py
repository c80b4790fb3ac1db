"""Tests of labelfree.inference.roi: ROI-restricted sliding window vs MONAI's full sliding window.

The reference is ``monai.inferers.sliding_window_inference`` over the whole volume with a real
(random-weight) MONAI UNet, so a crop that is not placed on the full-volume window grid shows
as a difference far above floating-point noise.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet

from labelfree.inference.predictor import Predictor
from labelfree.inference.roi import (
    OUTSIDE_LOGIT_MARGIN,
    RoiInferer,
    aligned_crop,
    body_box,
    body_threshold,
    count_windows,
    organ_box,
    window_starts,
)
from labelfree.evaluation.scoring import score_prediction
from labelfree.phantom import generate_case
from labelfree.data.transforms import get_transforms

ROI = (16, 16, 16)
SPACING = (4.0, 4.0, 4.0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny windows: one intra-op thread is several times faster than two on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _unet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return UNet(3, 1, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=1).eval()


def _body_volume(shape=(50, 45, 31), centre=(30, 27, 18), radii=(9, 8, 6), seed=0) -> torch.Tensor:
    """(1, 1, H, W, D) image in network units: air 0, an ellipsoidal 'body' of noisy tissue 0.2..0.9."""
    rng = np.random.default_rng(seed)
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0
    image = np.where(inside, rng.uniform(0.2, 0.9, shape), 0.0).astype(np.float32)
    return torch.from_numpy(image)[None, None]


def _assert_equal_inside(roi: torch.Tensor, full: torch.Tensor, inside: np.ndarray) -> None:
    """Logits equal up to float32 noise (relative to their size) in every voxel of ``inside``."""
    diff = (roi - full)[0].abs().numpy()[:, inside]
    scale = np.maximum(1.0, full[0].abs().numpy()[:, inside])
    assert (diff / scale).max() < 1e-5


def _box_mask(shape, box) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(lo, hi) for lo, hi in box)] = True
    return mask


@pytest.mark.parametrize("size,roi,overlap", [(70, 24, 0.5), (61, 24, 0.75), (45, 16, 0.75), (24, 24, 0.5),
                                              (20, 24, 0.5), (97, 96, 0.75), (100, 7, 0.3)])
def test_window_starts_are_the_windows_monai_places(size, roi, overlap):
    seen = set()

    def record(window, slices):
        for s in slices:
            seen.add(s[2].start)
        return window

    sliding_window_inference(torch.zeros(1, 1, size, 1, 1), (roi, 1, 1), 4, record, overlap, with_coord=True)
    assert window_starts(size, roi, overlap) == sorted(seen)


@pytest.mark.parametrize("overlap,sw_batch_size", [(0.5, 1), (0.75, 3)])
def test_body_roi_equals_the_full_sliding_window_inside_and_is_background_outside(overlap, sw_batch_size):
    image = _body_volume()
    net = _unet()
    with torch.no_grad():
        full = sliding_window_inference(image, ROI, 1, net, overlap, mode="gaussian")
        inferer = RoiInferer(ROI, overlap, sw_batch_size, mode="body", body_threshold=0.0)
        roi = inferer(image, net)
    stats = inferer.stats[0]
    inside = _box_mask(image.shape[2:], stats.box)
    # The body box holds the ellipsoid and is a proper part of the volume.
    assert inside[image[0, 0].numpy() > 0].all() and not inside.all()
    assert stats.windows_full == count_windows(image.shape[2:], ROI, overlap)
    assert 0 < stats.windows_run < stats.windows_full
    _assert_equal_inside(roi, full, inside)
    assert (roi[0, 0].numpy()[~inside] == 0).all()
    assert (roi[0, 1:].numpy()[:, ~inside] == -OUTSIDE_LOGIT_MARGIN).all()

    # The same crop without the window-grid alignment blends other windows: far from noise.
    naive = tuple(slice(lo, hi) for lo, hi in stats.box)
    with torch.no_grad():
        unaligned = sliding_window_inference(image[(..., *naive)], ROI, 1, net, overlap, mode="gaussian")
    assert (unaligned - full[(..., *naive)]).abs().max() > 1e-3


def test_organ_roi_finds_the_organ_and_equals_the_full_sliding_window_there():
    image = _body_volume()
    # Organ: a bright block inside the body. The network: a UNet plus logits that make the
    # voxels above 0.95 organ and every other voxel background, so the coarse pass finds the block.
    block = (slice(27, 33), slice(24, 30), slice(16, 21))
    image[(0, 0, *block)] = 1.0
    unet = _unet(1)

    def net(x):
        organ = (x > 0.95).float() * 100.0 - 50.0
        return unet(x) + torch.cat([torch.zeros_like(x), organ, torch.full_like(x, -50.0)], dim=1)

    with torch.no_grad():
        full = sliding_window_inference(image, ROI, 1, net, 0.5, mode="gaussian")
        inferer = RoiInferer(ROI, 0.5, 2, mode="organ", body_threshold=0.0, organ_margin=3, organ_trim=0.0)
        roi = inferer(image, net)
        body = RoiInferer(ROI, 0.5, 2, mode="body")
        body(image, net)
    stats = inferer.stats[0]
    assert stats.fallback == ""
    assert stats.box == tuple((s.start - 3, s.stop + 3) for s in block)
    assert stats.coarse_windows == count_windows([hi - lo for lo, hi in body.stats[0].box], ROI, 0.0)
    assert stats.windows_run < body.stats[0].windows_run < stats.windows_full
    inside = _box_mask(image.shape[2:], stats.box)
    _assert_equal_inside(roi, full, inside)
    assert (roi.argmax(dim=1)[0].numpy()[~inside] == 0).all()

    # Trimmed (the default): fewer windows, still the full window's labels inside the organ.
    with torch.no_grad():
        trimmed = RoiInferer(ROI, 0.5, 2, mode="organ", body_threshold=0.0, organ_margin=3, organ_trim=0.25)
        approx = trimmed(image, net)
    assert trimmed.stats[0].box == stats.box and trimmed.stats[0].windows_run < stats.windows_run
    organ = np.zeros(inside.shape, bool)
    organ[block] = True
    np.testing.assert_array_equal(approx.argmax(dim=1)[0].numpy()[organ], full.argmax(dim=1)[0].numpy()[organ])


def test_no_body_falls_back_to_the_whole_volume_and_none_is_monai_itself():
    image = torch.zeros(1, 1, 30, 24, 20)
    net = _unet()
    with torch.no_grad():
        full = sliding_window_inference(image, ROI, 1, net, 0.5, mode="gaussian")
        body = RoiInferer(ROI, 0.5, mode="body", body_threshold=0.5)
        none = RoiInferer(ROI, 0.5, mode="none")
        torch.testing.assert_close(body(image, net), full, atol=1e-5, rtol=0)
        torch.testing.assert_close(none(image, net), full, atol=0, rtol=0)
    assert body.stats[0].box == ((0, 30), (0, 24), (0, 20)) and body.stats[0].fallback
    assert body.stats[0].windows_run == body.stats[0].windows_full
    assert body_box(image[0], 0.5) is None


def test_boxes_and_crops_on_hand_made_masks():
    labels = np.zeros((30, 30, 30), np.uint8)
    labels[5:10, 5:9, 5:8] = 1        # organ
    labels[20:24, 20:23, 3:6] = 5     # two components of one class of similar size: both count
    labels[3:7, 22:25, 22:25] = 5
    labels[28, 28, 28] = 1            # a speck of the organ class: ignored
    assert organ_box(labels, margin=2) == ((1, 26), (3, 27), (1, 27))
    assert organ_box(np.zeros((4, 4, 4), np.uint8)) is None
    # Windows of 10 at overlap 0.5 on 32 voxels start at 0, 5, 10, 15, 20, 22.
    assert window_starts(32, 10, 0.5) == [0, 5, 10, 15, 20, 22]
    assert aligned_crop(((11, 13),), (32,), (10,), 0.5) == ((5, 20),)
    assert aligned_crop(((29, 32),), (32,), (10,), 0.5) == ((20, 32),)
    assert aligned_crop(((2, 5),), (8,), (10,), 0.5) == ((0, 8),)
    # Trimmed by 3: the window at 10 reaches (11, 13) only within 3 voxels of its start.
    assert aligned_crop(((11, 13),), (32,), (10,), 0.5, trim=(3,)) == ((5, 15),)
    # No window's trimmed core reaches (12, 13): untrimmed, as without trim.
    assert aligned_crop(((12, 13),), (32,), (10,), 0.5, trim=(4,)) == ((5, 20),)
    # The window's HU threshold in network units.
    assert body_threshold(-1000, 500) == pytest.approx(500 / 1500)
    assert body_threshold(-21, 189) == 0.0
    with pytest.raises(ValueError, match="a_max > a_min"):
        body_threshold(10, 10)
    with pytest.raises(ValueError, match="unknown ROI mode"):
        RoiInferer(ROI, 0.5, mode="lungs")


@pytest.fixture(scope="module")
def phantom_case_file(tmp_path_factory):
    """A phantom abdomen with liver tumors, written as NIfTI at a coarse 4 mm.

    The field of view (600 x 480 mm) leaves air around the body, as a clinical scan of a slim
    patient does.
    """
    case = generate_case("abdomen", seed=3, lesions=True, spacing=SPACING, fov_mm=(600, 480, 180))
    folder = tmp_path_factory.mktemp("roi_case")
    affine = np.diag([*SPACING, 1.0])
    paths = {"image": str(folder / "img.nii.gz"), "label": str(folder / "label.nii.gz")}
    nib.save(nib.Nifti1Image(case.image.astype(np.int16), affine), paths["image"])
    nib.save(nib.Nifti1Image(case.label.astype(np.uint8), affine), paths["label"])
    return paths


def test_body_roi_leaves_dice_and_nsd_of_a_phantom_case_unchanged(phantom_case_file):
    """The real path of validation.py (infer pipeline, Predictor, Invertd) with none and body."""
    from monai.data import DataLoader, Dataset

    window = (-21.0, 189.0)
    transforms = get_transforms("infer", a_min=window[0], a_max=window[1], space=SPACING)
    batch = next(iter(DataLoader(Dataset([{"image": phantom_case_file["image"]}], transforms), batch_size=1)))
    label = np.asarray(nib.load(phantom_case_file["label"]).dataobj).astype(np.uint8)
    unet = _unet(2)

    class Net(torch.nn.Module):  # organ where the windowed image exceeds 0.55 (liver), plus UNet texture
        def forward(self, x):
            organ = (x - 0.55) * 40
            return torch.cat([torch.zeros_like(x), organ, organ - 5.0], dim=1) + 0.5 * unet(x)

    scores, stats = {}, {}
    for mode in ("none", "body"):
        predictor = Predictor(Net(), transforms, (32, 32, 32), 0.5, 2, "cpu", roi_mode=mode,
                              body_threshold=body_threshold(*window))
        pred = predictor.predict_batch(batch)[0]
        assert pred.shape == label.shape
        scores[mode] = score_prediction(pred, label, SPACING, organ_label=1, tumor_label=2, tolerance_mm=2.0)
        stats[mode] = predictor.inferer.stats[0]
    assert stats["body"].windows_run < stats["none"].windows_run
    assert scores["none"]["liver_dice"] > 0.3  # a meaningful segmentation, not an empty one
    for key in ("liver_dice", "liver_nsd", "tumor_dice", "tumor_nsd"):
        assert scores["body"][key] == pytest.approx(scores["none"][key], abs=1e-3), key
    # The body box holds every labelled voxel (the grid is the file's: RAS at its own spacing).
    inside = _box_mask(batch["image"].shape[2:], stats["body"].box)
    assert inside[label > 0].all() and inside.sum() < inside.size
