"""Segmentation networks: the original's UNet and Swin-UNETR (v2) configurations."""

from labelfree.networks.factory import MODEL_NAMES, SWIN_FEATURE_SIZES, build_model, check_model_args
from labelfree.networks.pretrained import PretrainedWeightsError, load_swinvit_weights

__all__ = [
    "MODEL_NAMES",
    "SWIN_FEATURE_SIZES",
    "build_model",
    "check_model_args",
    "PretrainedWeightsError",
    "load_swinvit_weights",
]
