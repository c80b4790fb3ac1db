"""nnU-Net v2 integration: raw datasets and an nnU-Net trainer that paints synthetic tumors on the fly.

* :mod:`labelfree.apps.nnunet.dataset`: ``dataset.json`` of an nnU-Net v2 raw dataset (no
  nnU-Net needed; the offline generator writes it).
* :mod:`labelfree.apps.nnunet.normalization`: HU <-> nnU-Net's CT normalisation, from the plans.
* :mod:`labelfree.apps.nnunet.transform`: the painting step in nnU-Net's augmentation pipeline.
* :mod:`labelfree.apps.nnunet.trainer`: ``nnUNetTrainerSynTumor`` (needs the ``nnunet`` extra).
* :mod:`labelfree.apps.nnunet.install` and ``labelfree-nnunet install`` (:mod:`labelfree.apps.nnunet.cli`):
  the one step that lets ``nnUNetv2_train ... -tr nnUNetTrainerSynTumor`` find the trainer.

Importing this package does not import nnU-Net.
"""
