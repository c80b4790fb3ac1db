"""The growth automaton's iteration against the rules written out plainly, with the same random draws."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tumor_synthesis import get_growth_rules
from tumor_synthesis.growth import (
    DEAD,
    NEIGHBOUR_OFFSETS,
    OUTSIDE,
    PRUNE_EVERY,
    VESSEL,
    Automaton,
    SimGrid,
    flat_nonzero,
)


def _organ_with_vessels(size=(22, 22, 22)):
    """An organ box (all tissue classes, a 2-voxel rim outside) crossed by a vessel wall with a gap."""
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.choice([95.0, 130.0, 150.0], p=[0.8, 0.1, 0.1], size=size).astype(np.float32))
    label = torch.zeros(size, dtype=torch.uint8)
    label[2:-2, 2:-2, 2:-2] = 1
    image[12, :, :] = 220.0  # a vessel wall (barrier that yields under pushes)
    image[12, 9:12, 9:12] = 95.0  # with a gap
    return image, label


def _reference_step(automaton: Automaton, tissue: torch.Tensor, gen: torch.Generator):
    """One iteration from the module's rules, voxel by voxel: (state, pushes, tissue, active) after it.

    ``tissue``: the whole tissue map before it. The tries of every spreading cell read the
    state at the start of the iteration; the first try that is not skipped counts;
    proliferation, then the summed invasions clamped at saturation, then the pushes (a vessel
    yields into class 2).
    """
    rules, grid = automaton.rules, automaton.grid
    state = automaton.state.clamp(max=rules.saturation)  # the rules' state (see Automaton.step)
    pushes, tissue = automaton.pushes.clone(), tissue.clone()
    snapshot = state.clone()
    active = automaton.active.tolist()
    sources = [v for v in active if snapshot[v] >= rules.spread_state]
    shape = (len(sources), rules.spread_tries)
    pick = torch.randint(len(NEIGHBOUR_OFFSETS), shape, generator=gen)
    draw = torch.rand(shape, generator=gen)
    offsets = grid.offsets.tolist()
    invaded, pushed = [], []
    for i, source in enumerate(sources):
        for t in range(rules.spread_tries):
            target = source + offsets[int(pick[i, t])]
            kind, level = int(tissue[target]), int(snapshot[target])
            if kind == VESSEL:
                pushed.append(target)
                break
            if kind == OUTSIDE:
                break
            if level >= rules.saturation or level == DEAD:
                continue
            if float(draw[i, t]) < rules.invasion_probability[kind]:
                invaded.append(target)
                break
    for v in active:
        if 0 < int(state[v]) < rules.saturation:
            state[v] += 1
    fresh = sorted({v for v in invaded if int(state[v]) == 0})
    for v in invaded:
        state[v] += 1
    for v in set(invaded):
        state[v] = min(int(state[v]), rules.saturation)
    for v in pushed:
        pushes[v] += 1
    for v in set(pushed):
        if int(pushes[v]) >= rules.yield_pushes:
            tissue[v] = 2
    return state, pushes, tissue, active + fresh


def _reference_prune(state, tissue, active, grid, rules):
    """The active list without its inert voxels: saturated, every neighbour saturated, dead or outside."""
    def closed(v):
        return int(state[v]) >= rules.saturation or int(state[v]) == DEAD or int(tissue[v]) == OUTSIDE

    offsets = grid.offsets.tolist()
    return [v for v in active if not (int(state[v]) >= rules.saturation and all(closed(v + o) for o in offsets))]


def _grid(image, label, rules):
    return SimGrid(image, label, 1, (0, 0, 0), tuple(image.shape), (1.0, 1.0, 1.0), rules.thresholds_hu, 1.0)


def _automaton(rules, seed, voxels) -> Automaton:
    """An automaton on the 1 mm grid of :func:`_organ_with_vessels`, planted at voxels ((x, ..), (y, ..), (z, ..))."""
    grid = _grid(*_organ_with_vessels(), rules)
    automaton = Automaton(grid, rules, torch.Generator().manual_seed(seed))
    automaton.plant(grid.from_box(*(torch.tensor(v) for v in voxels)), torch.zeros(0, dtype=torch.int64))
    return automaton


def _iterate_both(automaton: Automaton, tissue: torch.Tensor):
    """One iteration of the automaton and of the reference from the same draws, the prune's when due.

    Returns the reference's state, pushes, tissue map and active list after it, and whether
    its prune dropped voxels. A lazily read grid knows the voxels it has looked at only and
    takes the others for open: it prunes less, which changes nothing either (an inert voxel's
    tries are skipped or end at the border).
    """
    reference_gen = torch.Generator()
    reference_gen.set_state(automaton.gen.get_state())
    state, pushes, tissue, active = _reference_step(automaton, tissue, reference_gen)
    automaton.step()
    dropped = False
    if automaton._iterations % PRUNE_EVERY == 0:
        seen = torch.where(automaton.grid.cache >= 0, tissue, torch.full_like(tissue, -1))
        pruned = _reference_prune(state, seen, active, automaton.grid, automaton.rules)
        dropped, active = len(pruned) < len(active), pruned
    return state, pushes, tissue, active, dropped


@pytest.mark.parametrize("seed, tissue_read", [(0, "whole"), (1, "whole"), (2, "lazily")])
def test_iterations_follow_the_rules_voxel_by_voxel(seed, tissue_read, monkeypatch):
    rules = replace(get_growth_rules("liver"), yield_pushes=2)
    tissue = _grid(*_organ_with_vessels(), rules).cache  # the whole map, read at once
    if tissue_read == "lazily":  # the automaton's grid reads the voxels it looks at only
        monkeypatch.setattr("tumor_synthesis.growth.DENSE_TISSUE_MAX_VOXELS", 0)
    automaton = _automaton(rules, seed, ((8, 15), (10, 6), (10, 14)))
    grid = automaton.grid
    assert grid.dense == (tissue_read == "whole")
    vessels = tissue == VESSEL
    saw_pruned = False
    for _ in range(10 * PRUNE_EVERY):
        state, pushes, tissue, active, dropped = _iterate_both(automaton, tissue)
        saw_pruned |= dropped
        # Between iterations a state may pass saturation (it reads as saturated); clamped, it is the rules'.
        assert torch.equal(automaton.state.clamp(max=rules.saturation), state)
        assert torch.equal(automaton.pushes, pushes)
        read = grid.cache >= 0
        assert torch.equal(grid.cache[read], tissue[read])
        assert automaton.active.tolist() == active
        # Only the active list's states are clamped later: every other voxel holds the rules' state now.
        idle = torch.ones_like(state, dtype=torch.bool)
        idle[automaton.active] = False
        assert torch.equal(automaton.state[idle], state[idle])
    assert saw_pruned  # the scenario reached the prune
    assert (tissue[vessels] == 2).any()  # and a vessel that yielded
    assert bool(read.all()) == (tissue_read == "whole")


def test_iterations_after_necrosis_follow_the_rules():
    rules = get_growth_rules("liver")
    automaton = _automaton(rules, 2, ((7,), (10,), (10,)))
    automaton.grow(14)
    automaton.necrosis(reach=2, spread_iterations=2, kill_counts=[10])
    assert (automaton.state == DEAD).any()
    for _ in range(2 * PRUNE_EVERY):  # dead neighbours are skipped by the tries and closed for the prune
        state, _, _, active, _ = _iterate_both(automaton, automaton.grid.cache)
        assert torch.equal(automaton.state.clamp(max=rules.saturation), state)
        assert automaton.active.tolist() == active


def test_grown_states_never_exceed_saturation():
    rules = get_growth_rules("liver")
    automaton = _automaton(rules, 3, ((8,), (10,), (10,)))
    passed = False
    for _ in range(16):
        automaton.step()
        passed |= bool((automaton.state > rules.saturation).any())
    assert passed  # within an iteration a voxel may be invaded past saturation
    for iterations in (1, PRUNE_EVERY, 7):  # ends on and off the prune's iterations
        automaton.grow(iterations)
        assert int(automaton.state.max()) == rules.saturation
        assert int(automaton.state[automaton.members].min()) >= 1


@pytest.mark.parametrize("changes, message", [
    ({"saturation": 201}, "saturation <= 200"),
    ({"seed_state": 11}, "seed_state <= saturation"),
    ({"seed_state": 0}, "0 < seed_state"),
])
def test_growth_rules_refuse_states_the_automaton_cannot_hold(changes, message):
    with pytest.raises(ValueError, match=message):
        replace(get_growth_rules("liver"), **changes)


@pytest.mark.parametrize("shape, density", [((0,), 0.5), ((7,), 0.0), ((5, 6, 7), 0.3), ((40, 30, 20), 1.0),
                                            ((33, 17, 65), 0.6)])
def test_flat_nonzero_matches_torch_nonzero(shape, density):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(1)) < density
    flat = flat_nonzero(mask)
    assert flat.dtype == torch.int64
    assert torch.equal(flat, torch.nonzero(mask.reshape(-1)).flatten())


def test_prune_drops_inert_voxels_at_saturation():
    rules = get_growth_rules("liver")
    automaton = _automaton(rules, 0, ((6,), (6,), (6,)))
    grid = automaton.grid
    centre = grid.from_box(torch.tensor([6]), torch.tensor([6]), torch.tensor([6]))
    automaton.state[centre + grid.offsets] = rules.saturation
    automaton.state[centre] = rules.saturation + 3  # invaded past saturation in the iteration just run
    automaton.active = centre
    automaton._prune()
    assert automaton.active.numel() == 0  # inert: every neighbour saturated
    assert int(automaton.state[centre]) == rules.saturation  # and no longer above saturation
