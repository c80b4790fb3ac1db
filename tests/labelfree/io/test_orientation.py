"""labelfree.io.orientation: a label map stored in any axis order and orientation comes back exactly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from labelfree.io.orientation import GridMismatch, describe_grid_difference, onto_grid, orientation_difference

SHAPE = (5, 6, 7)
AFFINE = np.array([[0.8, 0, 0, -12.0], [0, 0.9, 0, 30.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1.0]])


def _stored(array, affine, order, flips):
    """``array`` stored with its axes in ``order`` and ``flips`` reversed, and the affine that keeps every voxel in place.

    Voxel ``s`` of the stored array is voxel ``i`` of ``array`` with ``i[order[a]] = s[a]``, or
    ``n - 1 - s[a]`` where axis ``a`` is flipped: the affine maps ``s`` to ``i`` first.
    """
    stored = np.transpose(array, order)
    stored = stored[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    to_original = np.zeros((4, 4))
    to_original[3, 3] = 1.0
    for a, (axis, flip) in enumerate(zip(order, flips)):
        n = array.shape[axis]
        to_original[axis, a] = -1.0 if flip else 1.0
        to_original[axis, 3] = n - 1 if flip else 0.0
    return stored, affine @ to_original


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_every_axis_order_and_flip_comes_back_exactly(order):
    array = np.random.default_rng(0).integers(0, 5, SHAPE)
    for flips in itertools.product((False, True), repeat=3):
        stored, affine = _stored(array, AFFINE, order, flips)
        assert orientation_difference(stored.shape, affine, SHAPE, AFFINE) == ""
        np.testing.assert_array_equal(onto_grid(stored, affine, SHAPE, AFFINE), array)


def test_the_same_grid_is_returned_as_it_is():
    array = np.zeros(SHAPE)
    assert onto_grid(array, AFFINE + 1e-5, SHAPE, AFFINE) is array


@pytest.mark.parametrize("affine, shape, expected", [
    (AFFINE @ np.diag([1.0, 1.0, 1.25, 1.0]), SHAPE, "voxel size (0.8, 0.9, 2.5) mm vs (0.8, 0.9, 2) mm"),
    (AFFINE + np.array([[0, 0, 0, 0.4]] + [[0, 0, 0, 0]] * 3), SHAPE,
     "origin shifted by (0.4, 0, 0) mm ((0.5, 0, 0) voxel(s) of the reference grid)"),
    (AFFINE, (5, 6, 8), "shape (5, 6, 8) vs (5, 6, 7)"),
])
def test_any_other_difference_is_refused_and_said(affine, shape, expected):
    assert describe_grid_difference(shape, affine, SHAPE, AFFINE) == expected
    with pytest.raises(GridMismatch, match="^" + expected.replace("(", r"\(").replace(")", r"\)") + "$"):
        onto_grid(np.zeros(shape), affine, SHAPE, AFFINE)


def test_a_rotation_is_refused():
    rotated = AFFINE.copy()
    rotated[:3, :3] = Rotation.from_euler("z", 10, degrees=True).as_matrix() @ AFFINE[:3, :3]
    assert "rotated" in orientation_difference(SHAPE, rotated, SHAPE, AFFINE)
