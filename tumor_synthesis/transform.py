"""``TumorGenerated``: the MONAI dictionary transform that paints synthetic tumors (wraps ``TumorGenerate``)."""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform

from tumor_synthesis.array import TumorGenerate, check_image_label
from tumor_synthesis.case_data import CASE_DATA_KEY
from tumor_synthesis.growth_engine import GROWTH_GRID_MM
from tumor_synthesis.organs import MultiOrganProfile, OrganProfile


class TumorGenerated(RandomizableTransform, MapTransform):
    """Dictionary-based wrapper of :class:`tumor_synthesis.array.TumorGenerate`.

    Paints synthetic tumors into the organ of a healthy CT (Hu et al., CVPR 2023): reads
    the image (HU) and the label from their keys, lets ``TumorGenerate`` paint them, and
    writes both back; every other key is kept. Image and label come back as tensors in
    every path, painted or not (a MetaTensor stays a MetaTensor with its metadata; numpy
    arrays come back as CPU tensors); see ``TumorGenerate`` for the painting itself, the
    synthesis models, the organs and the units.

    Per-case facts (the organ's box, the placement slices, ...) come from the sample's
    :data:`tumor_synthesis.case_data.CASE_DATA_KEY` entry when a
    :class:`tumor_synthesis.case_transform.TumorCaseDatad` earlier in the pipeline made them for
    these arrays (the entry is removed from the output); otherwise they are computed on the
    fly. The painted sample is the same either way.

    All randomness is the array transform's: ``set_random_state(seed)`` reaches it and
    reproduces a sample exactly (the same sample as ``TumorGenerate`` with that seed), and
    MONAI's ``DataLoader`` seeds each worker differently.

    Args:
        keys: the image key and the label key, in that order.
        prob: probability of painting tumors into a sample.
        tumor_prob: probability of each tumor type (size class); see ``TumorGenerate``.
        organ: organ profile name: liver, lung, pancreas, kidney, or multi.
        allow_missing_keys: return the sample unpainted when a key is missing (its other
            key converted as when painted) instead of raising ``KeyError``.
        spacing: voxel size (sx, sy, sz) in mm of inputs that carry no affine.
        inplace: paint into the input arrays instead of copies; see ``TumorGenerate``.
        surface_rim_mm: organ tissue (mm) kept under the organ's surface; ellipsoid model only.
        synthesis: synthesis model, ``"ellipsoid"`` (default) or ``"growth"``.
        growth_grid_mm: simulation grid spacing (mm) of the growth model.
        device: move image and label to this device first, painted or not.
        label_visible_edge: where the label of a blurred tumor ends (a fraction in (0, 1);
            None: the profile's, the original's unblurred mask by default); ellipsoid model only.
        preset: ``"original"`` (default, the published method bit for bit) or ``"realistic"``
            (the organ profile's realistic values; see ``TumorGenerate``).

    Raises:
        ValueError: bad arguments, or (when called) inputs that are not ``(1, H, W, D)``
            arrays or whose shapes differ (named by their keys).
        KeyError: a key is missing and ``allow_missing_keys`` is False.
    """

    backend = TumorGenerate.backend

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        prob: float = 0.9,
        tumor_prob: Sequence[float] | None = None,
        organ: str = "liver",
        allow_missing_keys: bool = False,
        spacing: Sequence[float] | None = None,
        inplace: bool = False,
        surface_rim_mm: float | None = None,
        synthesis: str = "ellipsoid",
        growth_grid_mm: float = GROWTH_GRID_MM,
        device: str | torch.device | None = None,
        label_visible_edge: float | None = None,
        preset: str = "original",
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(self.keys) != 2:
            raise ValueError(f"TumorGenerated needs exactly two keys (image, label), got {self.keys}")
        self.tumor_generate = TumorGenerate(
            prob=prob, tumor_prob=tumor_prob, organ=organ, spacing=spacing, inplace=inplace,
            surface_rim_mm=surface_rim_mm, synthesis=synthesis, growth_grid_mm=growth_grid_mm, device=device,
            label_visible_edge=label_visible_edge, preset=preset,
        )
        RandomizableTransform.__init__(self, prob)

    # The array transform decides whether to paint: ``prob`` is its own (setting it here sets it there).
    @property
    def prob(self) -> float:
        """Probability of painting tumors into a sample."""
        return self.tumor_generate.prob

    @prob.setter
    def prob(self, value: float) -> None:
        self.tumor_generate.prob = value

    @property
    def profile(self) -> OrganProfile | MultiOrganProfile:
        """The organ profile painted (with ``surface_rim_mm`` applied)."""
        return self.tumor_generate.profile

    @property
    def synthesis(self) -> str:
        """Name of the synthesis model."""
        return self.tumor_generate.synthesis

    @property
    def growth_grid_mm(self) -> float:
        """Simulation grid spacing (mm) of the growth model."""
        return self.tumor_generate.growth_grid_mm

    @property
    def label_visible_edge(self) -> float | None:
        """Where the label of a blurred tumor ends (None: the original's unblurred mask)."""
        return self.tumor_generate.label_visible_edge

    @property
    def preset(self) -> str:
        """The synthesis preset: "original" or "realistic"."""
        return self.tumor_generate.preset

    def set_random_state(self, seed: int | None = None, state=None) -> "TumorGenerated":
        super().set_random_state(seed, state)
        self.tumor_generate.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:
        """Draw the sample (whether to paint, its tumor type and seed) in the array transform."""
        self.tumor_generate.randomize()
        self._do_transform = self.tumor_generate._do_transform

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize(None)
        present = list(self.key_iterator(d))
        if len(present) != 2:  # only reachable with allow_missing_keys
            for key in present:
                d[key] = self.tumor_generate.prepare(d[key])
            return d
        image_key, label_key = self.keys
        check_image_label(d[image_key], d[label_key], (image_key, label_key))
        # Per-case facts from the cached prefix (tumor_synthesis.case_transform.TumorCaseDatad), consumed
        # here: the transforms after this one (crops, collation) have no use for them.
        case_data = d.pop(CASE_DATA_KEY, None)
        d[image_key], d[label_key] = self.tumor_generate(d[image_key], d[label_key], randomize=False,
                                                         case_data=case_data)
        return d
