"""nnU-Net v2 integration: raw datasets and an nnU-Net trainer that paints synthetic tumors on the fly.

* :mod:`labelfree.nnunet.dataset`: ``dataset.json`` of an nnU-Net v2 raw dataset (no
  nnU-Net needed; the offline generator writes it).
* :mod:`labelfree.nnunet.normalization`: HU <-> nnU-Net's CT normalisation, from the plans.
* :mod:`labelfree.nnunet.transform`: the painting step in nnU-Net's augmentation pipeline.
* :mod:`labelfree.nnunet.trainer`: ``nnUNetTrainerSynTumor`` (needs the ``nnunet`` extra).
* ``python -m labelfree.nnunet``: prints the one line that lets ``nnUNetv2_train`` find the
  trainer (``export nnUNet_extTrainer=...``).

Importing this package does not import nnU-Net.
"""
