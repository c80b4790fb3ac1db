"""``TumorCaseDatad``: the deterministic dictionary transform that computes a case's synthesis facts once.

See :mod:`tumor_synthesis.case_data` for what the facts are and when they are valid.
"""

from __future__ import annotations

from typing import Hashable, Mapping

from monai.config import KeysCollection
from monai.transforms import MapTransform

from tumor_synthesis.array import TumorGenerate
from tumor_synthesis.case_data import CASE_DATA_KEY


class TumorCaseDatad(MapTransform):
    """Deterministic dictionary transform: adds the :class:`CaseData` of a sample under ``case_key``.

    Place it in the cached prefix of a pipeline, directly before ``TumorGenerated`` and with
    the same keys and synthesis options (organ, spacing, surface rim, ...), so that every
    draw reuses it; see the module docstring. Arrays: channel-first (1, H, W, D) image (HU)
    and label, numpy or torch.

    Args:
        keys: the image key and the label key, in that order.
        case_key: key the case data are stored under (``TumorGenerated`` reads
            :data:`CASE_DATA_KEY`).
        synthesis_options: ``TumorGenerate``'s keyword arguments (organ, spacing,
            surface_rim_mm, ...), as given to the ``TumorGenerated`` that follows.
    """

    def __init__(self, keys: KeysCollection = ("image", "label"), case_key: str = CASE_DATA_KEY,
                 **synthesis_options) -> None:
        super().__init__(keys)
        if len(self.keys) != 2:
            raise ValueError(f"TumorCaseDatad needs exactly two keys (image, label), got {self.keys}")
        self.synthesis = TumorGenerate(**{**synthesis_options, "prob": 1.0})
        self.case_key = case_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        image_key, label_key = self.keys
        d[self.case_key] = self.synthesis.case_data(d[image_key], d[label_key])
        return d
