"""SynthesisModel: the loop over a profile's organs, written once for every model."""

import numpy as np
import pytest

from tests.tumor_synthesis.test_array import multi_organ_case
from tumor_synthesis import get_organ_profile
from tumor_synthesis.models import EllipsoidModel, GrowthModel, SynthesisModel, SynthesisOptions, WorkArrays


class CubeModel(SynthesisModel):
    """A toy model: a cube of tumor (edge 1 or 2 voxels) at a random organ voxel, 50 HU darker."""

    name = "cube"

    def __init__(self, profile, options=SynthesisOptions()):
        super().__init__(profile)
        self.calls = []

    @classmethod
    def supports(cls, organ):
        return True

    def size_classes(self, organ):
        return ("one", "two")

    def size_probabilities(self, organ):
        return (0.5, 0.5)

    def work_arrays(self, image, label):
        return WorkArrays(image[0].numpy(), label[0].numpy(), True)

    def paint_organ(self, image, label, rng, size, organ, spacing, inplace):
        self.calls.append((organ.name, size, inplace))
        voxels = np.argwhere(label == organ.organ_label)
        if (self.shared_label and (label == organ.tumor_label).any()) or len(voxels) == 0:
            return None
        if not inplace:
            image, label = image.copy(), label.copy()
        x, y, z = voxels[rng.integers(len(voxels))]
        n = 1 if size == "one" else 2
        box = np.s_[x:x + n, y:y + n, z:z + n]
        inside = label[box] == organ.organ_label
        label[box][inside] = organ.tumor_label
        image[box][inside] -= 50
        return image, label


def test_each_organ_of_a_multi_organ_profile_draws_its_size_and_is_painted_once():
    image, label = multi_organ_case()
    model = CubeModel(get_organ_profile("multi"))
    before = (image.copy(), label.copy())
    painted_image, painted_label = model.paint(image, label, np.random.default_rng(0), (2.0, 2.0, 2.0))
    assert [c[0] for c in model.calls] == ["liver", "pancreas", "kidney"]
    assert all(size in ("one", "two") for _, size, _ in model.calls)
    # Copied once, by the first organ painted; the later ones paint into that copy.
    assert [c[2] for c in model.calls] == [False, True, True]
    assert np.array_equal(image, before[0]) and np.array_equal(label, before[1])
    assert set(np.unique(painted_label)) == {0, 1, 2, 3, 4, 5, 6}


def test_a_single_organ_paints_the_given_size_and_in_place_when_asked():
    image, label = multi_organ_case()
    label = (label == 1).astype(np.uint8)
    model = CubeModel(get_organ_profile("liver"))
    out = model.paint(image, label, np.random.default_rng(0), (1.0, 1.0, 1.0), size="two", inplace=True)
    assert model.calls == [("liver", "two", True)]
    assert out[0] is image and out[1] is label and (label == 2).sum() <= 8 and (label == 2).any()


def test_nothing_painted_gives_none_and_organs_with_a_tumor_are_skipped():
    image, label = multi_organ_case()
    no_organ = np.zeros_like(label)
    assert CubeModel(get_organ_profile("multi")).paint(image, no_organ, np.random.default_rng(0), (1, 1, 1)) is None
    label[label == 3] = 4  # the pancreas is all tumor already
    painted = CubeModel(get_organ_profile("multi")).paint(image, label, np.random.default_rng(0), (1, 1, 1))
    assert np.array_equal(painted[1] == 4, label == 4) and (painted[1] == 2).any() and (painted[1] == 6).any()


def test_the_models_say_which_organs_they_support():
    lung, liver = get_organ_profile("lung"), get_organ_profile("liver")
    assert EllipsoidModel.supports(lung) and EllipsoidModel.supports(liver)
    assert GrowthModel.supports(liver) and not GrowthModel.supports(lung)
    with pytest.raises(ValueError, match="no rules for organ 'lung'"):
        GrowthModel(lung)


def test_each_model_refuses_the_options_it_cannot_honour():
    liver = get_organ_profile("liver")
    assert EllipsoidModel(liver, SynthesisOptions(surface_rim_mm=2.0)).profile.surface_rim_mm == 2.0
    for options, match in ((SynthesisOptions(surface_rim_mm=2.0), "ellipsoid model's clipping"),
                           (SynthesisOptions(label_visible_edge=0.3), "labels every voxel it reached"),
                           (SynthesisOptions(growth_grid_mm=-1.0), "positive spacing")):
        with pytest.raises(ValueError, match=match):
            GrowthModel(liver, options)
    with pytest.raises(ValueError, match="fraction in"):
        SynthesisOptions(label_visible_edge=1.5)
