"""Synthetic tumors for label-free tumor segmentation (Hu et al., CVPR 2023).

``TumorGenerated`` is the MONAI transform used in training pipelines; the modules below it
are pure numpy functions driven by a ``numpy.random.Generator``:

* :mod:`tumor_synthesis.sizes`: size classes and tumor types, as tables;
* :mod:`tumor_synthesis.shape`: ellipsoids and their elastic deformation;
* :mod:`tumor_synthesis.placement`: the organ's working box and tumor centres;
* :mod:`tumor_synthesis.texture`: the noise texture, drawn only where tumors are;
* :mod:`tumor_synthesis.intensity`: edge blur and HU change;
* :mod:`tumor_synthesis.organs`: organ profiles (window, labels, laws), as data: liver,
  lung (nodules), pancreas, kidney, and the multi-organ label convention;
* :mod:`tumor_synthesis.engine`: one sample from all of the above;
* :mod:`tumor_synthesis.growth`, :mod:`tumor_synthesis.growth_engine`: the growth model
  (a cellular automaton in torch, as Pixel2Cancer), ``TumorGenerated(synthesis="growth")``;
* :mod:`labelfree.apps.preview`: PNG previews (``python -m tumor_synthesis.preview``);
* :mod:`labelfree.apps.realism.cli`: synthetic vs real tumors, lesion by lesion, and a machine
  Turing test (``python -m tumor_synthesis.realism``; statistics in
  :mod:`~labelfree.apps.realism.stats`, the CNN in :mod:`~labelfree.apps.realism.classifier`,
  tables and figure in :mod:`~labelfree.apps.realism.report`).
"""

from tumor_synthesis.engine import SynthesisPlan, SynthesisResult, synthesize_tumors
from tumor_synthesis.growth import GROWTH_RULES, GrowthRules, get_growth_rules
from tumor_synthesis.growth_engine import GrowthPlan, GrowthResult, grow_tumors
from tumor_synthesis.organs import (
    LesionKind,
    MultiOrganProfile,
    OrganProfile,
    available_organs,
    get_organ_profile,
    with_surface_rim,
)
from tumor_synthesis.sizes import SIZE_CLASSES, TUMOR_TYPES
from tumor_synthesis.transform import SYNTHESIS_MODELS, TumorGenerated

__all__ = [
    "TumorGenerated",
    "synthesize_tumors",
    "SynthesisPlan",
    "SynthesisResult",
    "OrganProfile",
    "MultiOrganProfile",
    "LesionKind",
    "available_organs",
    "get_organ_profile",
    "with_surface_rim",
    "SIZE_CLASSES",
    "TUMOR_TYPES",
    "SYNTHESIS_MODELS",
    "grow_tumors",
    "GrowthPlan",
    "GrowthResult",
    "GrowthRules",
    "GROWTH_RULES",
    "get_growth_rules",
]
