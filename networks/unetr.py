"""``from networks.unetr import UNETR`` of the original's scripts: MONAI's UNETR."""

from monai.networks.nets import UNETR

__all__ = ["UNETR"]
