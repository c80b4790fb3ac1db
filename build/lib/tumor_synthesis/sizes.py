"""Tumor size classes and tumor types of Hu et al. (CVPR 2023), as data.

A *size class* (tiny, small, medium, large) fixes the base radius and the strength of the
elastic deformation of one tumor. A *tumor type* (tiny, small, medium, large, mix) is what a
sample draws: a list of size classes, each with a range for its number of tumors. Adding a
size or a type is adding a table entry, not a code branch.

All lengths are in mm. The original works on 1 mm isotropic voxels, so its "voxels" are
millimetres here, and at 1 mm spacing every distribution below is the original's exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SizeClass:
    """How one tumor of a size class is drawn.

    Attributes:
        name: class name.
        base_radius_mm: base radius r; each of the three semi-axes is an integer drawn
            uniformly from ``[int(0.75 r), int(1.25 r)]`` (bounds included).
        sigma_kind: ``"uniform"`` (continuous) or ``"integer"`` (bounds included) law of the
            deformation strength.
        sigma_range_mm: bounds of the standard deviation of the control-point displacement
            of the elastic deformation.
    """

    name: str
    base_radius_mm: int
    sigma_kind: str
    sigma_range_mm: tuple[float, float]

    @property
    def radius_range_mm(self) -> tuple[int, int]:
        """Inclusive bounds of each semi-axis (mm)."""
        return int(0.75 * self.base_radius_mm), int(1.25 * self.base_radius_mm)

    def sample_radii(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """Three independent semi-axes (mm), integers in :attr:`radius_range_mm`."""
        lo, hi = self.radius_range_mm
        return tuple(int(r) for r in rng.integers(lo, hi + 1, size=3))

    def sample_sigma(self, rng: np.random.Generator) -> float:
        """Deformation strength (mm) of one tumor."""
        lo, hi = self.sigma_range_mm
        if self.sigma_kind == "uniform":
            return float(rng.uniform(lo, hi))
        return float(rng.integers(int(lo), int(hi) + 1))


#: The four size classes of the original.
SIZE_CLASSES: dict[str, SizeClass] = {
    "tiny": SizeClass("tiny", 4, "uniform", (0.5, 1.0)),
    "small": SizeClass("small", 8, "integer", (1, 2)),
    "medium": SizeClass("medium", 16, "integer", (3, 6)),
    "large": SizeClass("large", 32, "integer", (5, 10)),
}

#: Tumor types: for each, the size classes it paints and the inclusive range of their count.
#: Note that "mix" draws 5-10 small tumors, where the pure "small" type draws 3-10.
TUMOR_TYPES: dict[str, tuple[tuple[str, int, int], ...]] = {
    "tiny": (("tiny", 3, 10),),
    "small": (("small", 3, 10),),
    "medium": (("medium", 2, 5),),
    "large": (("large", 1, 3),),
    "mix": (("tiny", 3, 10), ("small", 5, 10), ("medium", 2, 5), ("large", 1, 3)),
    # DiffTumor's counts (pancreas, kidney; also the lung nodules here): one to three
    # early (tiny or small) tumors, or a single medium or large one.
    "few_tiny": (("tiny", 1, 3),),
    "few_small": (("small", 1, 3),),
    "one_medium": (("medium", 1, 1),),
    "one_large": (("large", 1, 1),),
}


@dataclass(frozen=True)
class TumorSpec:
    """One tumor to paint, before it is placed.

    Attributes:
        size: size class name.
        radii_mm: semi-axes (x, y, z) of the ellipsoid in mm.
        sigma_mm: standard deviation of the elastic control-point displacement in mm.
    """

    size: str
    radii_mm: tuple[int, int, int]
    sigma_mm: float


def sample_tumor_specs(rng: np.random.Generator, tumor_type: str) -> list[TumorSpec]:
    """Draw the tumors of one sample of ``tumor_type``.

    Args:
        rng: source of randomness.
        tumor_type: a key of :data:`TUMOR_TYPES`.

    Returns:
        The tumors, grouped by size class in the order of the type's table entry.
    """
    if tumor_type not in TUMOR_TYPES:
        raise ValueError(f"unknown tumor type {tumor_type!r}; choose one of {list(TUMOR_TYPES)}")
    specs = []
    for size_name, lo, hi in TUMOR_TYPES[tumor_type]:
        size = SIZE_CLASSES[size_name]
        for _ in range(int(rng.integers(lo, hi + 1))):
            radii = size.sample_radii(rng)
            specs.append(TumorSpec(size_name, radii, size.sample_sigma(rng)))
    return specs
