"""TumorGenerate, the array transform: input kinds, seeded determinism, the same samples as TumorGenerated."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from tests.tumor_synthesis.cases import (INPUTS, as_numpy, check_painted, make_case, only, output_type,
                                         torch_dtype)
from tumor_synthesis import TumorGenerate, TumorGenerated


def multi_organ_case(shape=(48, 40, 36)):
    """(image float32 HU, label uint8) with FreeTumor's liver (1), pancreas (3) and kidney (5) as boxes."""
    rng = np.random.default_rng(0)
    image = rng.normal(-100, 8, shape).astype(np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    for value, box, hu in ((1, np.s_[2:24, 4:36, 4:32], 100), (3, np.s_[28:44, 8:20, 10:26], 60),
                           (5, np.s_[28:44, 24:36, 8:30], 150)):
        label[box] = value
        image[box] += hu + 100
    return image, label


@pytest.mark.parametrize("kind", list(INPUTS))
def test_paints_channel_first_pairs_of_every_input_kind(kind):
    img, lab = make_case()
    img_in, lab_in = INPUTS[kind](img, lab)
    before = (as_numpy(img_in).copy(), as_numpy(lab_in).copy())
    image, label = TumorGenerate(prob=1.0, tumor_prob=only("small")).set_random_state(0)(img_in, lab_in)
    for out, ref in ((image, img_in), (label, lab_in)):
        assert type(out) is output_type(ref) and out.dtype == torch_dtype(ref) and out.shape == ref.shape
    if isinstance(img_in, MetaTensor):
        assert image.meta["filename_or_obj"] == "img.nii.gz" and torch.equal(image.affine, img_in.affine)
    check_painted(img_in, lab_in, image, label)
    assert np.array_equal(as_numpy(img_in), before[0]) and np.array_equal(as_numpy(lab_in), before[1])


@pytest.mark.parametrize("kind", ["numpy-int16", "torch-float32"])
def test_output_types_are_the_same_painted_or_not(kind):
    img, lab = make_case()
    types = set()
    for prob, label in ((1.0, lab), (0.0, lab), (1.0, np.zeros_like(lab))):
        img_in, lab_in = INPUTS[kind](img, label)
        image, label_out = TumorGenerate(prob=prob).set_random_state(0)(img_in, lab_in)
        types.add(tuple((type(x), x.dtype, x.device) for x in (image, label_out)))
        assert bool((label_out == 2).any()) == (prob == 1.0 and label.any())
    assert types == {((torch.Tensor, torch_dtype(img_in), torch.device("cpu")),
                      (torch.Tensor, torch_dtype(lab_in), torch.device("cpu")))}


@pytest.mark.parametrize("kind", ["numpy-int16", "torch-float32"])
def test_same_seed_same_sample_other_seed_other_sample(kind):
    img, lab = make_case()
    t = TumorGenerate(prob=1.0)
    assert t.set_random_state(7) is t
    first = t(*INPUTS[kind](img, lab))
    second = t.set_random_state(7)(*INPUTS[kind](img, lab))
    other = t.set_random_state(8)(*INPUTS[kind](img, lab))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not torch.equal(first[1], other[1])


def test_randomize_false_paints_the_last_draw_again():
    img, lab = make_case()
    t = TumorGenerate(prob=1.0).set_random_state(3)
    first = t(img[None], lab[None])
    again = t(img[None], lab[None], randomize=False)
    assert all(torch.equal(a, b) for a, b in zip(first, again))


@pytest.mark.parametrize(
    "kwargs, case, prob",
    [
        ({}, make_case, 0.5),  # a sequence with skipped samples: the random stream stays the same
        ({"organ": "multi", "spacing": (2.0, 2.0, 2.0)}, multi_organ_case, 0.7),
        ({"organ": "multi", "synthesis": "growth", "spacing": (2.0, 2.0, 2.0)}, multi_organ_case, 1.0),
        ({"surface_rim_mm": 2.0, "label_visible_edge": 0.3}, make_case, 1.0),
    ],
)
def test_array_and_dictionary_transforms_draw_the_same_samples(kwargs, case, prob):
    img, lab = case()
    array = TumorGenerate(prob=prob, **kwargs).set_random_state(11)
    dictionary = TumorGenerated(keys=("img", "seg"), prob=prob, **kwargs).set_random_state(11)
    painted = 0
    for _ in range(5):
        image, label = array(img[None].copy(), lab[None].copy())
        out = dictionary({"img": img[None].copy(), "seg": lab[None].copy()})
        assert torch.equal(image, out["img"]) and torch.equal(label, out["seg"])
        painted += bool((label != torch.from_numpy(lab[None])).any())
    assert painted >= 2  # the comparison covers painted samples


def test_device_moves_the_pair_painted_or_not():
    img, lab = make_case()
    for prob in (0.0, 1.0):
        image, label = TumorGenerate(prob=prob, device="cpu").set_random_state(0)(img[None], lab[None])
        assert isinstance(image, torch.Tensor) and image.device.type == "cpu" and label.device.type == "cpu"


@pytest.mark.parametrize(
    "image_shape, label_shape, match",
    [
        ((20, 20, 20), (20, 20, 20), "'image' must be channel-first"),
        ((2, 20, 20, 20), (2, 20, 20, 20), "one channel"),
        ((1, 20, 20, 20), (1, 20, 20, 21), "'image' and 'label' shapes differ"),
    ],
)
def test_bad_inputs_are_rejected_in_one_line(image_shape, label_shape, match):
    with pytest.raises(ValueError, match=match) as info:
        TumorGenerate(prob=1.0)(np.zeros(image_shape, np.float32), np.ones(label_shape, np.uint8))
    assert "\n" not in str(info.value)
