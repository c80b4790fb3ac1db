"""The interface every synthesis model implements, and the loop over a profile's organs.

A synthesis model paints the tumors of one sample into one organ; :meth:`SynthesisModel.paint`
runs it over every organ of the profile (one for a single-organ profile, three for
``multi``), so multi-organ painting is written once for every model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Union

import numpy as np
import torch

from tumor_synthesis.growth_engine import GROWTH_GRID_MM
from tumor_synthesis.organs import PRESETS, MultiOrganProfile, OrganProfile

#: A volume as a model paints it: (H, W, D), numpy or torch.
Volume = Union[np.ndarray, torch.Tensor]


@dataclass(frozen=True)
class SynthesisOptions:
    """Options of the transforms that belong to one model or another.

    Each model refuses, in one line, an option it cannot honour (see its class).

    Attributes:
        surface_rim_mm: organ tissue (mm) kept between a clipped tumor and the organ's
            surface; None: the profile's.
        growth_grid_mm: simulation grid spacing (mm) of the growth model.
        label_visible_edge: fraction in (0, 1) of the blurred mask at which the label
            ends; None: the profile's (the unblurred mask in the original).
        preset: "original" (the published method) or "realistic" (the organ profile's
            realistic values, ``tumor_synthesis.organs.Preset``), see :data:`organs.PRESETS`.
    """

    surface_rim_mm: float | None = None
    growth_grid_mm: float = GROWTH_GRID_MM
    label_visible_edge: float | None = None
    preset: str = "original"

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown synthesis preset {self.preset!r}; choose one of {list(PRESETS)}")
        edge = self.label_visible_edge
        if edge is not None and not 0.0 < float(edge) < 1.0:
            raise ValueError(f"label_visible_edge must be a fraction in (0, 1) or None, got {edge}")


class WorkArrays(NamedTuple):
    """The (H, W, D) image and label a model paints, made from the (1, H, W, D) input tensors.

    Attributes:
        image: image in HU.
        label: label.
        views: they share memory with the inputs, so painting them in place paints the inputs.
    """

    image: Volume
    label: Volume
    views: bool


class SynthesisModel(ABC):
    """One way of painting synthetic tumors into the organs of an organ profile.

    Subclasses say what a sample can draw (:meth:`size_classes`, :meth:`size_probabilities`),
    which organs they support (:meth:`supports`), where they run (:meth:`work_arrays`) and
    how one organ is painted (:meth:`paint_organ`); they are registered by name in
    :data:`tumor_synthesis.models.SYNTHESIS_MODELS`.

    Attributes:
        profile: the organ profile painted (its options applied, e.g. the surface rim).
    """

    #: The model's name (the ``synthesis`` argument of the transforms).
    name: ClassVar[str]
    #: :meth:`paint_organ` takes a ``case`` keyword: the organ's per-case facts
    #: (:class:`tumor_synthesis.case_data.OrganCase`), computed once per case.
    uses_case_data: ClassVar[bool] = False

    def __init__(self, profile: OrganProfile | MultiOrganProfile) -> None:
        self.profile = profile

    @property
    def shared_label(self) -> bool:
        """The label map holds several organs (multi-organ convention): each is skipped only for its own tumor."""
        return isinstance(self.profile, MultiOrganProfile)

    @classmethod
    @abstractmethod
    def supports(cls, organ: OrganProfile) -> bool:
        """Whether this model can paint tumors into ``organ``."""

    @abstractmethod
    def size_classes(self, organ: OrganProfile) -> tuple[str, ...]:
        """The size classes (tumor types) a sample of ``organ`` draws from."""

    @abstractmethod
    def size_probabilities(self, organ: OrganProfile) -> tuple[float, ...]:
        """The default probability of each of :meth:`size_classes`."""

    @abstractmethod
    def work_arrays(self, image: torch.Tensor, label: torch.Tensor) -> WorkArrays:
        """The (H, W, D) arrays this model paints, from the (1, H, W, D) inputs (views where it can)."""

    @abstractmethod
    def paint_organ(self, image: Volume, label: Volume, rng: np.random.Generator, size: str, organ: OrganProfile,
                    spacing: tuple[float, float, float], inplace: bool) -> tuple[Volume, Volume] | None:
        """Paint tumors of size class ``size`` into ``organ``.

        Args:
            image: (H, W, D) image in HU, from :meth:`work_arrays`.
            label: (H, W, D) label.
            rng: the only source of randomness.
            size: one of :meth:`size_classes` of ``organ``.
            organ: the organ (a member of :attr:`profile`).
            spacing: voxel size (sx, sy, sz) in mm.
            inplace: paint into ``image`` and ``label`` instead of copies.

        Returns:
            The painted ``(image, label)``, or None (inputs untouched) when the organ is
            absent, too thin, or already holds a tumor.
        """

    def draw_size(self, organ: OrganProfile, rng: np.random.Generator) -> str:
        """One of :meth:`size_classes` of ``organ``, drawn from ``rng`` with :meth:`size_probabilities`."""
        p = np.asarray(self.size_probabilities(organ), dtype=np.float64)
        return self.size_classes(organ)[int(rng.choice(len(p), p=p / p.sum()))]

    def paint(self, image: Volume, label: Volume, rng: np.random.Generator, spacing: tuple[float, float, float],
              size: str | None = None, inplace: bool = False, case=None) -> tuple[Volume, Volume] | None:
        """Paint every organ of the profile in turn.

        Args:
            image: (H, W, D) image in HU, from :meth:`work_arrays`.
            label: (H, W, D) label.
            rng: the only source of randomness.
            spacing: voxel size (sx, sy, sz) in mm.
            size: size class of a single-organ profile; None draws one per organ from ``rng``
                (the multi-organ profile: each organ its own).
            inplace: paint into ``image`` and ``label``. Otherwise they are copied once, when
                the first organ is painted, and later organs are painted into the copies.
            case: the case's :class:`tumor_synthesis.case_data.CaseData` for these arrays (None:
                models that use it compute it per organ).

        Returns:
            The painted ``(image, label)``, or None (inputs untouched) when no organ was painted.
        """
        painted = False
        for organ in self.profile.members:
            organ_size = size if size is not None else self.draw_size(organ, rng)
            extra = {"case": case.organ(organ.name)} if case is not None and self.uses_case_data else {}
            result = self.paint_organ(image, label, rng, organ_size, organ, spacing, inplace or painted, **extra)
            if result is not None:
                image, label = result
                painted = True
        return (image, label) if painted else None
