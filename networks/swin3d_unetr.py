"""``from networks.swin3d_unetr import SwinUNETR`` of the original's scripts: MONAI's Swin-UNETR (v1)."""

from monai.networks.nets import SwinUNETR

__all__ = ["SwinUNETR"]
