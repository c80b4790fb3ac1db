"""The original's model: deformed ellipsoids, textured and blurred (:func:`tumor_synthesis.engine.synthesize_tumors`).

Runs in numpy on the CPU: CPU inputs are painted through views of their memory, CUDA
inputs on a host copy.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor

from tumor_synthesis.engine import synthesize_tumors
from tumor_synthesis.models.base import SynthesisModel, SynthesisOptions, WorkArrays
from tumor_synthesis.organs import MultiOrganProfile, OrganProfile, with_preset, with_surface_rim


class EllipsoidModel(SynthesisModel):
    """Hu et al.'s (CVPR 2023) deformed ellipsoids, every organ profile.

    Size classes are the profile's tumor types (liver: tiny, small, medium, large, mix) with
    its type probabilities. Honours ``surface_rim_mm`` (applied to every organ of the
    profile) and ``label_visible_edge``; ``growth_grid_mm`` is not used. The preset's profile
    values (``tumor_synthesis.organs.Preset.profile``) replace the profile's before the options
    apply.
    """

    name = "ellipsoid"
    uses_case_data = True

    def __init__(self, profile: OrganProfile | MultiOrganProfile, options: SynthesisOptions = SynthesisOptions()):
        profile = with_preset(profile, options.preset)
        if options.surface_rim_mm is not None:
            profile = with_surface_rim(profile, options.surface_rim_mm)
        super().__init__(profile)
        self.label_visible_edge = None if options.label_visible_edge is None else float(options.label_visible_edge)

    @classmethod
    def supports(cls, organ: OrganProfile) -> bool:
        return True

    def size_classes(self, organ: OrganProfile) -> tuple[str, ...]:
        return organ.tumor_types

    def size_probabilities(self, organ: OrganProfile) -> tuple[float, ...]:
        return organ.type_probabilities

    def work_arrays(self, image: torch.Tensor, label: torch.Tensor) -> WorkArrays:
        return WorkArrays(_host_array(image), _host_array(label), image.is_cpu and label.is_cpu)

    def paint_organ(self, image, label, rng, size, organ, spacing, inplace, case=None):
        # The transform's edge wins over the organ's (a preset's); passed only when set, so that
        # the engine's call is the original's by default.
        edge = organ.label_visible_edge if self.label_visible_edge is None else self.label_visible_edge
        edge = {} if edge is None else {"label_visible_edge": edge}
        result = synthesize_tumors(image, label, rng, size, organ, spacing=spacing, inplace=inplace,
                                   shared_label=self.shared_label, case=case, **edge)
        return None if result is None else (result.image, result.label)


def _host_array(x: torch.Tensor) -> np.ndarray:
    """The (H, W, D) numpy array of a (1, H, W, D) tensor: a view on the CPU, a host copy of a CUDA tensor."""
    plain = x.as_tensor() if isinstance(x, MetaTensor) else x
    return plain.detach()[0].cpu().numpy()
