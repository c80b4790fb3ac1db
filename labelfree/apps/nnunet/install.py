"""Making nnU-Net find this project's trainers by name (``nnUNetv2_train ... -tr nnUNetTrainerSynTumor``).

nnU-Net v2 (``recursive_find_trainer_class_by_name``, used by ``nnUNetv2_train``,
``run_training(..., trainer_class_name=...)`` and ``nnUNetv2_predict``) looks a trainer up by
class name: it imports the modules of the ``nnunetv2.training.nnUNetTrainer`` package, its
top-level modules first, then every subpackage; only when that fails, the folders listed in
the ``nnUNet_extTrainer`` environment variable.

The one step: :func:`install_trainers` (``labelfree-nnunet install``) writes a two-line
module, ``labelfree_trainers.py``, into that package folder; it re-exports the classes of
:mod:`labelfree.apps.nnunet.trainer` (nothing is copied, so upgrading this project upgrades the
trainer). Being a top-level module it is found before nnU-Net imports its own variant
subpackages, some of which import torchvision (through timm), which the CPU-only torch
wheel cannot load (PyPI's torchvision links CUDA torch libraries). The alternative that
writes nothing, ``export nnUNet_extTrainer=$(labelfree-nnunet trainer-dir)``, needs those
imports to work (a CUDA torch install).
"""

from __future__ import annotations

import os
from pathlib import Path

from labelfree.io.atomic import write_text_atomic

MODULE_NAME = "labelfree_trainers.py"
_SHIM = '''"""Written by `labelfree-nnunet install`: this project's nnU-Net trainers, for nnU-Net's lookup by name."""

from labelfree.apps.nnunet.trainer import nnUNetTrainerSynTumor, nnUNetTrainerSynTumor_smoke  # noqa: F401
'''


def trainer_dir() -> Path:
    """The folder to list in ``nnUNet_extTrainer`` (holds the same re-exporting module)."""
    return Path(__file__).resolve().parent / "trainers"


def nnunet_trainer_package() -> Path:
    """The installed ``nnunetv2/training/nnUNetTrainer`` folder (imports nnunetv2, not its trainers)."""
    import nnunetv2

    return Path(nnunetv2.__path__[0]) / "training" / "nnUNetTrainer"


def install_trainers(folder: str | os.PathLike | None = None) -> Path:
    """Write the re-exporting module into nnU-Net's trainer package (or ``folder``); returns its path."""
    target = Path(folder) if folder is not None else nnunet_trainer_package()
    if not target.is_dir():
        raise FileNotFoundError(f"nnU-Net trainer folder not found: {target} (is the nnunet extra installed?)")
    return write_text_atomic(target / MODULE_NAME, _SHIM)


def uninstall_trainers(folder: str | os.PathLike | None = None) -> Path | None:
    """Remove the module written by :func:`install_trainers`; returns its path, or None if absent."""
    path = (Path(folder) if folder is not None else nnunet_trainer_package()) / MODULE_NAME
    if not path.is_file():
        return None
    path.unlink()
    return path
