"""SYNTHESIS_MODELS: names to model classes; a registered model reaches the transforms unchanged."""

import numpy as np
import pytest
import torch

from tests.tumor_synthesis.models.test_base import CubeModel
from tests.tumor_synthesis.test_array import multi_organ_case
from tumor_synthesis import TumorGenerate, TumorGenerated
from tumor_synthesis.models import SYNTHESIS_MODELS, EllipsoidModel, GrowthModel, SynthesisModel, get_synthesis_model


def test_names_map_to_their_model_classes():
    assert SYNTHESIS_MODELS == {"ellipsoid": EllipsoidModel, "growth": GrowthModel}
    for name, model in SYNTHESIS_MODELS.items():
        assert issubclass(model, SynthesisModel) and model.name == name and get_synthesis_model(name) is model


@pytest.mark.parametrize("make", [get_synthesis_model, lambda name: TumorGenerate(synthesis=name),
                                  lambda name: TumorGenerated(synthesis=name)])
def test_an_unknown_name_is_refused_in_one_line_listing_the_names(make):
    with pytest.raises(ValueError) as info:
        make("blob")
    assert str(info.value) == "unknown synthesis model 'blob'; choose one of ['ellipsoid', 'growth']"


def test_a_registered_model_is_used_by_the_transforms(monkeypatch):
    monkeypatch.setitem(SYNTHESIS_MODELS, "cube", CubeModel)
    image, label = multi_organ_case()
    t = TumorGenerated(prob=1.0, organ="multi", synthesis="cube").set_random_state(0)
    out = t({"image": image[None].copy(), "label": label[None].copy()})
    assert isinstance(t.tumor_generate.model, CubeModel)
    assert set(torch.unique(out["label"]).tolist()) == {0, 1, 2, 3, 4, 5, 6}
    assert np.array_equal(out["image"].numpy() != image[None], out["label"].numpy() != label[None])
    single = TumorGenerated(prob=1.0, synthesis="cube", tumor_prob=(0.0, 1.0)).set_random_state(0)
    assert single.tumor_generate.tumor_types == ("one", "two")
    painted = single({"image": image[None], "label": (label == 1)[None].astype(np.uint8)})["label"]
    assert 0 < int((painted == 2).sum()) <= 8  # a cube of edge 2, clipped to the organ
