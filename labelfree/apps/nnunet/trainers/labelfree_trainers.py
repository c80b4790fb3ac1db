"""Re-exports this project's nnU-Net trainers for nnU-Net's lookup by class name (see __init__)."""

from labelfree.apps.nnunet.trainer import nnUNetTrainerSynTumor, nnUNetTrainerSynTumor_smoke

__all__ = ["nnUNetTrainerSynTumor", "nnUNetTrainerSynTumor_smoke"]
