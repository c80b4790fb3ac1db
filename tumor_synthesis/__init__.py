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
* :mod:`tumor_synthesis.case_data`, :mod:`tumor_synthesis.case_transform`: what synthesis needs to know about a case alone (organ box,
  placement slices, organ statistics), computed once per case by ``TumorCaseDatad`` in a
  pipeline's cached prefix, or on the fly;
* :mod:`tumor_synthesis.texture`: the noise texture, drawn only where tumors are;
* :mod:`tumor_synthesis.intensity`: edge blur and HU change;
* :mod:`tumor_synthesis.separable`: Gaussian blur and trilinear resizing of a box as one
  matrix product per axis (the edge blur of both models, the growth model's resampling);
* :mod:`tumor_synthesis.organs`: organ profiles (window, labels, laws), as data: liver,
  lung (nodules), pancreas, kidney, and the multi-organ label convention;
* :mod:`tumor_synthesis.engine`: one ellipsoid-model sample of one organ from all of the above;
* :mod:`tumor_synthesis.growth`, :mod:`tumor_synthesis.growth_engine`: the growth model
  (a cellular automaton in torch, as Pixel2Cancer), ``TumorGenerated(synthesis="growth")``;
* :mod:`tumor_synthesis.learned`: the learned tumor intensity (FreeTumor's generator), which
  repaints the engine's tumor shapes; :mod:`tumor_synthesis.diffusion`: the same job by a
  diffusion model (rectified-flow inpainting on MONAI's ``DiffusionModelUNet``);
* :mod:`tumor_synthesis.repaint`: either painter over one whole case, outside the training
  step (the realism tool, offline datasets).

The tools built on the engine need the training framework and live there;
``python -m tumor_synthesis.preview`` and ``python -m tumor_synthesis.realism`` dispatch to
them by name (the engine imports nothing from ``labelfree``):

* :mod:`labelfree.apps.preview`: PNG previews of synthetic tumors;
* :mod:`labelfree.apps.realism.cli`: synthetic vs real tumors, lesion by lesion, and a machine
  Turing test (statistics in :mod:`~labelfree.apps.realism.stats`, the CNN in
  :mod:`~labelfree.apps.realism.classifier`, tables and figure in
  :mod:`~labelfree.apps.realism.report`).
"""

import importlib

#: Where each public name lives. Imported on first use (PEP 562), so that reading an organ
#: profile (``tumor_synthesis.organs``) does not import MONAI and torch: ``labelfree-score``
#: needs the label conventions and nothing else of this package.
_EXPORTS = {
    "TumorGenerate": "tumor_synthesis.array",
    "SynthesisPlan": "tumor_synthesis.engine",
    "SynthesisResult": "tumor_synthesis.engine",
    "synthesize_tumors": "tumor_synthesis.engine",
    "GROWTH_RULES": "tumor_synthesis.growth",
    "GrowthRules": "tumor_synthesis.growth",
    "get_growth_rules": "tumor_synthesis.growth",
    "GrowthPlan": "tumor_synthesis.growth_engine",
    "GrowthResult": "tumor_synthesis.growth_engine",
    "grow_tumors": "tumor_synthesis.growth_engine",
    "LesionKind": "tumor_synthesis.organs",
    "MultiOrganProfile": "tumor_synthesis.organs",
    "OrganProfile": "tumor_synthesis.organs",
    "available_organs": "tumor_synthesis.organs",
    "get_organ_profile": "tumor_synthesis.organs",
    "with_surface_rim": "tumor_synthesis.organs",
    "SIZE_CLASSES": "tumor_synthesis.sizes",
    "TUMOR_TYPES": "tumor_synthesis.sizes",
    "SYNTHESIS_MODELS": "tumor_synthesis.models",
    "SynthesisModel": "tumor_synthesis.models",
    "get_synthesis_model": "tumor_synthesis.models",
    "TumorGenerated": "tumor_synthesis.transform",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    try:  # a submodule, as ``import tumor_synthesis; tumor_synthesis.engine`` found it before
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


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
