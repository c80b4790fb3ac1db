"""Painting synthetic tumors into one nnU-Net training patch, in HU (no nnU-Net import here).

nnU-Net's data loader crops a patch (larger than the network's, so that rotation and
scaling have room) from a preprocessed, normalised case and hands it to its augmentation
pipeline as ``image`` (C, X, Y, Z) float and ``segmentation`` (C, X, Y, Z) int16 (-1 where
the patch was padded). :class:`PatchPainter` is the first step of that pipeline
(:mod:`labelfree.apps.nnunet.trainer` wraps it as an nnU-Net transform):

1. with probability ``prob`` (0.9, the original's), converts channel 0 to HU
   (:class:`~labelfree.apps.nnunet.normalization.CTWindow`);
2. orders the axes so that the inferior-superior one is last (the engine's placement band
   and in-plane erosion need it) with the patch's voxel spacing in mm (the plans' target
   spacing of the configuration);
3. paints with ``tumor_synthesis.TumorGenerated`` (the organ profile and synthesis model
   of the dataset), which leaves the patch as it is when its label already holds a tumor
   (real-tumor cases can be mixed in) or holds no organ;
4. clips to nnU-Net's CT window, normalises again and writes the changed voxels back; the
   new tumor voxels get the profile's tumor label (2; nnU-Net's labels of the organ's
   convention).

Randomness: nnU-Net's pipeline draws from numpy's global generator, which its augmenter
seeds separately in every worker process; the painter draws one 32-bit seed from it per
patch and hands it to ``TumorGenerated.set_random_state``, so workers paint different
tumors and a seeded single-process loader (``nnUNet_n_proc_DA=0``) is reproducible.
"""

from __future__ import annotations

import numpy as np

from labelfree.apps.nnunet.normalization import CTWindow


class PatchPainter:
    """Paints synthetic tumors into normalised nnU-Net patches.

    Args:
        window: the dataset's CT normalisation (HU).
        spacing: voxel size (mm) along the patch's three axes (the configuration's spacing).
        superior_axis: the patch axis that runs inferior-superior.
        organ: organ profile name (``tumor_synthesis.organs``).
        prob: probability of painting a patch.
        synthesis: synthesis model of the engine; passed on only when not ``"ellipsoid"``.
    """

    def __init__(self, window: CTWindow, spacing, superior_axis: int, organ: str = "liver", prob: float = 0.9,
                 synthesis: str = "ellipsoid") -> None:
        from tumor_synthesis import TumorGenerated

        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        if superior_axis not in (0, 1, 2):
            raise ValueError(f"superior_axis must be 0, 1 or 2, got {superior_axis}")
        self.window = window
        self.prob = float(prob)
        self.order = tuple(a for a in range(3) if a != superior_axis) + (int(superior_axis),)
        self.inverse = tuple(int(i) for i in np.argsort(self.order))
        spacing = tuple(float(s) for s in spacing)
        kwargs = {"synthesis": synthesis} if synthesis != "ellipsoid" else {}
        # prob 1: whether to paint is decided here, from nnU-Net's generator.
        self.transform = TumorGenerated(keys=("image", "label"), prob=1.0, organ=organ,
                                        spacing=tuple(spacing[a] for a in self.order), **kwargs)
        self.tumor_labels = tuple(m.tumor_label for m in self.transform.profile.members)

    def __call__(self, image: np.ndarray, seg: np.ndarray, rng=np.random) -> bool:
        """Paint in place; returns whether any tumor voxel was painted.

        Args:
            image: (C, X, Y, Z) float32 normalised patch; channel 0 is painted.
            seg: (C, X, Y, Z) integer label patch; channel 0 is the label (-1: padding).
            rng: numpy's global generator (nnU-Net's), or anything with ``uniform`` and
                ``randint``.
        """
        if rng.uniform() >= self.prob:
            return False
        seed = int(rng.randint(0, 2**32, dtype=np.int64))
        hu = self.window.to_hu(image[0]).transpose(self.order)
        label = np.clip(seg[0], 0, None).astype(np.uint8).transpose(self.order)
        out = self.transform.set_random_state(seed=seed)({"image": hu[None].copy(), "label": label[None].copy()})
        new_label = np.asarray(out["label"])[0]
        painted = np.isin(new_label, self.tumor_labels) & ~np.isin(label, self.tumor_labels)
        if not painted.any():
            return False
        new_hu = np.asarray(out["image"])[0]
        changed = (new_hu != hu).transpose(self.inverse)
        image[0][changed] = self.window.from_hu(new_hu.transpose(self.inverse)[changed])
        painted, new_label = painted.transpose(self.inverse), new_label.transpose(self.inverse)
        seg[0][painted] = new_label[painted]
        return True
