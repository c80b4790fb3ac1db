"""The folder ``nnUNet_extTrainer`` can point at (``labelfree-nnunet trainer-dir``).

nnU-Net imports every module of this folder as a top-level module while it looks a trainer
up by class name; :mod:`labelfree_trainers` only re-exports the classes of
:mod:`labelfree.apps.nnunet.trainer`, so nothing is defined twice. ``labelfree-nnunet install``
writes the same module into nnU-Net's own trainer package (see :mod:`labelfree.apps.nnunet.install`).
"""
