"""The growth model: Pixel2Cancer's cellular automaton (:func:`tumor_synthesis.growth_engine.grow_tumors`).

Runs in torch on the device of the input tensors, painting through views of their memory:
numpy and CPU tensors on the CPU (in the loader workers), CUDA tensors on their GPU.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from monai.data import MetaTensor

from tumor_synthesis.growth import GROWTH_RULES, GrowthRules, get_growth_rules
from tumor_synthesis.growth_engine import grow_tumors
from tumor_synthesis.models.base import SynthesisModel, SynthesisOptions, WorkArrays
from tumor_synthesis.organs import MultiOrganProfile, OrganProfile, preset_of, with_preset, with_surface_rim


class GrowthModel(SynthesisModel):
    """Tumors grown from seeds in the organ (:mod:`tumor_synthesis.growth`): liver, pancreas, kidney, multi.

    Size classes are tiny, small, medium and large (ranges of the number of growth
    iterations) with the rules' probabilities (the published uniform law of the iteration
    count). Honours ``growth_grid_mm``; refuses a surface rim other than 0 (the organ's edge
    stops the growth itself) and ``label_visible_edge`` (every voxel reached is labelled).

    Attributes:
        rules: the growth rules of each organ of the profile, by organ name.
        grid_mm: simulation grid spacing (mm).
    """

    name = "growth"
    uses_case_data = True

    def __init__(self, profile: OrganProfile | MultiOrganProfile, options: SynthesisOptions = SynthesisOptions()):
        if options.surface_rim_mm is not None:
            if options.surface_rim_mm != 0:
                raise ValueError("surface_rim_mm shapes the ellipsoid model's clipping; the growth model is "
                                 "stopped by the organ edge itself (use 0 or None with synthesis='growth')")
            profile = with_surface_rim(profile, options.surface_rim_mm)
        if not options.growth_grid_mm > 0:
            raise ValueError(f"growth_grid_mm must be a positive spacing in mm, got {options.growth_grid_mm}")
        if options.label_visible_edge is not None:
            raise ValueError("label_visible_edge moves the label edge of the ellipsoid model's blurred tumors; the "
                             "growth model labels every voxel it reached (use None with synthesis='growth')")
        # The preset's growth values replace the rules' (its profile values: the texture laws).
        growth = {m.name: dict(preset_of(m, options.preset).growth) for m in profile.members}
        profile = with_preset(profile, options.preset)
        super().__init__(profile)
        #: Per organ: the simulation grid is never coarser than the image (a preset's
        #: ``grid_not_coarser_than_image``): a 2 mm grid resampled to a 1 mm image widens the edge.
        self.grid_not_coarser = {name: bool(g.pop("grid_not_coarser_than_image", False)) for name, g in growth.items()}
        # Raises for an organ without growth rules (lung), naming the supported ones.
        self.rules: dict[str, GrowthRules] = {m.name: replace(get_growth_rules(m.name), **growth[m.name])
                                              for m in profile.members}
        self.grid_mm = float(options.growth_grid_mm)

    @classmethod
    def supports(cls, organ: OrganProfile) -> bool:
        return organ.name in GROWTH_RULES

    def size_classes(self, organ: OrganProfile) -> tuple[str, ...]:
        return self.rules[organ.name].size_names

    def size_probabilities(self, organ: OrganProfile) -> tuple[float, ...]:
        return self.rules[organ.name].size_probabilities

    def work_arrays(self, image: torch.Tensor, label: torch.Tensor) -> WorkArrays:
        image_t, label_t = _plain(image)[0], _plain(label)[0]
        if label_t.device != image_t.device:
            raise ValueError(f"image and label are on different devices: {image_t.device} and {label_t.device}")
        return WorkArrays(image_t, label_t, True)

    def paint_organ(self, image, label, rng, size, organ, spacing, inplace, case=None):
        result = grow_tumors(image, label, rng, size, self.rules[organ.name], spacing, organ_label=organ.organ_label,
                             tumor_label=organ.tumor_label, texture=organ.texture, inplace=inplace,
                             shared_label=self.shared_label, grid_mm=self._grid_mm(organ, spacing), case=case)
        return None if result is None else (result.image, result.label)

    def _grid_mm(self, organ: OrganProfile, spacing) -> float:
        """The simulation grid (mm) for ``organ`` at image ``spacing`` (mm)."""
        return min(self.grid_mm, min(spacing)) if self.grid_not_coarser[organ.name] else self.grid_mm


def _plain(x: torch.Tensor) -> torch.Tensor:
    """A plain tensor sharing memory with ``x`` (MetaTensor or tensor)."""
    return x.as_tensor() if isinstance(x, MetaTensor) else x
