"""Procedural phantom CT: healthy and lesion abdomen / chest cases with labels, in NIfTI.

The default data of the project's demo, tests and benchmarks. Anatomy is defined in world
coordinates (RAS+ mm) from a case seed and sampled at any spacing and orientation.

Public API:
    generate_case(kind="abdomen"|"chest", seed=0, lesions=False, spacing=(1.0, 1.0, 2.5),
                  orientation="RAS"|"LPS", fov_mm=None) -> PhantomCase
    make_phantom_dataset(out_dir, n_healthy=8, n_tumor=4, ...) -> dataset summary
    add_lesions(image, organ_mask, rng, spacing, style) -> (image, lesion_mask, records)
"""

from .case import DEFAULT_SPACING, KINDS, PhantomCase, generate_case
from .lesions import LIVER_LESIONS, LUNG_NODULES, LesionStyle, add_lesions
from .tissues import BTCV_LABELS, CHEST_LABELS, Tissue

__all__ = [
    "BTCV_LABELS",
    "CHEST_LABELS",
    "DEFAULT_SPACING",
    "KINDS",
    "LIVER_LESIONS",
    "LUNG_NODULES",
    "LesionStyle",
    "PhantomCase",
    "Tissue",
    "add_lesions",
    "generate_case",
    "make_phantom_dataset",
]


def make_phantom_dataset(*args, **kwargs):
    """Write a phantom data root in the original project's layout; see :func:`phantom.dataset.make_phantom_dataset`."""
    from .dataset import make_phantom_dataset as _make

    return _make(*args, **kwargs)
