"""Learned tumor intensity, as FreeTumor: a generator paints the engine's tumor shapes.

The engine still decides *where* tumors are and *what shape* they have (the original's
ellipsoids, :mod:`tumor_synthesis.engine`); a small 3D UNet decides *how they look*. It sees,
per training crop (intensities already windowed to [0, 1]):

1. the healthy crop,
2. the synthetic tumor mask, blurred (the engine's shapes),
3. the engine's own handcrafted change (healthy minus painted, in units of the largest offset):
   the engine's texture field as the engine applied it (texture x blurred mask x contrast),

and predicts a bounded per-voxel offset: ``sign * max_offset * sigmoid(raw)`` with the organ
profile's sign (darker for liver, pancreas and kidney; brighter for lung nodules). The painted
crop is ``healthy + offset * blurred mask * organ``, so voxels outside the organ never change
(the engine's invariant), and the label stays the engine's tumor inside the organ.

The discriminator is voxel-wise with three classes (background, real tumor, synthetic tumor);
it is only used while the generator trains (``labelfree.cli.syn_train``). The generator's loss is
FreeTumor's: ``adv_weight * (1 - mean P_D(real | synthetic voxels)) + seg_weight * (1 - mean
P_S(tumor | synthetic voxels))`` with a frozen segmentor S trained on real tumors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import ResidualUnit, UpSample
from monai.networks.layers import GaussianFilter

from tumor_synthesis.painter_config import PainterConfig

#: Voxel classes of the discriminator.
BACKGROUND, REAL_TUMOR, SYNTHETIC_TUMOR = 0, 1, 2


@dataclass(frozen=True)
class GeneratorConfig(PainterConfig):
    """What a trained generator was made for; stored in its checkpoint.

    Attributes (besides :class:`~tumor_synthesis.painter_config.PainterConfig`'s organ, window,
    spacing, sign, max_offset_hu and channels):
        mask_sigma_vox: Gaussian blur (voxels) of the tumor mask the offset is multiplied by.
        roi: crop size (voxels) it was trained on; whole volumes are painted in windows of it
            (:func:`paint_volume`), so that its instance norms see what they saw in training.
    """

    mask_sigma_vox: float = 1.0
    roi: tuple[int, int, int] = (96, 96, 96)

    kind_name: ClassVar[str] = "generator"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GeneratorConfig:
        return cls(**PainterConfig.shared_fields(d), mask_sigma_vox=float(d["mask_sigma_vox"]),
                   roi=tuple(int(r) for r in d.get("roi", (96, 96, 96))))


class UpsamplingUNet(torch.nn.Module):
    """A small 3D UNet whose decoder upsamples by interpolation, then convolves.

    MONAI's ``UNet`` upsamples with strided transposed convolutions; their uneven kernel
    overlap paints a checkerboard into a generator's output, a texture real CT does not
    have and the discriminator learns at once (seen at phantom scale: texture SD 38 HU vs 15
    HU in real lesions). Trilinear upsampling followed by a convolution has no such pattern.

    The layout is MONAI ``UNet``'s, so that the cost is too: ``channels`` per level, every
    level but the last halves the crop (a residual unit of stride 2), the last is the bottom
    (stride 1); on the way up each level concatenates its skip, convolves (a residual unit)
    and is upsampled x2; the full-resolution output is a 1x1x1 convolution of the upsampled
    features and the input (a 3x3x3 one there would triple the network's cost).
    """

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        c = tuple(int(x) for x in channels)
        n = len(c)
        self.down = torch.nn.ModuleList(
            ResidualUnit(3, c_in, c_out, strides=2 if i < n - 1 else 1, norm="instance", subunits=1)
            for i, (c_in, c_out) in enumerate(zip((in_channels,) + c[:-1], c)))
        # Up the levels, deepest first: each takes what came up and its skip, and hands c[i - 1] up (level 0: c[0]).
        self.up = torch.nn.ModuleList()
        incoming = c[-1]  # the bottom's features
        for i in range(n - 2, -1, -1):
            self.up.append(ResidualUnit(3, incoming + c[i], c[max(i - 1, 0)], norm="instance", subunits=1))
            incoming = c[max(i - 1, 0)]
        self.upsample = UpSample(3, scale_factor=2, mode="nontrainable", interp_mode="trilinear",
                                 align_corners=False)
        self.head = torch.nn.Conv3d(c[0] + in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, features = [], x
        for block in self.down:
            features = block(features)
            skips.append(features)
        up = skips.pop()  # the bottom
        for block in self.up:
            up = self.upsample(block(torch.cat([up, skips.pop()], dim=1)))
        return self.head(torch.cat([up, x], dim=1))


def build_discriminator(channels: Sequence[int] = (16, 32, 64)) -> UpsamplingUNet:
    """Voxel-wise 3-class discriminator (background / real tumor / synthetic tumor) of one image channel.

    The same network as the generator's: a transposed-convolution decoder here would feed
    its checkerboard back into the generator's gradients.
    """
    return UpsamplingUNet(1, 3, channels)


def synthetic_tumor_mask(label: torch.Tensor, healthy_label: torch.Tensor,
                         tumor_labels: Sequence[int]) -> torch.Tensor:
    """Voxels the engine made tumor: tumor now, not before, and inside an organ before."""
    tumors = torch.tensor(tuple(tumor_labels), device=label.device)
    return torch.isin(label, tumors) & (label != healthy_label) & (healthy_label > 0)


class TumorGenerator(torch.nn.Module):
    """The generator and its painting rule (see the module docstring)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.net = UpsamplingUNet(3, 1, config.channels)
        self.blur = GaussianFilter(spatial_dims=3, sigma=config.mask_sigma_vox)
        #: How the offset is laid on (a painting option, not a weight: the organ preset's
        #: ``Preset.learned``). False (the original): times the blurred mask, so the darkening
        #: spreads a voxel or two past the label (the halo). True: times the blurred mask inside
        #: the label only, a soft edge that the label covers; the network's input is unchanged.
        self.inside_label = False

    def paint_options(self, options: Mapping[str, Any]) -> "TumorGenerator":
        """Set the painting options (``inside_label``) from a preset's ``learned`` mapping; returns self.

        Raises:
            ValueError: an unknown option.
        """
        unknown = sorted(set(options) - {"inside_label"})
        if unknown:
            raise ValueError(f"unknown painting options of the learned generator: {unknown} (known: inside_label)")
        self.inside_label = bool(options.get("inside_label", self.inside_label))
        return self

    def forward(self, healthy: torch.Tensor, handcrafted: torch.Tensor, mask: torch.Tensor,
                organ: torch.Tensor) -> torch.Tensor:
        """The painted crops (B, 1, H, W, D).

        Args:
            healthy: healthy crops, windowed to [0, 1].
            handcrafted: the same crops with the engine's tumors painted.
            mask: bool, the synthetic tumor voxels (:func:`synthetic_tumor_mask`).
            organ: bool, the organ voxels of the healthy crop; nothing outside changes.
        """
        c = self.config
        soft = self.blur(mask.float()).clamp(0.0, 1.0) * organ.float()
        engine_change = (c.sign * (handcrafted - healthy) / c.max_offset).clamp(0.0, 1.0) * (soft > 0)
        raw = self.net(torch.cat([healthy, soft, engine_change], dim=1))
        offset = c.sign * c.max_offset * torch.sigmoid(raw.float())
        weight = soft * mask if self.inside_label else soft
        painted = healthy + offset * weight
        # The window clips real CT to [0, 1]; a painted voxel beyond it would be a give-away.
        return torch.where(weight > 0, painted.clamp(0.0, 1.0), healthy)


@torch.no_grad()
def paint_volume(generator: TumorGenerator, healthy: torch.Tensor, handcrafted: torch.Tensor, mask: torch.Tensor,
                 organ: torch.Tensor, overlap: float = 0.25) -> torch.Tensor:
    """Paint a whole (1, 1, H, W, D) volume in sliding windows of the generator's training crop size.

    Voxels outside the organ come back unchanged (in every window, hence in the blend).
    """
    from monai.inferers import sliding_window_inference

    def paint_windows(stacked: torch.Tensor) -> torch.Tensor:
        h, e, m, o = stacked.split(1, dim=1)
        return generator(h, e, m > 0.5, o > 0.5)

    stacked = torch.cat([healthy.float(), handcrafted.float(), mask.float(), organ.float()], dim=1)
    painted = sliding_window_inference(stacked, generator.config.roi, 1, paint_windows, overlap=overlap,
                                       mode="gaussian", padding_mode="replicate")
    return torch.where(organ, painted, healthy)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` (0 when the mask is empty)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def generator_loss(disc_logits: torch.Tensor, seg_logits: torch.Tensor | None, label: torch.Tensor,
                   mask: torch.Tensor, adv_weight: float, seg_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """FreeTumor's generator loss over the synthetic voxels, and its two terms.

    ``seg_logits``: the frozen segmentor's output on the painted crops (``None``: no term);
    the probability taken is that of each voxel's own tumor class in ``label``.
    """
    p_real = torch.softmax(disc_logits.float(), dim=1)[:, REAL_TUMOR:REAL_TUMOR + 1]
    adversarial = 1.0 - masked_mean(p_real, mask)
    loss = adv_weight * adversarial
    terms = {"adversarial": adversarial.item()}
    if seg_logits is not None:
        p_tumor = torch.softmax(seg_logits.float(), dim=1).gather(1, label.long())
        segmentor = 1.0 - masked_mean(p_tumor, mask)
        loss = loss + seg_weight * segmentor
        terms["segmentor"] = segmentor.item()
    return loss, terms


def discriminator_targets(tumor: torch.Tensor, tumor_class: int) -> torch.Tensor:
    """(B, H, W, D) class map: ``tumor_class`` on the tumor voxels, background elsewhere."""
    return torch.where(tumor[:, 0], tumor_class, BACKGROUND).long()


def discriminator_loss(logits: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Cross-entropy balanced over the classes present: each class weighs the same.

    Tumor voxels are a few per cent of a crop; an unweighted loss would let the
    discriminator answer "background" everywhere.
    """
    logits_all = torch.cat([x.float() for x in logits])
    target_all = torch.cat(list(targets))
    per_voxel = F.cross_entropy(logits_all, target_all, reduction="none")
    terms = [per_voxel[target_all == c].mean() for c in (BACKGROUND, REAL_TUMOR, SYNTHETIC_TUMOR)
             if bool((target_all == c).any())]
    return torch.stack(terms).mean()


@dataclass
class GeneratorState:
    """The parts of a generator checkpoint ``main.py`` needs."""

    config: GeneratorConfig
    weights: dict[str, torch.Tensor] = field(repr=False)

    def build(self, device: torch.device | str = "cpu") -> TumorGenerator:
        generator = TumorGenerator(self.config)
        generator.load_state_dict(self.weights, strict=True)
        return generator.to(device)
