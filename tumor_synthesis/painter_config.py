"""What a trained tumor painter was made for: the part its model file shares across kinds.

The learned generator (:mod:`tumor_synthesis.learned`) and the diffusion model
(:mod:`tumor_synthesis.diffusion`) both repaint the engine's tumors inside the organ, within a
bound in HU, with the organ profile's sign, on crops of a fixed window and spacing; each kind
adds its own fields to :class:`PainterConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class PainterConfig:
    """Fields every painter's model file holds.

    Attributes:
        organ: organ profile name (``tumor_synthesis.organs``).
        window: ``(a_min, a_max)`` HU the crops were windowed with (mapped to [0, 1]).
        spacing: voxel size (mm) of the crops.
        sign: -1 tumors darker than the organ, +1 brighter (the organ profile's sign).
        max_offset_hu: bound of the painted change's magnitude in HU.
        channels: feature channels per UNet level (each level but the last halves the crop).
    """

    organ: str
    window: tuple[float, float]
    spacing: tuple[float, float, float]
    sign: int
    max_offset_hu: float = 150.0
    channels: tuple[int, ...] = (16, 32, 64)

    #: What the messages call this kind of painter.
    kind_name: ClassVar[str] = "painter"

    def __post_init__(self) -> None:
        if self.sign not in (-1, 1):
            raise ValueError(f"{self.kind_name} sign must be -1 or +1, got {self.sign}")
        if not self.max_offset_hu > 0:
            raise ValueError(f"the largest change must be positive, got {self.max_offset_hu} HU")
        if len(self.channels) < 2:
            raise ValueError(f"the {self.kind_name} needs at least two UNet levels, got channels {self.channels}")

    @property
    def max_offset(self) -> float:
        """The bound in window units ([0, 1] spans the window)."""
        return self.max_offset_hu / (self.window[1] - self.window[0])

    @property
    def divisor(self) -> int:
        """Crop and window sizes must be multiples of this (the UNet's downsampling)."""
        return 2 ** (len(self.channels) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @staticmethod
    def shared_fields(d: Mapping[str, Any]) -> dict[str, Any]:
        """The shared fields of a stored config, typed (JSON and checkpoints keep lists, not tuples)."""
        return {"organ": str(d["organ"]), "window": tuple(float(x) for x in d["window"]),
                "spacing": tuple(float(x) for x in d["spacing"]), "sign": int(d["sign"]),
                "max_offset_hu": float(d["max_offset_hu"]), "channels": tuple(int(c) for c in d["channels"])}
