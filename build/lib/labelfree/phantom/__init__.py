"""Procedural phantom CT: healthy and lesion abdomen / chest cases with labels, in NIfTI.

The default data of the project's demo, tests and benchmarks. Anatomy is defined in world
coordinates (RAS+ mm) from a case seed and sampled at any spacing and orientation.
Abdomen cases carry tumours of the liver, the pancreas or the kidneys (some kidney tumours
exophytic), with single-organ labels (0/1/2) and a multi-organ label in the FreeTumor
convention (0 background, 1 liver, 2 liver tumour, 3 pancreas, 4 pancreas tumour, 5 kidney,
6 kidney tumour); see :mod:`phantom.labels` and, for the files of a data root and how the
multi-organ labels are laid out, :mod:`phantom.dataset`.

Public API:
    generate_case(kind="abdomen"|"chest", seed=0, lesions=False, spacing=(1.0, 1.0, 2.5),
                  orientation="RAS"|"LPS", fov_mm=None, organ=None) -> PhantomCase
    make_phantom_dataset(out_dir, n_healthy=8, n_tumor=4, ..., n_pancreas_tumor=2,
                         n_kidney_tumor=2, ...) -> dataset summary
    add_lesions(image, organ_mask, rng, spacing, style, outside_mask=None)
        -> (image, lesion_mask, records)
    multiorgan_label(organs, tissue), single_organ_label(multiorgan, organ)
"""

from .case import DEFAULT_SPACING, KINDS, ORGANS, PhantomCase, generate_case
from .labels import MULTIORGAN_LABELS, TASK_ORGANS, multiorgan_label, single_organ_label
from .lesions import KIDNEY_LESIONS, LIVER_LESIONS, LUNG_NODULES, PANCREAS_LESIONS, LesionStyle, add_lesions
from .tissues import BTCV_LABELS, CHEST_LABELS, Tissue

__all__ = [
    "BTCV_LABELS",
    "CHEST_LABELS",
    "DEFAULT_SPACING",
    "KIDNEY_LESIONS",
    "KINDS",
    "LIVER_LESIONS",
    "LUNG_NODULES",
    "LesionStyle",
    "MULTIORGAN_LABELS",
    "ORGANS",
    "PANCREAS_LESIONS",
    "PhantomCase",
    "TASK_ORGANS",
    "Tissue",
    "add_lesions",
    "generate_case",
    "make_phantom_dataset",
    "multiorgan_label",
    "single_organ_label",
]


def make_phantom_dataset(*args, **kwargs):
    """Write a phantom data root in the original project's layout; see :func:`phantom.dataset.make_phantom_dataset`."""
    from .dataset import make_phantom_dataset as _make

    return _make(*args, **kwargs)
