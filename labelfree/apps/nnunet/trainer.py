"""``nnUNetTrainerSynTumor``: nnU-Net v2 training with synthetic tumors painted on the fly.

The trainer is nnU-Net's own ``nnUNetTrainer`` with one step put in front of its training
augmentation pipeline: :class:`SyntheticTumorTransform`, which paints synthetic tumors
into each training patch in HU (see :mod:`labelfree.apps.nnunet.transform`) before nnU-Net's
spatial, intensity and mirroring augmentations. Validation patches are never painted.
Everything else (planning, patch sampling, network, loss, schedule, checkpoints,
inference) is nnU-Net's.

Settings come from the dataset: the organ profile and synthesis model from the
``labelfree_synthesis`` entry of ``dataset.json`` (``labelfree-synthesize`` writes it; without
it: liver, ellipsoid), the HU window from the plans, the voxel spacing from the
configuration, and the inferior-superior axis from the preprocessed cases' geometry. The
probability of painting a patch is the class attribute ``synthesis_prob`` (0.9), changed,
as nnU-Net's hyperparameters are, by subclassing.

How nnU-Net finds it (see :mod:`labelfree.apps.nnunet.install`): once per environment ::

    labelfree-nnunet install
    nnUNetv2_train 501 3d_fullres all -tr nnUNetTrainerSynTumor -device cpu
"""

from __future__ import annotations

import glob
import os
import pickle

import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from labelfree.apps.nnunet.dataset import SYNTHESIS_KEY
from labelfree.apps.nnunet.normalization import CTWindow, NnunetSetupError, superior_axis
from labelfree.apps.nnunet.transform import PatchPainter


class SyntheticTumorTransform(BasicTransform):
    """nnU-Net (batchgeneratorsv2) transform wrapping a :class:`PatchPainter`.

    Takes and returns nnU-Net's sample dict: ``image`` (C, X, Y, Z) float32 tensor,
    normalised; ``segmentation`` (C, X, Y, Z) int16 tensor, channel 0 the label. Both are
    painted in place (CPU tensors, as nnU-Net's loader makes them).
    """

    def __init__(self, painter: PatchPainter) -> None:
        super().__init__()
        self.painter = painter

    def apply(self, data_dict: dict, **params) -> dict:
        image, seg = data_dict["image"], data_dict["segmentation"]
        if image.ndim != 4:
            raise ValueError(f"synthetic tumors need 3D patches (C, X, Y, Z), got {tuple(image.shape)}")
        # .numpy() of a CPU tensor is a view: painting it paints the tensor.
        self.painter(image.numpy() if isinstance(image, torch.Tensor) else image,
                     seg.numpy() if isinstance(seg, torch.Tensor) else seg)
        return data_dict


class nnUNetTrainerSynTumor(nnUNetTrainer):
    """nnU-Net's default trainer plus on-the-fly synthetic tumors in healthy training patches."""

    #: Probability that a training patch is painted (the original's 0.9).
    synthesis_prob = 0.9

    def get_training_transforms(self, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None) -> BasicTransform:
        """nnU-Net's training pipeline with :class:`SyntheticTumorTransform` as its first step."""
        if len(patch_size) != 3:
            raise NnunetSetupError(f"configuration {self.configuration_name!r} is 2D; synthetic tumors need a 3D "
                                   "configuration (3d_fullres or 3d_lowres)")
        pipeline = nnUNetTrainer.get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm=use_mask_for_norm, is_cascaded=is_cascaded, foreground_labels=foreground_labels,
            regions=regions, ignore_label=ignore_label)
        return ComposeTransforms([SyntheticTumorTransform(self.build_patch_painter())] + list(pipeline.transforms))

    def build_patch_painter(self) -> PatchPainter:
        """The painter of this dataset and configuration (window, spacing, axes, organ, model)."""
        settings = dict(self.dataset_json.get(SYNTHESIS_KEY) or {})
        organ = settings.get("organ", "liver")
        self._check_labels(organ)
        plans = self.plans_manager.plans
        window = CTWindow.from_plans(plans, self.configuration_name, where=f"plans {self.plans_manager.plans_name}")
        spacing = self.configuration_manager.spacing
        axis = self._superior_axis()
        self.print_to_log_file(f"synthetic tumors: organ {organ}, model {settings.get('synthesis', 'ellipsoid')}, "
                               f"p {self.synthesis_prob}, spacing {list(spacing)} mm, superior axis {axis}, "
                               f"CT window {window.lower:.0f}..{window.upper:.0f} HU")
        try:
            return PatchPainter(window, spacing, axis, organ=organ, prob=self.synthesis_prob,
                                synthesis=settings.get("synthesis", "ellipsoid"))
        except (TypeError, ValueError) as e:  # unknown organ or synthesis model in dataset.json
            raise NnunetSetupError(f"dataset.json {SYNTHESIS_KEY} {settings}: {e}") from e

    def _check_labels(self, organ: str) -> None:
        from tumor_synthesis.organs import get_organ_profile

        from labelfree.apps.nnunet.dataset import nnunet_labels

        expected = nnunet_labels(get_organ_profile(organ))
        labels = {k: v for k, v in self.dataset_json["labels"].items()}
        if sorted(labels.values()) != sorted(expected.values()):
            raise NnunetSetupError(f"dataset.json labels {labels} do not follow the {organ} convention {expected} "
                                   "(background 0, organ 1, tumor 2; multi-organ 0..6)")

    def _superior_axis(self) -> int:
        files = sorted(glob.glob(os.path.join(self.preprocessed_dataset_folder, "*.pkl")))
        if not files:
            raise NnunetSetupError(f"{self.preprocessed_dataset_folder}: no preprocessed cases (*.pkl); run "
                                   "nnUNetv2_preprocess first")
        transpose = self.plans_manager.transpose_forward
        axes = {}
        for path in files:
            with open(path, "rb") as f:
                axes[superior_axis(pickle.load(f), transpose, where=path)] = path
        if len(axes) != 1:
            raise NnunetSetupError(f"{self.preprocessed_dataset_folder}: cases disagree on the inferior-superior "
                                   f"axis ({axes}); reorient the raw images to one axis order")
        return next(iter(axes))


class nnUNetTrainerSynTumor_smoke(nnUNetTrainerSynTumor):
    """A few iterations only (1 epoch of 3 iterations, 1 validation iteration): checks a setup, on CPU too."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 3
        self.num_val_iterations_per_epoch = 1
