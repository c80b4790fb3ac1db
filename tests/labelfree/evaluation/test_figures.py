"""Tests of evaluation.figures: the overlay slice choice and valid PNG files."""

from __future__ import annotations

import numpy as np
import pytest

from labelfree.evaluation.figures import largest_lesion_slice, save_arm_bars, save_overlay

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_png(path):
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return matplotlib.image.imread(path)


def _ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


def test_largest_lesion_slice_picks_the_biggest_lesion_not_the_slice_with_most_tumor():
    shape = (40, 40, 30)
    big = _ball(shape, (20, 20, 8), 5)  # the largest lesion (~520 voxels), centred on slice 8
    # Five small lesions on slice 22: together more tumor voxels in that slice than the big
    # lesion's equator, so a per-slice count would pick 22.
    small = np.zeros(shape, bool)
    for centre in ((6, 6), (6, 33), (33, 6), (33, 33), (20, 33)):
        small |= _ball(shape, (*centre, 22), 3)
    mask = big | small
    assert mask[:, :, 22].sum() > mask[:, :, 8].sum()
    assert largest_lesion_slice(mask) == 8


def test_largest_lesion_slice_falls_back_to_the_organ_then_the_middle():
    shape = (20, 20, 10)
    organ = np.zeros(shape, bool)
    organ[5:15, 5:15, 6] = True
    organ[8:10, 8:10, 2] = True
    empty = np.zeros(shape, bool)
    assert largest_lesion_slice(empty, fallback_mask=organ) == 6
    assert largest_lesion_slice(empty) == 5


def test_save_overlay_writes_a_png_through_the_largest_lesion(tmp_path):
    rng = np.random.default_rng(0)
    shape = (48, 40, 12)
    image = rng.normal(60, 10, shape).astype(np.float32)
    reference = np.zeros(shape, np.uint8)
    reference[10:38, 8:32, 2:10] = 1
    reference[_ball(shape, (24, 20, 7), 4)] = 2
    prediction = np.where(_ball(shape, (26, 20, 7), 4), 2, (reference > 0).astype(np.uint8)).astype(np.uint8)
    path = tmp_path / "sub" / "case.png"

    shown = save_overlay(image, reference, prediction, path, spacing_mm=(1.0, 1.0, 2.5), title="case")

    assert shown == 7
    pixels = _read_png(path)
    assert pixels.ndim == 3 and pixels.shape[1] > pixels.shape[0]  # three panels side by side
    # Coloured outlines were drawn (a grey CT alone has R == G == B everywhere).
    rgb = pixels[..., :3]
    assert np.any(np.abs(rgb[..., 0] - rgb[..., 1]) > 0.3)
    assert path.stat().st_size < 300_000
    assert list(tmp_path.glob("sub/.*")) == []  # no temporary file left behind


def test_save_overlay_rejects_mismatched_arrays(tmp_path):
    image = np.zeros((8, 8, 4))
    with pytest.raises(ValueError, match="one shape"):
        save_overlay(image, np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.uint8), tmp_path / "x.png")
    with pytest.raises(ValueError, match="slice_index"):
        save_overlay(image, np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 4), np.uint8), tmp_path / "x.png",
                     slice_index=4)
    assert not (tmp_path / "x.png").exists()


def test_save_arm_bars_writes_a_png_and_tolerates_missing_values(tmp_path):
    path = tmp_path / "bars.png"
    save_arm_bars({"real": {"tumor Dice": 0.6, "sens.": None}, "synthetic": {"tumor Dice": 0.55, "sens.": 0.5}},
                  path, title="t")
    assert _read_png(path).shape[0] > 50
    with pytest.raises(ValueError, match="no arms"):
        save_arm_bars({}, tmp_path / "none.png")


def test_shrink_png_downscales_big_files_and_leaves_small_ones_alone(tmp_path):
    import matplotlib.image

    from labelfree.evaluation.figures import shrink_png

    rng = np.random.default_rng(1)
    noisy = rng.random((400, 600, 3)).astype(np.float32)  # incompressible: must be downscaled
    path = tmp_path / "noise.png"
    matplotlib.image.imsave(path, noisy)
    assert path.stat().st_size > 60_000
    size = shrink_png(path, max_bytes=60_000)
    assert size == path.stat().st_size <= 60_000
    height, width = _read_png(path).shape[:2]
    assert height < 400 and abs(width / height - 1.5) < 0.05  # aspect ratio kept

    # A thin red line on grey survives (palette quantisation would drop such rare colours).
    picture = np.full((40, 60, 3), 0.5, np.float32)
    picture[20, 5:55] = (1.0, 0.0, 0.0)
    small = tmp_path / "flat.png"
    matplotlib.image.imsave(small, picture)
    before = small.read_bytes()
    assert shrink_png(small) == len(before)
    assert small.read_bytes() == before  # already small enough: untouched


def test_largest_false_positive_slice_ignores_components_touching_a_reference_lesion():
    from labelfree.evaluation.figures import largest_false_positive_slice

    shape = (40, 40, 30)
    ref = _ball(shape, (20, 20, 5), 4)
    hit = _ball(shape, (20, 22, 6), 6)  # the biggest predicted component, but it touches the lesion
    fp_big = _ball(shape, (8, 8, 20), 3)
    fp_small = _ball(shape, (32, 32, 12), 1)
    assert largest_false_positive_slice(hit | fp_big | fp_small, ref) == 20
    assert largest_false_positive_slice(hit, ref) is None
    assert largest_false_positive_slice(np.zeros(shape, bool), ref) is None
