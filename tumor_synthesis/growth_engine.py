"""One growth-model sample: seeds in the organ, the automaton, then its state painted in HU.

Order of work (torch, on the device of the image tensor; scalar draws from one
``numpy.random.Generator``, per-voxel draws from a ``torch.Generator`` seeded from it):

1. the organ's box (:func:`organ_box`; the same box as the ellipsoid engine's), or nothing
   when the label already holds a tumor or has no organ;
2. the size class's number of iterations N, the seeds (random organ voxels) and their
   satellites, on the simulation grid (:class:`growth.SimGrid`, about 1 mm);
3. N + 1 iterations of growth (:class:`growth.Automaton`), then, for large enough N and
   with probability 0.5, necrosis;
4. the state mapped to the image grid, over the tumor's box only: population ``P`` (state
   / 10, dead counted as saturated, averaged over the sub-voxels of an image voxel) and the
   dead fraction, both lightly blurred; the engine's texture ``T``
   (:func:`texture.texture_field`); inside the organ, vessels the tumor reached are first
   pulled towards the surrounding parenchyma (``image += P (parenchyma - image)``), then
   ``image -= T * difference * P + T * necrosis * dead``. Label: tumor where at least half
   of an image voxel's sub-voxels hold tumor, inside the organ.

Voxels outside the organ never change; nothing outside the tumor's box is read or written
after the automaton.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from tumor_synthesis.growth import Automaton, GrowthRules, SimGrid, flat_nonzero
from tumor_synthesis.intensity import TRUNCATE, merge_boxes
from tumor_synthesis.placement import scan_label
from tumor_synthesis.separable import apply_separable, blur_matrix, resize_matrix
from tumor_synthesis.texture import TextureConfig, TextureParams, sample_texture_params, texture_values

#: Default simulation grid (mm) of the transforms' growth model (published: 1 mm; 2 mm is about
#: 10 times faster, with the iteration count scaled to keep the sizes: :func:`grid_iterations`).
GROWTH_GRID_MM = 2.0
#: Candidate voxels drawn per round when looking for random organ voxels.
_SEED_CANDIDATES = 256


@dataclass(frozen=True)
class GrowthPlan:
    """What one growth sample drew and produced (for tests, previews and logs).

    Attributes:
        size: size class.
        steps: N (N + 1 growth iterations were run).
        seeds: image voxels (x, y, z) of the seeds.
        satellites: number of satellites planted (those on barriers dropped).
        necrosis: whether a necrotic core was grown.
        difference_hu: HU drop of a saturated tumor at full texture.
        necrosis_hu: further drop of dead voxels at full texture (0 without necrosis).
        texture: the texture parameters.
        sim_spacing: voxel size (mm) of the simulation grid.
        tumor_voxels: image voxels labelled tumor.
        dead_voxels: simulation voxels that died.
    """

    size: str
    steps: int
    seeds: tuple[tuple[int, int, int], ...]
    satellites: int
    necrosis: bool
    difference_hu: float
    necrosis_hu: float
    texture: TextureParams
    sim_spacing: tuple[float, float, float]
    tumor_voxels: int
    dead_voxels: int


@dataclass(frozen=True)
class GrowthResult:
    """Output of :func:`grow_tumors`.

    Attributes:
        image: (H, W, D) image (the input itself when in place).
        label: (H, W, D) label.
        plan: what was drawn.
        necrosis: per tumor box with dead voxels, a ``(slices, dead, resize, organ)`` piece
            from which :meth:`necrosis_mask` maps the core to image voxels when asked (the
            training pipeline never asks): the volume box ``slices``, the dead fraction on
            the grid, the grid-to-box resize matrix of each axis and the box's organ mask.
    """

    image: torch.Tensor
    label: torch.Tensor
    plan: GrowthPlan
    necrosis: tuple = ()

    def necrosis_mask(self) -> torch.Tensor:
        """(H, W, D) bool mask of the necrotic core: organ voxels at least half dead (empty without necrosis)."""
        mask = torch.zeros(self.label.shape, dtype=torch.bool, device=self.label.device)
        for slices, dead, resize, organ in self.necrosis:
            mask[slices] |= (apply_separable(dead, resize) >= 0.5) & organ
        return mask


def organ_box(label: torch.Tensor, organ_label: int, tumor_label: int, shared_label: bool):
    """``(start, stop)`` of the organ's working box, or None (tumor present, no or too thin organ).

    The box and the skip rule are the ellipsoid engine's (:func:`placement.scan_label`):
    skipped when any value exceeds the organ label, or with ``shared_label`` (multi-organ
    maps) when the organ's own tumor label is present.
    """
    if label.device.type == "cpu":
        lab = label.numpy()
        if shared_label:
            if (lab == tumor_label).any():
                return None
            lab = (lab == organ_label).view(np.uint8)
            organ_label = 1
        _, crop = scan_label(lab, organ_label)
        if crop is None:
            return None
        return tuple(crop.start), tuple(s + n for s, n in zip(crop.start, crop.mask.shape))
    # On a GPU: the same rule with torch reductions (no copy of the volume to the host).
    if shared_label:
        if bool((label == tumor_label).any()):
            return None
    elif float(label.max()) > organ_label:
        return None
    organ = label == organ_label
    start, stop = [], []
    for axis in range(3):
        hit = torch.nonzero(organ.any(dim=tuple(a for a in range(3) if a != axis))).flatten()
        if hit.numel() == 0:
            return None
        lo, hi = int(hit[0]) + 1, min(label.shape[axis], int(hit[-1]) - 1)
        if hi <= lo:
            return None
        start.append(lo)
        stop.append(hi)
    return tuple(start), tuple(stop)


def _random_organ_voxels(label: torch.Tensor, organ_label: int, start, stop, count: int,
                         rng: np.random.Generator) -> list[tuple]:
    """``count`` uniform random organ voxels of the box [start, stop) (rejection sampling, then an exact fallback).

    Candidates are read from the label directly, so the box is never scanned as a whole
    unless the organ fills too little of it for rejection sampling.
    """
    start, stop = np.asarray(start), np.asarray(stop)
    strides = np.array([label.shape[1] * label.shape[2], label.shape[2], 1])
    flat_label = label.reshape(-1)
    found: list[np.ndarray] = []
    n_found = 0
    for _ in range(8):
        candidates = rng.integers(start, stop, size=(_SEED_CANDIDATES, 3))
        hits = (flat_label[torch.as_tensor(candidates @ strides, device=label.device)] == organ_label).cpu().numpy()
        found.append(candidates[hits])
        n_found += int(hits.sum())
        if n_found >= count:
            break
    voxels = np.concatenate(found)
    if n_found < count:  # a sparse organ in its box: draw from the exact list
        box = label[tuple(slice(int(a), int(b)) for a, b in zip(start, stop))]
        exact = torch.nonzero(box == organ_label).cpu().numpy()
        if exact.shape[0] == 0:
            return []
        voxels = np.concatenate([voxels, start + exact[rng.integers(0, exact.shape[0], size=count - n_found)]])
    return [tuple(int(v) - int(s) for v, s in zip(voxel, start)) for voxel in voxels[:count]]


def grow_tumors(
    image: torch.Tensor,
    label: torch.Tensor,
    rng: np.random.Generator,
    size: str,
    rules: GrowthRules,
    spacing=(1.0, 1.0, 1.0),
    organ_label: int = 1,
    tumor_label: int = 2,
    texture: TextureConfig = TextureConfig(),
    inplace: bool = False,
    shared_label: bool = False,
    grid_mm: float = 1.0,
    case=None,
) -> GrowthResult | None:
    """Grow tumors of size class ``size`` in the organ of a healthy volume.

    Args:
        image: (H, W, D) CT in HU, any numeric dtype, on any device; integer images are
            rounded.
        label: (H, W, D) label (same device) with the organ as ``organ_label``.
        rng: source of every scalar draw and of the torch generator's seed.
        size: one of ``rules.size_names``.
        rules: the organ's growth rules.
        spacing: voxel size (sx, sy, sz) in mm.
        organ_label: label value of the organ.
        tumor_label: label value given to tumor voxels.
        texture: laws of the texture parameters (the organ profile's).
        inplace: change ``image`` and ``label`` instead of copies.
        shared_label: the label holds other organs (multi-organ convention): skipped only
            when this organ's tumor label is present.
        grid_mm: spacing (mm) of the simulation grid (published: 1). A coarser grid is
            faster; the iteration count, the satellites' reach and the necrosis are scaled
            to keep the tumors' physical sizes (:func:`grid_iterations`).
        case: this organ's per-case facts (:class:`case_data.OrganCase`) for this label,
            e.g. computed once per case; None finds the organ's box here (the same box).

    Returns:
        The result, or None (inputs untouched) when the label already holds a tumor or the
        organ is absent or too thin.
    """
    if image.shape != label.shape or image.ndim != 3:
        raise ValueError(f"image and label must be (H, W, D) tensors of one shape, got {tuple(image.shape)} "
                         f"and {tuple(label.shape)}")
    growth_size = rules.size(size)
    if case is not None:
        crop = case.crop
        box = None if crop is None else (tuple(crop.start), tuple(s + n for s, n in zip(crop.start, crop.mask.shape)))
    else:
        box = organ_box(label, organ_label, tumor_label, shared_label)
    if box is None:
        return None
    start, stop = box
    n_seeds = int(rng.integers(rules.seeds[0], rules.seeds[1] + 1))
    seed_voxels = _random_organ_voxels(label, organ_label, start, stop, n_seeds, rng)
    if not seed_voxels:
        return None
    out_image, out_label = (image, label) if inplace else (image.clone(), label.clone())
    # The automaton reads flat indices: it works on contiguous tensors (copied back at the end if needed).
    image, label = out_image.contiguous(), out_label.contiguous()
    steps = int(rng.integers(*growth_size.steps))
    generator = torch.Generator(device=image.device)
    generator.manual_seed(int(rng.integers(0, 2**63 - 1)))

    # The tissue map depends on the case alone: read once per case when its facts come along.
    tissue_key = ("growth tissue", tuple(float(s) for s in spacing), float(grid_mm), rules.thresholds_hu,
                  str(image.device))
    tissue = None if case is None else case.values.get(tissue_key)
    grid = SimGrid(image, label, organ_label, start, tuple(b - a for a, b in zip(start, stop)), spacing,
                   rules.thresholds_hu, grid_mm, tissue=tissue)
    if case is not None and tissue is None and grid.dense:
        case.values[tissue_key] = grid.cache.clone()
    scale = float(np.mean(grid.spacing_mm))  # mm per grid voxel
    device = image.device
    seeds = grid.from_box(*(torch.tensor([v[a] for v in seed_voxels], device=device) for a in range(3)))
    satellites = _satellites(grid, seeds, rules, rng)
    automaton = Automaton(grid, rules, generator)
    automaton.plant(seeds, satellites)
    automaton.grow(grid_iterations(steps + 1, scale))
    necrosis = steps > rules.necrosis_min_steps and bool(rng.random() < rules.necrosis_probability)
    if necrosis:
        counts = [int(rng.integers(rules.necrosis_seeds[0], rules.necrosis_seeds[1] + 1))
                  for _ in range(automaton.seeds.numel())]
        # Published in 1 mm voxels: the reach (N // 10 - 2) and the spreading of death (one
        # voxel an iteration, N // 7 + 1 iterations), converted to grid voxels.
        automaton.necrosis(round((steps // 10 - 2) / scale), max(1, round((steps // 7 + 1) / scale)), counts)

    difference = float(rng.uniform(*rules.difference_hu))
    necrosis_hu = float(rng.uniform(*rules.necrosis_hu)) if necrosis else 0.0
    tex_params = sample_texture_params(rng, texture)
    blur_mm = float(rng.uniform(*rules.blur_mm))
    necrotic_parts: list = []
    # The case's organ mask over the organ's box is this label's (the case matches the label),
    # and a quarter of a float label's bytes to read; on a GPU the label is read there.
    organ_mask = case.crop.mask if case is not None and image.device.type == "cpu" else None
    tumor_voxels = _paint(necrotic_parts, image, label, organ_mask, grid, automaton, start, spacing, organ_label,
                          tumor_label, difference, necrosis_hu, tex_params, blur_mm, rules, rng)
    for out, work in ((out_image, image), (out_label, label)):
        if out.data_ptr() != work.data_ptr():
            out.copy_(work)
    plan = GrowthPlan(
        size=size, steps=steps,
        seeds=tuple(tuple(int(s) + int(v) for s, v in zip(start, voxel)) for voxel in seed_voxels),
        satellites=int(satellites.numel()), necrosis=necrosis, difference_hu=difference,
        necrosis_hu=necrosis_hu, texture=tex_params, sim_spacing=grid.spacing_mm,
        tumor_voxels=tumor_voxels, dead_voxels=int((automaton.state[automaton.members] == -1).sum()),
    )
    return GrowthResult(out_image, out_label, plan, tuple(necrotic_parts))


#: Growth iterations on a grid of ``h`` mm per published (1 mm) iteration: ``h ** -GRID_EXPONENT``.
#: The front advances about one grid voxel per a fixed number of iterations, so the physical
#: radius after n iterations grows like ``h * n``. Measured on the 1 mm phantom liver (same N,
#: 12 pairs from N = 6 to 139): with exponent 1 the radii on the 2 mm grid came out 5-10 %
#: below those on the 1 mm grid for N >= 16; 0.9 runs 7 % more iterations to close that.
#: Compare ``benchmarks/bench_synthesis.py --synthesis growth --growth-grid-mm 1`` and ``2``.
GRID_EXPONENT = 0.9


def grid_iterations(iterations: int, grid_spacing_mm: float) -> int:
    """Iterations on a grid of ``grid_spacing_mm`` that grow as far (mm) as ``iterations`` at 1 mm."""
    return max(1, int(round(iterations * grid_spacing_mm ** -GRID_EXPONENT)))


def _satellites(grid: SimGrid, seeds: torch.Tensor, rules: GrowthRules, rng: np.random.Generator) -> torch.Tensor:
    """Satellite seeds: for each seed with probability 1/3, 3-9 voxels within the reach (per axis)."""
    reach = [max(1, int(round(rules.satellite_reach_mm / h))) for h in grid.spacing_mm]
    out = []
    coords = [c.cpu().numpy() for c in grid.coords(seeds)]
    for i in range(seeds.numel()):
        if not rng.random() < rules.satellite_probability:
            continue
        n = int(rng.integers(rules.satellites[0], rules.satellites[1] + 1))
        points = [np.clip(coords[a][i] + rng.integers(-reach[a], reach[a] + 1, size=n), 0, grid.shape[a] - 1)
                  for a in range(3)]
        out.append(points)
    if not out:
        return torch.zeros(0, dtype=torch.int64, device=grid.device)
    xyz = [torch.as_tensor(np.concatenate([p[a] for p in out]), device=grid.device) for a in range(3)]
    return grid.flat(*xyz)


#: Edge (image voxels) of the coarse cells that group tumor voxels into separately painted
#: boxes: 2 ** _CLUSTER_SHIFT, so that a shift bins the (nonnegative) coordinates, at a tenth
#: of the cost of an int64 division on the CPU.
_CLUSTER_SHIFT = 3
_CLUSTER_CELL = 1 << _CLUSTER_SHIFT


def _tumor_boxes(coords, margin, limit) -> list[tuple[np.ndarray, np.ndarray]]:
    """Boxes (image-box voxels, ``hi`` exclusive) around the separate tumors, grown by ``margin``.

    Tumor voxels are binned into coarse cells; 26-connected groups of occupied cells are one
    tumor each (seeds far apart give far-apart boxes, not one box over the whole organ);
    boxes that overlap once grown by the blur margin are merged.
    """
    cells = [c >> _CLUSTER_SHIFT for c in coords]
    dims = [int(n) // _CLUSTER_CELL + 1 for n in limit]
    member_cells = (cells[0] * dims[1] + cells[1]) * dims[2] + cells[2]
    occupied = np.zeros(dims, dtype=bool)
    occupied.reshape(-1)[member_cells.cpu().numpy()] = True  # repeated cells set the same flag
    groups, n_groups = ndimage.label(occupied, structure=np.ones((3, 3, 3), dtype=bool))
    group_of = torch.as_tensor(groups.reshape(-1), device=coords[0].device)[member_cells] - 1
    boxes = []
    for axis, c in enumerate(coords):
        lo = torch.full((n_groups,), int(limit[axis]), dtype=c.dtype, device=c.device)
        hi = torch.full((n_groups,), -1, dtype=c.dtype, device=c.device)
        lo = lo.scatter_reduce(0, group_of, c, reduce="amin")
        hi = hi.scatter_reduce(0, group_of, c, reduce="amax")
        boxes.append((lo.cpu().numpy(), hi.cpu().numpy()))
    limit = np.asarray(limit)
    grown = []
    for g in range(n_groups):
        lo = np.array([boxes[a][0][g] for a in range(3)]) - margin
        hi = np.array([boxes[a][1][g] for a in range(3)]) + 1 + margin
        grown.append((np.maximum(lo, 0), np.minimum(hi, limit)))
    return [(lo, hi) for lo, hi, _ in merge_boxes(grown)]


# Inference mode, as the automaton's growth: no autograd bookkeeping per operation; the
# image and label are written in place, and nothing it creates reaches the caller's autograd.
@torch.inference_mode()
def _paint(necrotic_parts: list, image, label, organ_mask, grid: SimGrid, automaton: Automaton, start, spacing,
           organ_label, tumor_label,
           difference, necrosis_hu, tex_params, blur_mm, rules: GrowthRules, rng) -> int:
    """Map the automaton's state onto the image (see the module docstring); returns the tumor voxels.

    ``organ_mask``: the organ over the grid's box (numpy bool, :attr:`placement.OrganCrop.mask`),
    or None to read it from the label.

    Per tumor box, the grid's population, occupancy and necrosis are laid out densely at the
    grid's resolution and resampled to the image voxels (trilinear; the identity when the
    grid is the image grid): an image voxel of several grid voxels gets their mean, a grid
    voxel of several image voxels a smooth interpolation instead of blocks.
    """
    members = automaton.members
    if members.numel() == 0:
        return 0
    coords = grid.coords(members)
    centres = grid.box_centres(coords)
    inner = [c - 1 for c in coords]
    sigma_vox = [blur_mm / s for s in spacing]
    margin = np.array([int(TRUNCATE * s + 0.5) for s in sigma_vox]) + 1
    state = automaton.state[members]
    dead = state == -1
    fields = [torch.where(dead, 10, state).to(torch.float32) / 10.0, torch.ones_like(state, dtype=torch.float32)]
    if bool(dead.any()):
        fields.append(dead.to(torch.float32))
    fields = torch.stack(fields)
    k, m = np.array(grid.k), np.array(grid.m)
    painted = 0
    for lo, hi in _tumor_boxes(centres, margin, grid.box):
        # Align the image box to whole grid voxels: [lo, hi) image voxels <-> [glo, ghi) grid voxels.
        alo, ahi = lo // m * m, -(-hi // m) * m
        glo, ghi = alo * k // m, ahi * k // m
        gshape = [int(n) for n in ghi - glo]
        inside = torch.ones_like(dead)
        for c, a, b in zip(inner, glo, ghi):
            inside &= (c >= int(a)) & (c < int(b))
        inside = flat_nonzero(inside)
        x, y, z = (c.index_select(0, inside) - int(a) for c, a in zip(inner, glo))
        dense = torch.zeros((len(fields), gshape[0] * gshape[1] * gshape[2]), dtype=torch.float32,
                            device=image.device)
        dense.index_add_(1, (x * gshape[1] + y) * gshape[2] + z, fields.index_select(1, inside))
        dense = dense.reshape(len(fields), *gshape)
        # Resample to the image voxels of [lo, hi) and blur there, one matrix per axis: the
        # trilinear resize (torch's, align_corners=False) cut to the box, and the blur after it.
        resize = [resize_matrix(int(b - a), g)[int(c - a):int(e - a)] for a, b, c, e, g in zip(alo, ahi, lo, hi, gshape)]
        resize_blur = [blur_matrix(r.shape[0], s, "nearest") @ r for r, s in zip(resize, sigma_vox)]
        soft = apply_separable(dense[0], resize_blur)
        occupied = apply_separable(dense[1], resize) >= 0.5
        sl = tuple(slice(s + int(a), s + int(b)) for s, a, b in zip(start, lo, hi))
        if organ_mask is None:
            organ = label[sl] == organ_label
        else:
            organ = torch.from_numpy(organ_mask[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))])
        necrotic_soft = None
        if len(fields) > 2:
            necrotic_parts.append((sl, dense[2], resize, organ))
            necrotic_soft = apply_separable(dense[2], resize_blur)
        painted += _paint_box(image[sl], label[sl], organ, soft, occupied, necrotic_soft, spacing,
                              tumor_label, difference, necrosis_hu, tex_params, rules, rng)
    return painted


#: Image dtypes whose every value survives a round trip through float32: a painted box is
#: written back whole (one copy), not voxel by voxel.
_FLOAT32_ROUND_TRIP = (torch.float32, torch.float16, torch.bfloat16, torch.int16, torch.int8, torch.uint8)


def _paint_box(image_box, label_box, organ, soft, occupied, necrotic_soft, spacing, tumor_label,
               difference, necrosis_hu, tex_params, rules: GrowthRules, rng) -> int:
    """Paint one tumor box in place: vessels pulled to the parenchyma, then the textured HU drop.

    ``organ``: the organ's voxels (bool), ``soft``: the blurred population (0..1),
    ``occupied``: the tumor's voxels (bool), ``necrotic_soft``: the blurred necrotic core
    (0..1) or None; all over the box.
    """
    tumor = occupied & organ
    # Only organ voxels that the blurred population reaches change (the necrotic core lies
    # inside the population): the texture and the arithmetic run on those alone, in the
    # order of their flat indices (the same values as over the whole box).
    changed = organ & (soft > 0)
    flat = flat_nonzero(changed)
    tex = torch.from_numpy(texture_values(tuple(soft.shape), spacing, tex_params, rng, flat.cpu().numpy()))
    box = image_box.to(torch.float32, memory_format=torch.contiguous_format, copy=True)  # the box is a view
    values = box.reshape(-1).index_select(0, flat)
    reach = soft.reshape(-1).index_select(0, flat)
    vessel = flat_nonzero(values >= rules.levels_hu[1])  # positions in values (few: vessels are thin)
    if vessel.numel():  # only then: the median costs
        # The parenchyma's median HU, from every third voxel along each axis (27 times fewer to sort).
        sub = box[(slice(None, None, 3),) * 3]
        parenchyma = sub.masked_select(organ[(slice(None, None, 3),) * 3] & (sub < rules.levels_hu[1]))
        fill = float(parenchyma.median()) if parenchyma.numel() else float(np.mean(rules.thresholds_hu[:2]))
        hu, pull = values.index_select(0, vessel), reach.index_select(0, vessel)
        values.index_copy_(0, vessel, hu + pull * (fill - hu))
    drop = reach.mul_(difference)
    if necrosis_hu > 0 and necrotic_soft is not None:
        drop.add_(necrotic_soft.reshape(-1).index_select(0, flat), alpha=necrosis_hu)
    values.sub_(drop.mul_(tex.to(values.device)))
    if not image_box.dtype.is_floating_point:
        info = torch.iinfo(image_box.dtype)
        values = values.round().clamp(info.min, info.max)
    box.reshape(-1).index_copy_(0, flat, values)
    if image_box.dtype in _FLOAT32_ROUND_TRIP:  # the unchanged voxels come back as they were
        image_box.copy_(box)
    else:
        image_box.copy_(torch.where(changed, box.to(image_box.dtype), image_box))
    label_box.masked_fill_(tumor, tumor_label)
    return int(torch.count_nonzero(tumor))


