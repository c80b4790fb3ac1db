"""The folder that ``nnUNet_extTrainer`` points at (``python -m labelfree.nnunet --trainer_dir``).

nnU-Net imports every module of this folder as a top-level module while it looks a trainer
up by class name; :mod:`labelfree_trainers` only re-exports the classes of
:mod:`labelfree.nnunet.trainer`, so nothing is defined twice.
"""
