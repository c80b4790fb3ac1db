"""The synthesis models by name: adding a model is adding its class here."""

from __future__ import annotations

from tumor_synthesis.models.base import SynthesisModel
from tumor_synthesis.models.ellipsoid import EllipsoidModel
from tumor_synthesis.models.growth import GrowthModel

#: Synthesis models by name (the ``synthesis`` argument of the transforms): the original's
#: deformed ellipsoids (the default), or the growth model (a cellular automaton).
SYNTHESIS_MODELS: dict[str, type[SynthesisModel]] = {model.name: model for model in (EllipsoidModel, GrowthModel)}


def get_synthesis_model(name: str) -> type[SynthesisModel]:
    """The model class called ``name``.

    Raises:
        ValueError: for an unknown name, in one line listing the known ones.
    """
    if name not in SYNTHESIS_MODELS:
        raise ValueError(f"unknown synthesis model {name!r}; choose one of {list(SYNTHESIS_MODELS)}")
    return SYNTHESIS_MODELS[name]
