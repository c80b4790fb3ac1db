"""The growth model (``tumor_synthesis.growth``, ``growth_engine``, ``TumorGenerated(synthesis="growth")``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from tumor_synthesis import TumorGenerated, get_growth_rules, get_organ_profile, grow_tumors
from tumor_synthesis.growth import DEAD, OUTSIDE, Automaton, SimGrid

SPACING = (2.0, 2.0, 2.0)
#: Label values of the phantom's FreeTumor multi-organ map.
ORGAN_VALUES = {"liver": 1, "pancreas": 3, "kidney": 5}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread, as in a DataLoader worker: the automaton's many small ops only lose with more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def abdomen():
    """One phantom abdomen at 2 mm: int16 HU image, multi-organ label, affine."""
    from labelfree.phantom import generate_case

    case = generate_case("abdomen", seed=3, spacing=SPACING)
    return case.image, case.multiorgan, case.affine


def _meta(array, affine, dtype):
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(array).astype(dtype))[None], affine=torch.as_tensor(affine))


def _organ_case(abdomen, organ):
    image, multi, affine = abdomen
    label = (multi == ORGAN_VALUES[organ]).astype(np.uint8)
    return image, label, affine


def _one_hot(organ, size):
    names = get_growth_rules(organ).size_names
    return [1.0 if n == size else 0.0 for n in names]


@pytest.mark.parametrize("organ", ["liver", "pancreas", "kidney"])
def test_only_organ_voxels_change_and_labels_are_organ_or_tumor(abdomen, organ):
    image, label, affine = _organ_case(abdomen, organ)
    t = TumorGenerated(prob=1.0, organ=organ, synthesis="growth", tumor_prob=_one_hot(organ, "medium"))
    t.set_random_state(seed=1)
    out = t({"image": _meta(image, affine, np.float32), "label": _meta(label, affine, np.uint8)})
    new_image, new_label = out["image"][0].numpy(), out["label"][0].numpy()
    organ_mask = label == 1
    changed = new_image != image
    assert changed.any() and not (changed & ~organ_mask).any()
    assert set(np.unique(new_label).tolist()) == {0, 1, 2}
    tumor = new_label == 2
    assert np.array_equal(new_label[~tumor], label[~tumor]) and organ_mask[tumor].all()
    # Hypo-attenuating: the tumor is darker than the healthy organ was there.
    assert image[tumor].mean() - new_image[tumor].mean() > 10.0
    assert isinstance(out["image"], MetaTensor) and torch.equal(out["image"].affine, torch.as_tensor(affine))


@pytest.mark.parametrize("dtype", [np.float64, np.int16, np.float32])
def test_painting_writes_the_changed_voxels_only_in_the_image_dtype(abdomen, dtype):
    """A painted box is written back whole where float32 holds every value of the dtype, voxel by voxel
    elsewhere: either way only organ voxels change."""
    image, label, affine = _organ_case(abdomen, "liver")
    # HU with a fraction float32 cannot hold exactly (float64), or whole HU.
    source = image.astype(np.float64) + (1.0 / 3.0 if dtype == np.float64 else 0.0)
    t = TumorGenerated(prob=1.0, synthesis="growth", tumor_prob=_one_hot("liver", "medium")).set_random_state(seed=2)
    data = {"image": _meta(source, affine, dtype), "label": _meta(label, affine, np.uint8)}
    out = t(data)
    new_image = out["image"][0].numpy()
    assert new_image.dtype == dtype
    changed = new_image != source.astype(dtype)
    # A float64 box sent through float32 would change every voxel of it, organ or not.
    assert changed.any() and not (changed & (label != 1)).any()
    new_label = out["label"][0].numpy()
    assert (new_label == 2).any() and (new_label[changed] >= 1).all()


def test_skips_samples_with_a_tumor_and_empty_or_tiny_organs(abdomen):
    image, label, affine = _organ_case(abdomen, "liver")
    t = TumorGenerated(prob=1.0, synthesis="growth")
    with_tumor = label.copy()
    with_tumor[np.argwhere(label == 1)[0][0], :, :][label[np.argwhere(label == 1)[0][0]] == 1] = 2
    for lab in (with_tumor, np.zeros_like(label)):
        data = {"image": image[None].copy(), "label": lab[None].copy()}
        out = t(data)
        assert np.array_equal(out["image"], data["image"]) and np.array_equal(out["label"], data["label"])
    # A 3x3x3 organ: painted or not, never a crash, and nothing outside it changes.
    tiny = np.zeros_like(label)
    tiny[60:63, 60:63, 40:43] = 1
    for seed in range(4):
        t.set_random_state(seed=seed)
        out = t({"image": image[None].astype(np.float32), "label": tiny[None].copy()})
        assert np.array_equal(out["image"][0][tiny == 0], image[tiny == 0].astype(np.float32))
        assert set(np.unique(out["label"]).tolist()) <= {0, 1, 2}


def test_same_seed_same_sample_other_seed_other_sample(abdomen):
    image, label, affine = _organ_case(abdomen, "liver")

    def sample(seed):
        t = TumorGenerated(prob=1.0, synthesis="growth", tumor_prob=_one_hot("liver", "small"))
        t.set_random_state(seed=seed)
        out = t({"image": image[None].copy(), "label": label[None].copy()})
        return out["image"][0], out["label"][0]

    a, b, c = sample(5), sample(5), sample(6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_in_place_paints_the_input_arrays(abdomen):
    image, label, _ = _organ_case(abdomen, "kidney")
    data = {"image": image[None].copy(), "label": label[None].copy()}
    t = TumorGenerated(prob=1.0, organ="kidney", synthesis="growth", inplace=True,
                       tumor_prob=_one_hot("kidney", "medium"))
    t.set_random_state(seed=2)
    out = t(data)
    # Tensors out (MONAI's convention) over the input arrays' memory, which holds the tumors.
    assert np.shares_memory(out["image"].numpy(), data["image"]) and (data["label"] == 2).any()


def test_size_classes_grow_in_size(abdomen):
    """Tumor volume per seed increases from tiny to large (the size classes are ranges of N)."""
    image, label, _ = _organ_case(abdomen, "liver")
    rules = get_growth_rules("liver")
    volumes = []
    for size in rules.size_names:
        per_seed = []
        for seed in range(2):
            res = grow_tumors(torch.from_numpy(image.copy()), torch.from_numpy(label.copy()),
                              np.random.default_rng(seed), size, rules, spacing=SPACING, grid_mm=2.0)
            per_seed.append(res.plan.tumor_voxels / len(res.plan.seeds))
        volumes.append(np.mean(per_seed))
    assert all(a < b for a, b in zip(volumes, volumes[1:])), volumes


def _slab(wall_x=None, size=(28, 16, 16), hu=90):
    """A synthetic organ box (HU ``hu``, organ everywhere but a 2-voxel rim) with an optional vessel wall."""
    image = torch.full(size, float(hu))
    label = torch.zeros(size, dtype=torch.uint8)
    label[2:-2, 2:-2, 2:-2] = 1
    if wall_x is not None:
        image[wall_x, :, :] = 220.0  # bright: a vessel (barrier) across the whole organ
    return image, label


def _automaton(image, label, rules, seed=0):
    grid = SimGrid(image, label, 1, (0, 0, 0), tuple(image.shape), (1.0, 1.0, 1.0), rules.thresholds_hu, 1.0)
    gen = torch.Generator().manual_seed(seed)
    automaton = Automaton(grid, rules, gen)
    start = grid.from_box(torch.tensor([6]), torch.tensor([8]), torch.tensor([8]))
    automaton.plant(start, torch.zeros(0, dtype=torch.int64))
    return grid, automaton


def test_tumor_never_crosses_a_vessel_wall_that_has_not_yielded():
    image, label = _slab(wall_x=11)
    wall_index = 11 + 1  # grid coordinates include the one-voxel frame
    rules = get_growth_rules("liver")
    # A wall that never yields holds the tumor on its side, however long it grows.
    grid, automaton = _automaton(image, label, replace(rules, yield_pushes=10**4))
    automaton.grow(60)
    x = grid.coords(automaton.members)[0]
    assert (x < wall_index).all() and (x == wall_index - 1).any()  # it reached the wall
    assert (automaton.pushes > 0).any()
    # With the published yield, the tumor passes only through wall voxels that yielded.
    grid, automaton = _automaton(image, label, rules)
    automaton.grow(60)
    x = grid.coords(automaton.members)[0]
    in_wall = automaton.members[x == wall_index]
    assert (x > wall_index).any(), "the wall should have yielded somewhere after 60 iterations"
    assert (automaton.pushes[in_wall] >= rules.yield_pushes).all()
    assert (grid.tissue(in_wall) == 2).all()  # a yielded vessel is dense organ
    assert (grid.tissue(automaton.members) != OUTSIDE).all()


def test_growth_is_monotone_in_the_step_count():
    image, label = _slab()
    rules = get_growth_rules("liver")
    grid, automaton = _automaton(image, label, rules, seed=4)
    previous_members, previous_state = None, None
    for _ in range(5):
        automaton.grow(8)
        members, state = set(automaton.members.tolist()), automaton.state.clone()
        if previous_members is not None:
            assert previous_members < members  # strictly more tumor voxels
            assert (state >= previous_state).all()  # no population ever decreases while growing
        previous_members, previous_state = members, state


def test_necrosis_only_inside_the_tumor():
    image, label = _slab(size=(24, 24, 24))
    rules = get_growth_rules("liver")
    grid, automaton = _automaton(image, label, rules, seed=1)
    automaton.grow(30)
    tumor_before = automaton.state > 0
    automaton.necrosis(reach=2, spread_iterations=5, kill_counts=[12])
    dead = automaton.state == DEAD
    assert dead.sum() > 10
    assert not (dead & ~tumor_before).any()
    # End to end: necrotic (extra dark) voxels are labelled tumor.
    img, lab = _slab(size=(40, 40, 40), hu=90)
    rules_always = replace(rules, necrosis_probability=1.0, seeds=(1, 1), satellite_probability=0.0)
    res = grow_tumors(img, lab, np.random.default_rng(0), "medium", rules_always, spacing=(1.0, 1.0, 1.0),
                      grid_mm=2.0)
    assert res.plan.necrosis and res.plan.dead_voxels > 0
    core = res.necrosis_mask()
    assert core.any() and (res.label[core] == 2).all()  # the necrotic core lies inside the tumor label
    assert res.image[core].mean() < res.image[(res.label == 2) & ~core].mean()  # and is darker than the rest


def test_grid_maps_image_voxels_to_about_1_mm_voxels():
    image, label = _slab(size=(10, 10, 10))
    rules = get_growth_rules("liver")
    grid = SimGrid(image, label, 1, (0, 0, 0), (10, 10, 10), (2.0, 2.0, 3.0), rules.thresholds_hu, 1.0)
    assert grid.k == (2, 2, 3) and grid.spacing_mm == (1.0, 1.0, 1.0)
    coarse = SimGrid(image, label, 1, (0, 0, 0), (10, 10, 10), (1.0, 1.0, 1.0), rules.thresholds_hu, 2.0)
    assert coarse.m == (2, 2, 2) and coarse.spacing_mm == (2.0, 2.0, 2.0)
    for g in (grid, coarse):
        xyz = [torch.arange(10)] * 3
        (bx, by, bz), inside = g.to_box(g.from_box(*xyz))
        assert inside.all()
        # The grid voxel holding an image voxel's centre maps back to that voxel (or its merge partner).
        assert ((bx - xyz[0]).abs() < max(g.m)).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"synthesis": "blob"}, "unknown synthesis model"),
        ({"synthesis": "growth", "organ": "lung"}, "no rules for organ"),
        ({"synthesis": "growth", "surface_rim_mm": 3.0}, "ellipsoid model"),
        ({"synthesis": "growth", "tumor_prob": (0.5, 0.5)}, "one probability per tumor type"),
        ({"synthesis": "growth", "growth_grid_mm": 0.0}, "positive spacing"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TumorGenerated(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_cuda_tensors_are_painted_on_the_gpu(abdomen):
    image, label, affine = _organ_case(abdomen, "liver")
    data = {"image": _meta(image, affine, np.float32).cuda(), "label": _meta(label, affine, np.uint8).cuda()}

    def sample():
        t = TumorGenerated(prob=1.0, synthesis="growth", tumor_prob=_one_hot("liver", "medium"))
        t.set_random_state(seed=3)
        return t(dict(data))

    out, again = sample(), sample()
    assert out["image"].device.type == "cuda" and out["label"].device.type == "cuda"
    assert torch.equal(out["image"], again["image"]) and torch.equal(out["label"], again["label"])
    new_image, new_label = out["image"][0].cpu().numpy(), out["label"][0].cpu().numpy()
    assert (new_label == 2).any() and not ((new_image != image) & (label != 1)).any()
    assert set(np.unique(new_label).tolist()) == {0, 1, 2}


def test_device_moves_samples_painted_or_not(abdomen):
    """``device`` moves image and label first, also when the sample is not painted (batches stay on one device)."""
    image, label, _ = _organ_case(abdomen, "pancreas")
    for prob in (0.0, 1.0):
        t = TumorGenerated(prob=prob, organ="pancreas", synthesis="growth", device="cpu")
        t.set_random_state(seed=0)
        out = t({"image": image[None].copy(), "label": label[None].copy()})
        assert isinstance(out["image"], torch.Tensor) and out["image"].device.type == "cpu"
        assert bool((out["label"] == 2).any()) == (prob == 1.0)


def test_realistic_preset_replaces_the_growth_rules_and_keeps_the_grid_at_most_the_image_spacing():
    from tumor_synthesis.organs import preset_of

    original = TumorGenerated(synthesis="growth").tumor_generate.model
    realistic = TumorGenerated(synthesis="growth", preset="realistic").tumor_generate.model
    growth = dict(preset_of(get_organ_profile("liver"), "realistic").growth)
    assert growth.pop("grid_not_coarser_than_image") is True
    assert realistic.rules["liver"] == replace(get_growth_rules("liver"), **growth)
    assert original.rules["liver"] == get_growth_rules("liver")
    liver = get_organ_profile("liver")
    assert original._grid_mm(liver, (1.0, 1.0, 1.0)) == 2.0  # the default 2 mm grid
    assert realistic._grid_mm(liver, (1.0, 1.0, 1.0)) == 1.0 and realistic._grid_mm(liver, (3.0, 3.0, 3.0)) == 2.0
