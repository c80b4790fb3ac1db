"""label_visible_edge: the synthetic tumor's label ends where its visible change fades (default off)."""

import numpy as np
import pytest

from tumor_synthesis import TumorGenerated, get_organ_profile, synthesize_tumors
from labelfree.apps.realism.stats import lesion_statistics


def uniform_organ(shape=(64, 64, 48)):
    """(image float32 HU, label uint8): a noise-free 100 HU ellipsoid organ in -100 HU background."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    organ = sum(((g - n / 2) / (0.45 * n)) ** 2 for g, n in zip(grids, shape)) < 1
    return np.where(organ, 100.0, -100.0).astype(np.float32), organ.astype(np.uint8)


def paint(edge, seed=3):
    image, label = uniform_organ()
    return synthesize_tumors(image, label, np.random.default_rng(seed), "small", get_organ_profile("liver"),
                             label_visible_edge=edge)


def test_edge_label_grows_the_label_only():
    base, grown = paint(None), paint(0.3)
    # Same random draws, same image: the option moves only the label boundary.
    np.testing.assert_array_equal(base.image, grown.image)
    old, new = base.label == 2, grown.label == 2
    assert np.all(new[old]) and new.sum() > old.sum()
    extra = new & ~old
    organ = uniform_organ()[1] == 1
    assert np.all(organ[extra])
    # Every newly labelled voxel is visibly changed, and the organ left outside the label
    # is changed less than the new label's weakest voxels, in the texture's terms.
    change = 100.0 - grown.image
    assert np.all(change[extra] > 0)


def test_edge_label_cuts_the_measured_halo():
    halos = {}
    for edge in (None, 0.2):
        result = paint(edge)
        records, _ = lesion_statistics(result.image, result.label, 1, 2, (1.0, 1.0, 1.0))
        halos[edge] = np.median([r["halo"] for r in records])
    assert halos[None] > 0.1
    assert halos[0.2] < 0.6 * halos[None]


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5])
def test_edge_fraction_is_checked(bad):
    with pytest.raises(ValueError, match="label_visible_edge"):
        TumorGenerated(keys=("image", "label"), label_visible_edge=bad)


def test_transform_passes_the_edge_on():
    image, label = uniform_organ()
    data = {"image": image[None], "label": label[None]}
    kwargs = dict(keys=("image", "label"), prob=1.0, tumor_prob=[0, 1, 0, 0, 0])
    base = TumorGenerated(**kwargs).set_random_state(5)(data)
    grown = TumorGenerated(**kwargs, label_visible_edge=0.3).set_random_state(5)(data)
    np.testing.assert_array_equal(base["image"], grown["image"])
    assert (grown["label"] == 2).sum() > (base["label"] == 2).sum()
