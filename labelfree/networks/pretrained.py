"""Self-supervised Swin-ViT encoder weights (MONAI's ``model_swinvit.pt``) for Swin-UNETR.

The published file holds ``{"state_dict": {"module.<encoder key>": tensor, ...}}`` (the
encoder was trained wrapped in DataParallel); some re-exports use ``swin_vit.`` or
``swinViT.`` instead. Its transformer blocks name their MLP layers ``mlp.fc1`` / ``mlp.fc2``
where current MONAI says ``mlp.linear1`` / ``mlp.linear2`` (the names MONAI's own
``SwinUNETR.load_from`` reads from the file). Only the encoder (``model.swinViT``) is
initialised; the decoder keeps its random initialisation.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch.nn as nn

from labelfree.io.checkpoint import CheckpointError, load_checkpoint

_ENCODER_PREFIXES = ("module.", "swin_vit.", "swinViT.")
_RENAMED = ((".mlp.fc1.", ".mlp.linear1."), (".mlp.fc2.", ".mlp.linear2."))
# Swin-UNETR v2 adds a residual conv block before each stage (layers1c ... layers4c); the
# self-supervised weights predate v2, so those blocks legitimately stay random.
_V2_ONLY_KEY = re.compile(r"^layers\dc\.")


class PretrainedWeightsError(CheckpointError):
    """The pretrained encoder file is missing, unreadable or does not fit the encoder."""


def load_swinvit_weights(model: nn.Module, path: str | os.PathLike) -> dict:
    """Copy self-supervised Swin-ViT weights into ``model.swinViT``.

    Args:
        model: a MONAI SwinUNETR (v1 or v2).
        path: the pretrained file, e.g. ``model_swinvit.pt``.

    Returns:
        ``{"loaded": n, "ignored": m}``: encoder tensors loaded, and extra tensors in the file
        (e.g. self-supervised heads) that the encoder has no place for.

    Raises:
        PretrainedWeightsError: naming the file when it is missing or unreadable, or when
            encoder weights are missing from it or have other shapes (a different feature
            size, e.g. ``--swin_type`` tiny weights into a base model).
    """
    path = Path(path)
    encoder = getattr(model, "swinViT", None)
    if encoder is None:
        raise PretrainedWeightsError(f"{type(model).__name__} has no Swin-ViT encoder to load {path} into")
    if not path.is_file():
        raise PretrainedWeightsError(
            f"pretrained Swin-ViT weights not found: {path} (download MONAI's model_swinvit.pt "
            "or point --pretrained_swinvit at it)"
        )
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as e:
        raise PretrainedWeightsError(str(e)) from e
    weights = checkpoint.get("state_dict", checkpoint)
    weights = {_encoder_key(k): v for k, v in weights.items()}

    expected = encoder.state_dict()
    required = [k for k in expected if not _V2_ONLY_KEY.match(k)]
    missing = [k for k in required if k not in weights]
    mismatched = [
        f"{k}: file {tuple(weights[k].shape)} vs encoder {tuple(expected[k].shape)}"
        for k in expected
        if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)
    ]
    if missing or mismatched:
        details = []
        if missing:
            details.append(f"{len(missing)} encoder tensors missing (e.g. {', '.join(missing[:3])})")
        if mismatched:
            details.append(f"{len(mismatched)} with other shapes (e.g. {'; '.join(mismatched[:3])})")
        raise PretrainedWeightsError(
            f"pretrained weights {path} do not match the Swin-ViT encoder (wrong --swin_type?): " + ", ".join(details)
        )
    matched = {k: v for k, v in weights.items() if k in expected}
    encoder.load_state_dict(matched, strict=False)
    return {"loaded": len(matched), "ignored": len(weights) - len(matched)}


def _encoder_key(key: str) -> str:
    """The file's key as a key of ``model.swinViT.state_dict()``."""
    for prefix in _ENCODER_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    for old, new in _RENAMED:
        key = key.replace(old, new)
    return key
