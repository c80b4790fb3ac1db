"""Growth-model tumors (as Pixel2Cancer, MICCAI 2024): the cellular automaton, in plain torch.

A tumor grows voxel by voxel on a grid of about 1 mm (the *simulation grid*, see
:class:`SimGrid`). Every voxel has a state:

* ``0`` healthy organ, ``1 .. 10`` tumor cell population (10 = saturated), ``-1`` dead;
* a tissue class read from the image's HU (:meth:`SimGrid.tissue`): with the organ's
  levels ``L`` and ``O`` and ``d = (O - L) / 3``, class 0 (density ``L``) below ``L + d``,
  class 1 (``L + d``) below ``L + 2d``, class 2 (``L + 2d``) below ``O``; barriers: class 3
  (:data:`VESSEL`) for bright organ voxels (``HU >= O``) and class 4 (:data:`OUTSIDE`) for
  everything outside the organ;
* a pressure count for vessel voxels: each push of a neighbouring tumor cell adds one, and
  after :attr:`GrowthRules.yield_pushes` pushes (the published state exceeding ``O + 2``)
  the vessel yields and becomes organ of class 2 (mass effect).

One iteration (:meth:`Automaton.step`), for every tumor voxel of state ``s``: ``s < 5``
proliferates (``s += 1``); ``5 <= s < 10`` proliferates and spreads; ``s = 10`` spreads.
Spreading makes up to :attr:`GrowthRules.spread_tries` tries, each at a uniformly random
voxel of the 26-neighbourhood: a saturated or dead neighbour is skipped (next try); a
barrier is pushed (and the tries end); an organ neighbour of class c is invaded
(``state += 1``) with probability ``invasion_probability[c]`` (1, 0.3, 0.1; the tries end)
or else the next try follows.

**Synchronous update (how this differs from the published kernel).** The published CUDA
kernel updates the state in place, one thread per voxel, with atomic additions: a cell may
see a neighbour that another thread has already changed in the same iteration. Here every
decision of an iteration reads the state at the start of that iteration (one snapshot,
all voxels at once), and the changes are applied together afterwards. Conflicts: several
cells may pick the same neighbour; their increments are *summed* (an index-add: the same
total as the atomic additions), then the population is clamped to 10, and pushes on a
vessel are summed the same way. Differences that follow: within one iteration a neighbour
that becomes saturated is still counted as unsaturated by the later tries of other cells
(the published kernel would skip it), so a cell never wastes a try on a voxel that
saturated during the same iteration, and a new tumor voxel cannot spread before the next
iteration (in the kernel it might, depending on the thread order). The clamp is at 10
instead of the published ``O + 2`` on every state (there a voxel can briefly hold more than
10 cells). ``tests/tumor_synthesis/test_growth.py`` checks the consequences the model needs: the
size grows with the number of iterations, barriers that have not yielded are never
crossed, and necrosis stays inside the tumor; ``benchmarks/bench_synthesis.py
--synthesis growth`` prints the equivalent radius per size class.

Outside the organ is a barrier that never yields (published: it yields like a vessel, but
whatever grows there is cut off by the organ mask, so only a tumor that would grow out and
back in differs).

Necrosis (:meth:`Automaton.necrosis`): the seeds die, then a few random saturated voxels
near each seed, then for a number of iterations every dead voxel kills one random
saturated voxel of its 26-neighbourhood (chosen uniformly among the saturated ones).

Only the voxels that can still change anything are visited: a saturated voxel whose 26
neighbours are all saturated or dead is *inert* (every try would be skipped, forever,
since populations only grow during growth) and is dropped from the active list; this is
exact, not an approximation, and makes an iteration cost the tumor's surface, not its
volume. All per-voxel random draws come from one ``torch.Generator``, so a sample is
reproducible on its device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: The 26 neighbour offsets (dx, dy, dz) of the 3x3x3 neighbourhood, the centre excluded.
NEIGHBOUR_OFFSETS = tuple(
    (dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1) if (dx, dy, dz) != (0, 0, 0)
)
#: Positions in :data:`NEIGHBOUR_OFFSETS` of the six face neighbours, and of the twenty others.
FACE_NEIGHBOURS = [k for k, o in enumerate(NEIGHBOUR_OFFSETS) if sum(map(abs, o)) == 1]
OTHER_NEIGHBOURS = [k for k in range(len(NEIGHBOUR_OFFSETS)) if k not in FACE_NEIGHBOURS]
#: Tissue class of vessels (bright organ voxels): barriers that yield under pressure.
VESSEL = 3
#: Tissue class of everything outside the organ: a barrier that never yields.
OUTSIDE = 4
#: State of a dead (necrotic) voxel.
DEAD = -1
#: How a spreading try ends (:meth:`Automaton.step`): the neighbour is invaded, a vessel is
#: pushed, or the organ's border stops it.
INVADED, PUSHED, BLOCKED = 1, 2, 3
#: Largest saturated state: a state may pass saturation by one per neighbour (26) within an
#: iteration, and read as uint8 it must stay below 255, which is :data:`DEAD`'s.
MAX_SATURATION = 200
#: Prune inert voxels from the active list every this many iterations.
PRUNE_EVERY = 4
#: Grids of at most this many voxels read their whole tissue map at once (a few strided reads
#: of the image, cheaper than the per-iteration lookups); larger ones read it lazily.
DENSE_TISSUE_MAX_VOXELS = 4_000_000


def flat_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """int64 flat (C-order) indices of the True elements of a bool tensor, on its device.

    On the CPU numpy finds them: ``torch.nonzero`` costs 5 to 9 times as much there (0.9
    against 0.1 ms for a 52 x 59 x 63 box half full, one thread).
    """
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return torch.nonzero(mask.reshape(-1)).flatten()


@dataclass(frozen=True)
class GrowthSize:
    """A size class of the growth model: a range of iteration counts.

    Attributes:
        name: size class name (tiny, small, medium, large).
        steps: the number of growth iterations N is drawn uniformly from ``[lo, hi)``
            (N + 1 iterations are run, as published).
    """

    name: str
    steps: tuple[int, int]


@dataclass(frozen=True)
class GrowthRules:
    """The growth model's parameters for one organ (published values by default).

    Attributes:
        organ: organ name.
        levels_hu: (L, O): the density levels in HU (liver and pancreas 100, 160; kidney
            140, 200); HU >= O inside the organ is a vessel (barrier).
        sizes: size classes, in increasing N; together they cover the published range of
            N (liver [5, 150), pancreas and kidney [5, 80)).
        size_probabilities: default probability of each size class: proportional to the
            width of its N range, so that the default mix is the published uniform N.
        necrosis_min_steps: tumors grown with N above this may die (liver 50, pancreas
            and kidney 30).
        necrosis_probability: probability that such a tumor develops a necrotic core.
        necrosis_seeds: (lo, hi) inclusive count of random saturated voxels killed near
            each seed (within ``N // 10 - 2`` voxels).
        seeds: (lo, hi) inclusive count of seeds (random organ voxels, state 5).
        satellite_probability: probability that a seed gets satellites.
        satellites: (lo, hi) inclusive count of a seed's satellites.
        satellite_reach_mm: satellites lie within this distance (per axis) of their seed.
        invasion_probability: probability that a spreading cell invades an organ voxel of
            tissue class 0, 1, 2.
        spread_tries: tries per spreading cell and iteration.
        seed_state: state of a seed (and of a satellite).
        spread_state: a cell spreads from this state on.
        saturation: saturated state (no more proliferation; skipped by spreading cells).
        yield_pushes: a vessel yields after this many pushes.
        difference_hu: uniform range of the HU drop of a saturated tumor at full texture.
        necrosis_hu: uniform range of the further HU drop of necrosis at full texture.
        blur_mm: uniform range of the sigma (mm) of the light blur of the population and
            of the necrosis mask before they scale the HU change.
    """

    organ: str
    levels_hu: tuple[float, float]
    sizes: tuple[GrowthSize, ...]
    size_probabilities: tuple[float, ...]
    necrosis_min_steps: int
    necrosis_probability: float = 0.5
    necrosis_seeds: tuple[int, int] = (5, 19)
    seeds: tuple[int, int] = (1, 9)
    satellite_probability: float = 1.0 / 3.0
    satellites: tuple[int, int] = (3, 9)
    satellite_reach_mm: float = 10.0
    invasion_probability: tuple[float, float, float] = (1.0, 0.3, 0.1)
    spread_tries: int = 3
    seed_state: int = 5
    spread_state: int = 5
    saturation: int = 10
    yield_pushes: int = 3
    difference_hu: tuple[float, float] = (65.0, 145.0)
    necrosis_hu: tuple[float, float] = (90.0, 110.0)
    blur_mm: tuple[float, float] = (0.5, 1.0)

    def __post_init__(self):
        if len(self.sizes) != len(self.size_probabilities):
            raise ValueError(f"growth rules {self.organ!r}: one probability per size class is needed")
        for size in self.sizes:
            if not 0 < size.steps[0] < size.steps[1]:
                raise ValueError(f"growth rules {self.organ!r}: size {size.name!r} needs 0 < lo < hi steps")
        if not 0 < self.seed_state <= self.saturation <= MAX_SATURATION:
            raise ValueError(f"growth rules {self.organ!r}: need 0 < seed_state <= saturation <= {MAX_SATURATION}, "
                             f"got {self.seed_state} and {self.saturation}")
        low, high = self.levels_hu
        if not high > low:
            raise ValueError(f"growth rules {self.organ!r}: levels_hu needs L < O, got {self.levels_hu}")

    @property
    def size_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sizes)

    @property
    def thresholds_hu(self) -> tuple[float, float, float]:
        """HU where the tissue class goes from 0 to 1, 1 to 2 and 2 to barrier (L + d, L + 2d, O)."""
        low, high = self.levels_hu
        d = (high - low) / 3.0
        return low + d, low + 2.0 * d, high

    def size(self, name: str) -> GrowthSize:
        for s in self.sizes:
            if s.name == name:
                return s
        raise ValueError(f"growth rules {self.organ!r}: unknown size class {name!r}; choose one of {self.size_names}")


def _sizes(bounds: tuple[int, ...]) -> tuple[tuple[GrowthSize, ...], tuple[float, ...]]:
    names = ("tiny", "small", "medium", "large")
    sizes = tuple(GrowthSize(n, (a, b)) for n, a, b in zip(names, bounds[:-1], bounds[1:]))
    total = bounds[-1] - bounds[0]
    return sizes, tuple((b - a) / total for a, b in zip(bounds[:-1], bounds[1:]))


# Size-class boundaries in N: chosen from the equivalent radius the automaton reaches
# (printed by ``benchmarks/bench_synthesis.py --synthesis growth``) so that the classes
# straddle the ellipsoid model's radii (4, 8, 16, 32 mm) as far as the published N range
# reaches.
_LIVER_SIZES = _sizes((5, 20, 50, 100, 150))
_SMALL_ORGAN_SIZES = _sizes((5, 15, 30, 55, 80))

#: Per-organ rules. No lung: Pixel2Cancer has no rules for it, and its density levels (soft
#: tissue HU) mean nothing in aerated lung, where nodules are brighter than the organ.
GROWTH_RULES: dict[str, GrowthRules] = {
    "liver": GrowthRules("liver", (100.0, 160.0), *_LIVER_SIZES, necrosis_min_steps=50),
    "pancreas": GrowthRules("pancreas", (100.0, 160.0), *_SMALL_ORGAN_SIZES, necrosis_min_steps=30),
    "kidney": GrowthRules("kidney", (140.0, 200.0), *_SMALL_ORGAN_SIZES, necrosis_min_steps=30),
}


def get_growth_rules(organ: str) -> GrowthRules:
    """The growth rules of ``organ``.

    Raises:
        ValueError: no growth rules for that organ (lung: see :data:`GROWTH_RULES`).
    """
    key = str(organ).strip().lower()
    if key not in GROWTH_RULES:
        raise ValueError(f"the growth model has no rules for organ {organ!r} (it grows tumors in soft tissue: "
                         f"{list(GROWTH_RULES)})")
    return GROWTH_RULES[key]


class SimGrid:
    """The simulation grid over an organ box and how it reads tissue from the image.

    The grid's voxels are about ``grid_mm`` wide along each axis: an image axis of spacing
    ``s`` is subdivided ``k = round(s / grid_mm)`` times when ``s > grid_mm`` (a 2 mm image
    simulated at 1 mm: 2 sub-voxels per voxel), or ``m = round(grid_mm / s)`` image voxels are
    merged into one grid voxel when ``s < grid_mm`` (1 mm images simulated at 2 mm), so the
    grid spacing is ``s * m / k``, within a factor 1.5 of ``grid_mm`` (exactly ``grid_mm``
    when the ratios are integers). A grid voxel reads the tissue of the image voxel at its
    centre. A frame of one barrier voxel surrounds the grid, so that neighbour offsets of
    flat indices never wrap around. The tissue map is read at once for grids of up to
    :data:`DENSE_TISSUE_MAX_VOXELS` voxels, else lazily, only for the voxels the automaton
    looks at, and cached.

    Args:
        image: (H, W, D) contiguous tensor, HU (any dtype).
        label: (H, W, D) contiguous label tensor (same device).
        organ_label: label value of the organ.
        start: first voxel (x, y, z) of the box in the image.
        shape: box size in image voxels.
        spacing: image voxel size (mm).
        thresholds_hu: (L + d, L + 2d, O) of the rules.
        grid_mm: target grid spacing (mm).
        tissue: the whole tissue map (:attr:`cache` of a dense grid) of this very grid, image
            and label, e.g. kept from an earlier draw of the same case; copied, not read again.
    """

    def __init__(self, image: torch.Tensor, label: torch.Tensor, organ_label: int, start, shape, spacing,
                 thresholds_hu, grid_mm: float = 1.0, tissue: torch.Tensor | None = None) -> None:
        self.device = image.device
        spacing = tuple(float(s) for s in spacing)
        self.k = tuple(max(1, int(round(s / grid_mm))) for s in spacing)
        self.m = tuple(1 if k > 1 else max(1, int(round(grid_mm / s))) for s, k in zip(spacing, self.k))
        self.spacing_mm = tuple(s * m / k for s, m, k in zip(spacing, self.m, self.k))
        self.start = tuple(int(s) for s in start)
        self.box = tuple(int(n) for n in shape)
        self.inner = tuple(-(-n * k // m) for n, k, m in zip(self.box, self.k, self.m))
        self.shape = tuple(n + 2 for n in self.inner)
        self.numel = self.shape[0] * self.shape[1] * self.shape[2]
        self.strides = (self.shape[1] * self.shape[2], self.shape[2], 1)
        self._image = image.reshape(-1)
        self._label = label.reshape(-1)
        self._organ_label = int(organ_label)
        self._image_strides = (image.shape[1] * image.shape[2], image.shape[2], 1)
        self.thresholds_hu = tuple(float(t) for t in thresholds_hu)
        self.offsets = torch.tensor([sum(d * s for d, s in zip(o, self.strides)) for o in NEIGHBOUR_OFFSETS],
                                    dtype=torch.int64, device=self.device)
        #: Tissue class per grid voxel, -1 until first read.
        self._dense = tissue is not None
        if tissue is not None:
            if tissue.shape != (self.numel,):
                raise ValueError(f"the tissue map holds {tuple(tissue.shape)} voxels, this grid {self.numel}")
            self.cache = tissue.clone()  # a copy: the automaton turns yielding vessels into organ
        else:
            self.cache = torch.full((self.numel,), -1, dtype=torch.int8, device=self.device)
            if self.numel <= DENSE_TISSUE_MAX_VOXELS:
                self._read_all(image, label)

    @property
    def dense(self) -> bool:
        """The whole tissue map has been read (:attr:`cache` holds no unknown voxel)."""
        return self._dense

    def _read_all(self, image: torch.Tensor, label: torch.Tensor) -> None:
        """Fill the whole tissue map: the image voxel at each grid voxel's centre (strided views, no gathers)."""
        hu, lab = image, label
        for axis, (s, k, m, n) in enumerate(zip(self.start, self.k, self.m, self.box)):
            if k > 1:  # grid voxel u lies in image voxel u // k
                hu, lab = (t.narrow(axis, s, n).repeat_interleave(k, dim=axis) for t in (hu, lab))
            else:  # grid voxel u is centred on image voxel u m + m // 2 (those inside the box)
                count = (n - m // 2 + m - 1) // m
                sl = [slice(None)] * 3
                sl[axis] = slice(s + m // 2, s + m // 2 + m * (count - 1) + 1, m)
                hu, lab = hu[tuple(sl)], lab[tuple(sl)]
        tissue = self._classify(hu)
        tissue.masked_fill_(lab != self._organ_label, OUTSIDE)
        cache = self.cache.view(self.shape)
        cache.fill_(OUTSIDE)  # the frame, and grid voxels whose centre lies beyond the box
        nx, ny, nz = tissue.shape
        cache[1:1 + nx, 1:1 + ny, 1:1 + nz] = tissue
        self._dense = True

    def coords(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Grid coordinates (frame included) of flat grid indices."""
        x = torch.div(flat, self.strides[0], rounding_mode="floor")
        rest = flat - x * self.strides[0]
        y = torch.div(rest, self.strides[1], rounding_mode="floor")
        return x, y, rest - y * self.strides[1]

    def flat(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return x * self.strides[0] + y * self.strides[1] + z

    def to_box(self, flat: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Image-box voxel (x, y, z) at the centre of each grid voxel, and whether it lies in the box."""
        coords = self.coords(flat)
        inside = torch.ones_like(flat, dtype=torch.bool)
        box = []
        for c, centre, n in zip(coords, self._centres(coords), self.box):
            inside &= (c >= 1) & (centre < n)
            box.append(centre.clamp(0, n - 1))
        return tuple(box), inside

    def box_centres(self, coords) -> tuple[torch.Tensor, ...]:
        """:meth:`to_box`'s voxels, clamped to the box, of grid voxels given by their coordinates (:meth:`coords`)."""
        return tuple(centre.clamp(0, n - 1) for centre, n in zip(self._centres(coords), self.box))

    def _centres(self, coords) -> tuple[torch.Tensor, ...]:
        # Grid voxel u (frame excluded) spans image voxels [u m / k, (u + 1) m / k): its centre
        # is floor((2 u + 1) m / (2 k)), u = c - 1; for k = 1 and an even m that is a product
        # (an int64 division costs ten times as much on the CPU).
        return tuple((2 * c - 1) * (m // 2) if k == 1 and m % 2 == 0
                     else torch.div((2 * c - 1) * m, 2 * k, rounding_mode="floor")
                     for c, k, m in zip(coords, self.k, self.m))

    def from_box(self, x, y, z) -> torch.Tensor:
        """Grid index of the grid voxel holding the centre of image-box voxels (x, y, z)."""
        return self.flat(*(1 + torch.div((2 * c + 1) * k, 2 * m, rounding_mode="floor")
                           for c, k, m in zip((x, y, z), self.k, self.m)))

    def _read_tissue(self, flat: torch.Tensor) -> torch.Tensor:
        (x, y, z), inside = self.to_box(flat)
        sx, sy, sz = self._image_strides
        index = (x + self.start[0]) * sx + (y + self.start[1]) * sy + (z + self.start[2])
        tissue = self._classify(self._image[index])
        organ = inside & (self._label[index] == self._organ_label)
        return tissue.masked_fill_(~organ, OUTSIDE)

    def _classify(self, hu: torch.Tensor) -> torch.Tensor:
        """Density class 0, 1, 2 or :data:`VESSEL` of HU values, int8: the thresholds passed (three comparisons)."""
        low, mid, high = self.thresholds_hu
        tissue = (hu >= low).to(torch.int8)
        tissue += hu >= mid
        tissue += hu >= high
        return tissue

    def tissue(self, flat: torch.Tensor) -> torch.Tensor:
        """Tissue class (0, 1, 2, :data:`VESSEL` or :data:`OUTSIDE`) of grid voxels, int64 (cached)."""
        tissue = self.cache.index_select(0, flat.reshape(-1)).reshape(flat.shape)
        if self._dense:
            return tissue.to(torch.int64)
        unknown = tissue < 0
        if bool(unknown.any()):
            where = flat[unknown]
            read = self._read_tissue(where)
            self.cache[where] = read
            tissue = tissue.masked_scatter(unknown, read)
        return tissue.to(torch.int64)


class Automaton:
    """The tumor state on a :class:`SimGrid`, and its growth and necrosis.

    Attributes:
        state: (numel,) int16: 0 healthy, 1..10 population, -1 dead.
        pushes: (numel,) int16: pushes received by vessel voxels.
        members: int64 flat indices of every voxel that has held tumor, each once.
        active: the members that can still change something (not inert).
        seeds: flat indices of the seeds (not the satellites).
    """

    def __init__(self, grid: SimGrid, rules: GrowthRules, generator: torch.Generator) -> None:
        self.grid, self.rules, self.gen = grid, rules, generator
        dev = grid.device
        self.state = torch.zeros(grid.numel, dtype=torch.int16, device=dev)
        self.pushes = torch.zeros(grid.numel, dtype=torch.int16, device=dev)
        empty = torch.zeros(0, dtype=torch.int64, device=dev)
        self._members = [empty]
        self.active = empty
        self.seeds = empty
        self._invade = torch.tensor(list(rules.invasion_probability) + [0.0, 0.0], dtype=torch.float32, device=dev)
        # Per tissue class: what a try that reaches it ends with when it is a barrier.
        self._barrier_code = torch.tensor([0, 0, 0, PUSHED, BLOCKED], dtype=torch.uint8, device=dev)
        self._face_offsets = grid.offsets[FACE_NEIGHBOURS]
        self._other_offsets = grid.offsets[OTHER_NEIGHBOURS]
        self._iterations = 0

    @property
    def members(self) -> torch.Tensor:
        if len(self._members) > 1:
            self._members = [torch.cat(self._members)]
        return self._members[0]

    def plant(self, seeds: torch.Tensor, satellites: torch.Tensor) -> None:
        """Set seeds and satellites (flat indices) to the seed state; those on barriers are dropped."""
        cells = torch.cat([seeds, satellites])
        cells = torch.unique(cells[self.grid.tissue(cells) < VESSEL])
        self.state[cells] = self.rules.seed_state
        self.seeds = torch.unique(seeds[self.grid.tissue(seeds) < VESSEL])
        self._members = [cells]
        self.active = cells

    def step(self) -> None:
        """One synchronous iteration of proliferation and spreading (see the module docstring).

        Every try reads the same snapshot, so the tries of a cell are drawn together and its
        first try that is not skipped (an invasion or a barrier) is the one that counts:
        the same law as trying one after the other. A state may pass saturation until the next
        iteration, the prune or the end of :meth:`grow` clamps it; in between it reads as
        saturated.

        The lists are short (the tumor's surface) and an iteration is some forty operations,
        so each is the cheapest of its kind: ``index_select`` / ``masked_select`` /
        ``index_copy_`` rather than ``[]`` indexing, which costs about twice as much per call.
        """
        rules, state, grid = self.rules, self.state, self.grid
        idx = self.active
        s = state.index_select(0, idx)
        source = idx.masked_select(s >= rules.spread_state)
        if source.numel():
            shape = (source.numel(), rules.spread_tries)
            pick = torch.randint(len(NEIGHBOUR_OFFSETS), shape, generator=self.gen, device=idx.device)
            target = source[:, None] + grid.offsets.index_select(0, pick.reshape(-1)).reshape(shape)
            targets = target.reshape(-1)
            tissue = grid.tissue(targets)
            open_ = (self._levels(state.index_select(0, targets)) < rules.saturation).reshape(shape)
            draw = torch.rand(shape, generator=self.gen, device=idx.device)
            # The outcome of each try as one code (few tensor operations per iteration):
            # 0 skipped or not invaded, INVADED, or the barrier's code (which ends the tries).
            # A barrier's invasion probability is 0, so a try is never both.
            outcome = self._barrier_code.index_select(0, tissue).reshape(shape)
            outcome += (draw < self._invade.index_select(0, tissue).reshape(shape)) & open_
            first = outcome.clamp(max=1).argmax(dim=1, keepdim=True)  # the first try that ended
            chosen = target.gather(1, first)[:, 0]
            ended = outcome.gather(1, first)[:, 0]  # 0 where no try ended (argmax gave try 0)
            invaded = chosen.masked_select(ended == INVADED)
            pushed = chosen.masked_select(ended == PUSHED)
        # Proliferation, one write for the whole active list (its voxels are distinct): the clamp
        # keeps saturated ones (and those the last iteration invaded past saturation), dead ones
        # stay below 0.
        state.index_copy_(0, idx, (s + (s > 0)).clamp_(max=rules.saturation))
        if source.numel():
            fresh = invaded.masked_select(state.index_select(0, invaded) == 0)
            # Not clamped here: a voxel invaded past saturation holds more until the next
            # iteration's proliferation clamps it (it is in the active list), the prune drops it
            # or grow() ends, which clamp it too; every reader in between takes it for
            # saturated (>= saturation).
            state.index_add_(0, invaded, torch.ones_like(invaded, dtype=state.dtype))
            if pushed.numel():
                self.pushes.index_add_(0, pushed, torch.ones_like(pushed, dtype=self.pushes.dtype))
                # A vessel that has taken enough pushes yields: from now on it is dense organ.
                yielded = pushed.masked_select(self.pushes.index_select(0, pushed) >= rules.yield_pushes)
                grid.cache.index_fill_(0, yielded, 2)
            if fresh.numel():
                fresh = torch.unique(fresh)
                self._members.append(fresh)
                self.active = torch.cat([self.active, fresh])
        self._iterations += 1
        if self._iterations % PRUNE_EVERY == 0:
            self._prune()

    def _prune(self) -> None:
        """Drop inert voxels from the active list: saturated, with every neighbour saturated, dead or outside.

        The six face neighbours are looked at first: a voxel with one of them still open (most
        voxels of a growing surface) is kept without reading the other twenty, which are read
        for the rest only.
        """
        idx = self.active
        saturated = flat_nonzero(self.state.index_select(0, idx) >= self.rules.saturation)
        if saturated.numel() == 0:
            return
        closed = self._closed(idx.index_select(0, saturated)[:, None] + self._face_offsets[None, :]).all(dim=1)
        suspects = saturated.masked_select(closed)
        inert = self._closed(idx.index_select(0, suspects)[:, None] + self._other_offsets[None, :]).all(dim=1)
        inert = suspects.masked_select(inert)
        # Leaving the active list, they leave the clamp of proliferation: clamped here (see step).
        self.state.index_fill_(0, idx.index_select(0, inert), self.rules.saturation)
        keep = torch.ones_like(idx, dtype=torch.bool)
        keep.index_fill_(0, inert, False)
        self.active = idx.masked_select(keep)

    def _closed(self, cells: torch.Tensor) -> torch.Tensor:
        """Whether cells (any shape) can no longer be invaded: saturated, dead or outside the organ."""
        flat = cells.reshape(-1)
        closed = (self._levels(self.state.index_select(0, flat)) >= self.rules.saturation)
        closed |= self.grid.cache.index_select(0, flat) == OUTSIDE
        return closed.reshape(cells.shape)

    @staticmethod
    def _levels(state: torch.Tensor) -> torch.Tensor:
        """States as uint8, where :data:`DEAD` (-1) reads 255: one comparison tells saturated or dead from open."""
        return state.to(torch.uint8)

    # Inference mode: no autograd bookkeeping on each of the forty-odd small operations of an
    # iteration (about 8 % of the automaton's time on CPU); the tensors it creates (the active
    # list, the members) never reach the caller's autograd.
    @torch.inference_mode()
    def grow(self, iterations: int) -> None:
        """Run ``iterations`` iterations (fewer when no voxel can change any more)."""
        for _ in range(int(iterations)):
            if self.active.numel() == 0:
                break
            self.step()
        # The last iteration's invasions past saturation (see step).
        idx = self.active
        self.state.index_copy_(0, idx, self.state.index_select(0, idx).clamp_(max=self.rules.saturation))

    @torch.inference_mode()
    def necrosis(self, reach: int, spread_iterations: int, kill_counts: list[int]) -> None:
        """Necrotic core: seeds die, ``kill_counts[i]`` random voxels near seed i, then death spreads.

        Near a seed means within ``reach`` grid voxels per axis (published: ``N // 10 - 2`` at
        1 mm); only saturated tumor voxels die. Death then spreads for ``spread_iterations``
        iterations (published: ``N // 7 + 1``), every dead voxel killing one saturated
        26-neighbour chosen uniformly among them.
        """
        rules, state, grid = self.rules, self.state, self.grid
        dev = state.device
        seeds = self.seeds
        if seeds.numel() == 0:
            return
        state[seeds] = DEAD
        reach = max(1, int(reach))
        near = []
        for seed, count in zip(seeds.tolist(), kill_counts):
            offsets = torch.randint(-reach, reach + 1, (count, 3), generator=self.gen, device=dev)
            x, y, z = grid.coords(torch.tensor([seed], device=dev))
            cx, cy, cz = (c + offsets[:, a] for a, c in enumerate((x, y, z)))
            valid = ((cx >= 0) & (cx < grid.shape[0]) & (cy >= 0) & (cy < grid.shape[1])
                     & (cz >= 0) & (cz < grid.shape[2]))
            near.append(grid.flat(cx[valid], cy[valid], cz[valid]))
        near = torch.cat(near)
        near = near[state[near] >= rules.saturation]
        state[near] = DEAD
        dead = torch.cat([seeds, near])
        for _ in range(int(spread_iterations)):
            if dead.numel() == 0:
                break
            around = dead[:, None] + grid.offsets[None, :]
            saturated = (state.index_select(0, around.reshape(-1)) >= rules.saturation).reshape(around.shape)
            has = flat_nonzero(saturated.any(dim=1))
            if has.numel() == 0:
                break
            dead, around, saturated = (t.index_select(0, has) for t in (dead, around, saturated))
            # Uniform among the saturated neighbours: the largest of uniform keys wins.
            keys = torch.rand(saturated.shape, generator=self.gen, device=dev).masked_fill_(~saturated, -1.0)
            victims = around.gather(1, keys.argmax(dim=1, keepdim=True))[:, 0]
            victims = torch.unique(victims)
            state.index_fill_(0, victims, DEAD)
            dead = torch.cat([dead, victims])
