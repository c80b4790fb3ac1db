"""Placement: organ crop, erosion, centre law, and the fallbacks of small organs."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from tumor_synthesis import get_organ_profile, synthesize_tumors
from tumor_synthesis.placement import CenterSampler, erode_plane, scan_label, widening_bands


def blob(shape, center, radii):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii)) < 1


def test_erosion_matches_scipy_with_a_non_eroding_border():
    rng = np.random.default_rng(0)
    for _ in range(50):
        plane = ndimage.binary_dilation(rng.random(tuple(rng.integers(1, 30, size=2))) > 0.8, iterations=2)
        radius = tuple(int(r) for r in rng.integers(0, 4, size=2))
        structure = np.ones((2 * radius[0] + 1, 2 * radius[1] + 1), dtype=bool)
        expected = ndimage.binary_erosion(plane, structure=structure, border_value=1)
        assert np.array_equal(erode_plane(plane, radius), expected)


def test_crop_is_the_bounding_box_shrunk_like_the_original():
    label = np.zeros((30, 28, 26), dtype=np.float32)
    label[blob(label.shape, (14, 13, 12), (9, 8, 7))] = 1
    label[0, 0, 0] = 0.0
    max_label, crop = scan_label(label, 1)
    assert max_label == 1.0
    idx = np.argwhere(label == 1)
    first, last = idx.min(axis=0), idx.max(axis=0)
    assert crop.start == tuple(int(f) + 1 for f in first)
    assert crop.mask.shape == tuple(int(b - a - 2) for a, b in zip(first, last))
    assert np.array_equal(crop.mask, label[crop.slices] == 1)
    z_profile = np.flatnonzero(crop.mask.any(axis=(0, 1)))
    assert (crop.z_first, crop.z_last) == (z_profile[0], z_profile[-1])


def test_scan_reports_existing_tumors_and_missing_organs():
    label = np.zeros((20, 20, 20), dtype=np.uint8)
    assert scan_label(label, 1) == (0.0, None)
    label[5:15, 5:15, 5:15] = 1
    label[8, 8, 8] = 2
    max_label, crop = scan_label(label, 1)
    assert max_label == 2.0 and crop is None
    thin = np.zeros((20, 20, 20), dtype=np.uint8)
    thin[5:15, 5:15, 9:11] = 1  # two slices thick: nothing left after the shrink
    assert scan_label(thin, 1)[1] is None


def test_band_widens_up_to_the_whole_extent():
    assert widening_bands((0.3, 0.7)) == [(0.3, 0.7), (0.2, 0.8), (0.1, 0.9), (0.0, 1.0)]
    assert widening_bands((0.0, 1.0)) == [(0.0, 1.0)]


def test_centres_lie_in_the_band_on_eroded_organ():
    label = blob((60, 50, 40), (30, 25, 20), (25, 20, 17)).astype(np.uint8)
    _, crop = scan_label(label, 1)
    sampler = CenterSampler(crop, (0.3, 0.7), (2, 2))
    rng = np.random.default_rng(0)
    extent = crop.z_last - crop.z_first
    lo, hi = crop.z_first + round(0.3 * extent), crop.z_first + round(0.7 * extent)
    zs = []
    for _ in range(300):
        x, y, z = sampler.sample(rng)
        zs.append(z)
        assert lo <= z <= hi
        window = crop.mask[max(0, x - 2) : x + 3, max(0, y - 2) : y + 3, z]
        assert window.all()
    # Uniform over the band: both ends and the middle are reached.
    assert min(zs) == lo and max(zs) == hi
    assert np.mean(zs) == pytest.approx((lo + hi) / 2, abs=1.5)


def test_small_organ_falls_back_instead_of_crashing():
    # A plus sign one voxel thick: every 5x5 window holds background, so the eroded slices
    # are all empty (the original crashes here) and only the erosion-free stage succeeds.
    label = np.zeros((14, 14, 12), dtype=np.uint8)
    label[2:13, 7, 2:10] = 1
    label[7, 2:13, 2:10] = 1
    _, crop = scan_label(label, 1)
    assert not any(erode_plane(crop.mask[:, :, z], (2, 2)).any() for z in range(crop.mask.shape[2]))
    sampler = CenterSampler(crop, (0.3, 0.7), (2, 2))
    rng = np.random.default_rng(1)
    for _ in range(20):
        x, y, z = sampler.sample(rng)
        assert crop.mask[x, y, z]


def test_band_widens_when_only_the_organ_top_is_thick():
    # Thick only in its top slices: eroded candidates exist only outside the 30-70 % band.
    label = np.zeros((30, 30, 24), dtype=np.uint8)
    label[12:15, 12:15, 1:23] = 1
    label[3:27, 3:27, 15:23] = 1
    _, crop = scan_label(label, 1)
    sampler = CenterSampler(crop, (0.3, 0.7), (2, 2))
    rng = np.random.default_rng(2)
    for _ in range(10):
        x, y, z = sampler.sample(rng)
        assert crop.mask[x, y, z]
        assert z > crop.z_first + 0.7 * (crop.z_last - crop.z_first)


@pytest.mark.parametrize("spacing", [(2.0, 2.0, 2.0), (1.0, 1.0, 2.5)])
def test_liver_tumors_keep_a_rim_of_parenchyma_under_the_surface(spacing):
    # A 140 x 100 x 120 mm ellipsoid "liver"; large tumors (r 24-40 mm) centred 2 mm inside
    # it often reach its surface. Depth is measured independently, with scipy's EDT in mm.
    shape = tuple(int(round(n / s)) for n, s in zip((160.0, 120.0, 140.0), spacing))
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    organ = sum(((g * s - c) / r) ** 2 for g, s, c, r in zip(grids, spacing, (80, 60, 70), (70, 50, 60))) < 1
    depth = ndimage.distance_transform_edt(organ, sampling=spacing)
    image = np.where(organ, 100, -100).astype(np.int16)
    label = organ.astype(np.uint8)
    liver = get_organ_profile("liver")
    shallowest = {}
    for rim in (3.0, 0.0):
        profile = replace(liver, surface_rim_mm=rim)
        depths = []
        for seed in range(4):
            out = synthesize_tumors(image, label, np.random.default_rng(seed), "large", profile, spacing=spacing)
            tumor = out.label == 2
            assert tumor.any() and not (tumor & ~organ).any()
            depths.append(depth[tumor].min())
            # Outside the clipped mask only the blur's tail changes the image, and never outside the organ.
            assert np.array_equal(out.image[~organ], image[~organ])
        shallowest[rim] = min(depths)
    assert shallowest[3.0] > 3.0
    assert shallowest[0.0] <= max(spacing)  # the original: tumors reach the surface voxels


def test_a_negative_surface_rim_is_refused():
    with pytest.raises(ValueError, match="surface_rim_mm"):
        replace(get_organ_profile("liver"), surface_rim_mm=-1.0)


def test_transform_surface_rim_overrides_every_organ_profile():
    from tumor_synthesis import TumorGenerated

    assert TumorGenerated().profile.surface_rim_mm == 0.0  # the original's clipping by default
    assert TumorGenerated(surface_rim_mm=3).profile.surface_rim_mm == 3.0
    multi = TumorGenerated(organ="multi", surface_rim_mm=2.5).profile
    assert [m.surface_rim_mm for m in multi.members] == [2.5, 2.5, 2.5]
    assert get_organ_profile("liver").surface_rim_mm == 0.0  # the shared profile is not modified
    with pytest.raises(ValueError, match="surface rim"):
        TumorGenerated(surface_rim_mm=float("nan"))
