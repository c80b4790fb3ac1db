"""Synthesis models: one object per way of painting tumors, behind one interface.

* :mod:`~tumor_synthesis.models.base`: :class:`SynthesisModel` (what a model knows and does)
  and the loop over a profile's organs, :class:`SynthesisOptions`;
* :mod:`~tumor_synthesis.models.ellipsoid`: the original's deformed ellipsoids;
* :mod:`~tumor_synthesis.models.growth`: the growth model (cellular automaton);
* :mod:`~tumor_synthesis.models.registry`: :data:`SYNTHESIS_MODELS`, name -> class.
"""

from tumor_synthesis.models.base import SynthesisModel, SynthesisOptions, WorkArrays
from tumor_synthesis.models.ellipsoid import EllipsoidModel
from tumor_synthesis.models.growth import GrowthModel
from tumor_synthesis.models.registry import SYNTHESIS_MODELS, get_synthesis_model

__all__ = [
    "SynthesisModel",
    "SynthesisOptions",
    "WorkArrays",
    "EllipsoidModel",
    "GrowthModel",
    "SYNTHESIS_MODELS",
    "get_synthesis_model",
]
