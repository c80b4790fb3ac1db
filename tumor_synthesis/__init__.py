"""Synthetic tumors for label-free tumor segmentation (Hu et al., CVPR 2023).

The MONAI transforms, in MONAI's array/dictionary split:

* :mod:`tumor_synthesis.array`: ``TumorGenerate``, the array transform that does the work on
  one ``(1, H, W, D)`` image (HU) and label;
* :mod:`tumor_synthesis.transform`: ``TumorGenerated``, the dictionary transform used in
  training pipelines; it routes keys and randomness to ``TumorGenerate``.

The synthesis models, one object each behind one interface, by name in ``SYNTHESIS_MODELS``:

* :mod:`tumor_synthesis.models`: ``SynthesisModel`` (size classes, supported organs, where it
  runs, how one organ is painted, and the loop over a profile's organs), ``EllipsoidModel``
  and ``GrowthModel``.

Below them, pure functions driven by a ``numpy.random.Generator``:

* :mod:`tumor_synthesis.sizes`: size classes and tumor types, as tables;
* :mod:`tumor_synthesis.shape`: ellipsoids and their elastic deformation;
* :mod:`tumor_synthesis.placement`: the organ's working box and tumor centres;
* :mod:`tumor_synthesis.texture`: the noise texture, drawn only where tumors are;
* :mod:`tumor_synthesis.intensity`: edge blur and HU change;
* :mod:`tumor_synthesis.organs`: organ profiles (window, labels, laws), as data: liver,
  lung (nodules), pancreas, kidney, and the multi-organ label convention;
* :mod:`tumor_synthesis.engine`: one ellipsoid-model sample of one organ from all of the above;
* :mod:`tumor_synthesis.growth`, :mod:`tumor_synthesis.growth_engine`: the growth model
  (a cellular automaton in torch, as Pixel2Cancer), ``TumorGenerated(synthesis="growth")``;
* :mod:`tumor_synthesis.learned`: the learned tumor intensity (FreeTumor's generator), which
  repaints the engine's tumor shapes.

The tools built on the engine need the training framework and live there;
``python -m tumor_synthesis.preview`` and ``python -m tumor_synthesis.realism`` dispatch to
them by name (the engine imports nothing from ``labelfree``):

* :mod:`labelfree.apps.preview`: PNG previews of synthetic tumors;
* :mod:`labelfree.apps.realism.cli`: synthetic vs real tumors, lesion by lesion, and a machine
  Turing test (statistics in :mod:`~labelfree.apps.realism.stats`, the CNN in
  :mod:`~labelfree.apps.realism.classifier`, tables and figure in
  :mod:`~labelfree.apps.realism.report`).
"""

from tumor_synthesis.array import TumorGenerate
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
from tumor_synthesis.models import SYNTHESIS_MODELS, SynthesisModel, get_synthesis_model
from tumor_synthesis.transform import TumorGenerated

__all__ = [
    "TumorGenerated",
    "TumorGenerate",
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
    "SynthesisModel",
    "get_synthesis_model",
    "grow_tumors",
    "GrowthPlan",
    "GrowthResult",
    "GrowthRules",
    "GROWTH_RULES",
    "get_growth_rules",
]
