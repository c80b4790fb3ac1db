"""``from networks.swin3d_unetrv2 import SwinUNETR`` of the original's scripts: Swin-UNETR v2.

MONAI's ``SwinUNETR`` with ``use_v2=True`` (a residual convolution block before every Swin stage),
the network ``labelfree.networks.build_model("swin_unetrv2", ...)`` builds.
"""

from functools import partialmethod

from monai.networks.nets import SwinUNETR as _MonaiSwinUNETR


class SwinUNETR(_MonaiSwinUNETR):
    """MONAI's ``SwinUNETR`` with ``use_v2=True`` by default (the original's ``swin3d_unetrv2``)."""

    __init__ = partialmethod(_MonaiSwinUNETR.__init__, use_v2=True)


__all__ = ["SwinUNETR"]
