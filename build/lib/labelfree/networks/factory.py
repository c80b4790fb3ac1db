"""Build the segmentation networks of the original project from MONAI components.

Both networks map a (B, in_channels, H, W, D) patch to (B, out_channels, H, W, D) logits.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn
from monai.networks.nets import SwinUNETR, UNet
from monai.utils import optional_import

MODEL_NAMES = ("unet", "swin_unetrv2")

#: Swin-UNETR size variants of the original: --swin_type -> embedding feature size.
SWIN_FEATURE_SIZES = {"tiny": 12, "small": 24, "base": 48}

# Original UNet: five levels, each halving the resolution (so patches must be divisible by 16).
UNET_CHANNELS = (16, 32, 64, 128, 256)
UNET_STRIDES = (2, 2, 2, 2)
UNET_RESIDUAL_UNITS = 2

# Swin-UNETR: patch embedding 2 then four stages of 2x merging -> patches divisible by 32.
SWIN_DEPTHS = (2, 2, 2, 2)
SWIN_HEADS = (3, 6, 12, 24)
SWIN_WINDOW = 7
SWIN_PATCH = 2


def build_model(
    name: str,
    in_channels: int = 1,
    out_channels: int = 3,
    roi_size: Sequence[int] = (96, 96, 96),
    swin_type: str = "base",
    feature_size: int | None = None,
    use_v2: bool = True,
) -> nn.Module:
    """Create a network in the original project's configuration.

    Args:
        name: ``"unet"`` (MONAI UNet, channels 16-32-64-128-256, strides 2-2-2-2, 2 residual
            units) or ``"swin_unetrv2"`` (MONAI SwinUNETR, depths 2-2-2-2, heads 3-6-12-24,
            window 7).
        in_channels: image channels (1 for CT).
        out_channels: classes including background (3: background, organ, tumor).
        roi_size: training / sliding-window patch size in voxels (H, W, D); checked against
            the network's down-sampling factor so a bad ``--roi_x/y/z`` fails here, not
            deep inside a forward pass.
        swin_type: ``tiny`` / ``small`` / ``base`` -> feature size 12 / 24 / 48.
        feature_size: explicit Swin feature size; overrides ``swin_type``. MONAI's
            Swin-UNETR requires a multiple of 12.
        use_v2: Swin-UNETR v2 (a residual convolution block before every Swin stage), the
            variant the original trained.

    Returns:
        The network, on CPU, in training mode.
    """
    roi_size = check_model_args(name, roi_size, swin_type, feature_size)
    if name == "unet":
        return UNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=UNET_CHANNELS,
            strides=UNET_STRIDES,
            num_res_units=UNET_RESIDUAL_UNITS,
        )
    return SwinUNETR(
        in_channels=in_channels,
        out_channels=out_channels,
        patch_size=SWIN_PATCH,
        depths=SWIN_DEPTHS,
        num_heads=SWIN_HEADS,
        window_size=SWIN_WINDOW,
        feature_size=feature_size or SWIN_FEATURE_SIZES[swin_type],
        use_v2=use_v2,
    )


def check_model_args(
    name: str, roi_size: Sequence[int], swin_type: str = "base", feature_size: int | None = None
) -> tuple[int, int, int]:
    """Validate a model configuration without building it (cheap: run it before caching data).

    Returns:
        ``roi_size`` as a tuple of ints.

    Raises:
        ValueError: unknown name / swin_type, a feature size MONAI rejects, or a patch size
            the network's down-sampling cannot divide.
        ImportError: Swin-UNETR without the ``einops`` package.
    """
    roi_size = tuple(int(r) for r in roi_size)
    if len(roi_size) != 3:
        raise ValueError(f"roi_size must have 3 entries (H, W, D), got {roi_size}")
    if name == "unet":
        _check_divisible(roi_size, 16, name)
    elif name == "swin_unetrv2":
        if feature_size is None and swin_type not in SWIN_FEATURE_SIZES:
            raise ValueError(f"unknown swin_type {swin_type!r}; choose one of {sorted(SWIN_FEATURE_SIZES)}")
        if feature_size is not None and feature_size % 12 != 0:
            raise ValueError(f"Swin-UNETR feature_size must be a multiple of 12, got {feature_size}")
        _check_divisible(roi_size, 32, name)
        if min(roi_size) < 64:
            # The bottleneck would be 1 voxel, which instance normalisation cannot train on.
            raise ValueError(f"{name} needs a patch of at least 64 voxels in every axis, got roi {roi_size}")
        _require_einops()
    else:
        raise ValueError(f"unknown model name {name!r}; choose one of {list(MODEL_NAMES)}")
    return roi_size


def _require_einops() -> None:
    # MONAI's SwinUNETR imports einops lazily and fails only at the first forward pass.
    _, available = optional_import("einops")
    if not available:
        raise ImportError("--model_name swin_unetrv2 needs the 'einops' package (pip install einops)")


def _check_divisible(roi_size: tuple[int, ...], factor: int, name: str) -> None:
    if any(r % factor for r in roi_size):
        raise ValueError(f"{name} needs a patch size divisible by {factor} in every axis, got roi {roi_size}")
