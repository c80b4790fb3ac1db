"""Sliding-window inference restricted to the region of the scan that can hold the organ.

Sliding-window inference over the whole field of view spends most of its windows on air and
body wall. ``--roi_mode`` restricts the windows to a box:

* ``none`` (default): MONAI's ``sliding_window_inference`` over the whole volume (the original).
* ``body``: the bounding box of the body, from an intensity threshold on the preprocessed
  image (:data:`BODY_THRESHOLD_HU`, converted to the network's input units). The organ lies
  inside the body, so inside the box the result is the full sliding window's and outside it
  nothing but air and the table is skipped. Not the default: the box is widened to whole
  windows of the full grid, and on a 512 x 512 axial field of view at the original command's
  geometry (1 mm, 96^3, overlap 0.75) every window still reaches the body box, so it skips
  none and pays for the box, while outside the box its labels are background instead of the
  network's (results record 2026-12-05, synthesis speed).
* ``organ``: the body box, then one coarse pass of the same network over it (windows of the
  same size without overlap or blending: every voxel is seen once, at the training voxel
  size, so the organ looks as it did in training) gives a box around the predicted organ(s),
  widened by ``organ_margin`` voxels; the full-overlap pass then runs over that box only,
  leaving out the windows that reach the box only with their rim (``organ_trim``): faster,
  and close to (not equal to) the full sliding window at the box's edge.

Outside the box the prediction is background: the logits are ``0`` for class 0 and
``-OUTSIDE_LOGIT_MARGIN`` for every other class (softmax: background with probability 1 in
float32; a bounded cross-entropy, so a validation loss stays finite).

Geometry (why the box result equals the full sliding window): MONAI places windows of size
``r`` along an axis of length ``n`` at ``0, s, 2s, ...`` with ``s = int(r (1 - overlap))``,
the last one moved back to end at ``n``; each voxel's output is the Gaussian-weighted mean of
the windows that cover it. The box is widened to the smallest *grid-aligned crop* that holds
every full-volume window intersecting the box: it starts at a window start ``k s`` of the full
grid and ends at the end of a full-grid window. MONAI's grid on that crop is then exactly the
subset of the full-volume windows inside it, in the same order, so every voxel of the box
sees the same windows with the same image content and weights as in the full pass: equal up
to floating-point noise (a different grouping of windows into ``sw_batch_size`` batches).

All tensors are channel first: ``(B, C, H, W, D)`` batches, boxes are ``((start, stop), ...)``
in voxels of the network's (resampled) grid along H, W, D.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from monai.utils import convert_to_dst_type
from scipy import ndimage

ROI_MODES = ("none", "body", "organ")
DEFAULT_ROI_MODE = "none"
#: Air is about -1000 HU, fat about -100 HU, every other tissue above: -500 HU separates the
#: body from the air around it. With an intensity window starting above it (liver: -21 HU),
#: the window's lower end is used instead (fat then counts as outside, the skin and muscle
#: around it do not, so the box is the same).
BODY_THRESHOLD_HU = -500.0
#: Background logit minus every other class's logit outside the ROI.
OUTSIDE_LOGIT_MARGIN = 30.0
#: Max-pooling factor (voxels) of the body mask before its connected components are counted.
BODY_POOL = 4
#: Components of the body mask smaller than this fraction of the largest are ignored (specks).
BODY_MIN_FRACTION = 0.01
#: Coarse-pass components smaller than this fraction of their class's largest are ignored.
ORGAN_MIN_FRACTION = 0.2
#: Voxels added around the coarse organ box on every side.
DEFAULT_ORGAN_MARGIN = 8
#: ``organ`` mode: fraction of the window cut off each side before testing whether a window
#: reaches the organ box. A window left out this way touches the box only with the outer
#: quarter of its width, where the Gaussian (sigma = 1/8 of the window) weighs at most
#: exp(-2) = 0.14 of its centre; 8 voxels inside the box, at most exp(-3.6) = 0.03 (96^3).
DEFAULT_ORGAN_TRIM = 0.25
#: Windows per forward pass when ``--sw_batch_size`` is not given: batching fills a GPU; on a
#: CPU it saves nothing and only multiplies the memory of the activations.
DEFAULT_SW_BATCH_SIZE = {"cuda": 4, "cpu": 1}

Box = tuple[tuple[int, int], ...]


def add_roi_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The ``--roi_mode`` flag (validation.py and main.py's in-training validation)."""
    group = parser.add_argument_group("ROI-restricted sliding-window inference")
    group.add_argument(
        "--roi_mode", default=DEFAULT_ROI_MODE, choices=ROI_MODES,
        help="where sliding windows are placed: none (default) = the whole volume (the original); body = the "
             "body's bounding box (HU threshold), identical results inside it, background outside (skips windows "
             "only where the body is far smaller than the field of view); organ = a coarse pass of the same "
             "network finds the organ, windows only around it (fastest, not exact)",
    )
    return group


def resolve_sw_batch_size(sw_batch_size: int | None, device: torch.device | str) -> int:
    """``sw_batch_size`` itself, or the device's default (:data:`DEFAULT_SW_BATCH_SIZE`) when ``None``."""
    if sw_batch_size is not None:
        return int(sw_batch_size)
    return DEFAULT_SW_BATCH_SIZE.get(torch.device(device).type, 1)


def body_threshold(a_min: float, a_max: float, hu: float = BODY_THRESHOLD_HU) -> float:
    """``hu`` in the units of the preprocessed image (``a_min..a_max`` HU -> 0..1, clipped).

    A threshold below the window's lower end maps to 0: voxels strictly above ``a_min`` count.
    """
    if not a_max > a_min:
        raise ValueError(f"the intensity window needs a_max > a_min, got {a_min}..{a_max}")
    return float(np.clip((hu - a_min) / (a_max - a_min), 0.0, 1.0))


# ---------------------------------------------------------------------------- window grid
def scan_interval(size: int, roi: int, overlap: float) -> int:
    """MONAI's step between window starts along one axis (``size`` already padded to >= ``roi``)."""
    if size == roi:
        return roi
    return max(int(roi * (1 - overlap)), 1)


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Starts of MONAI's windows along one axis of ``size`` voxels (one window if ``size <= roi``)."""
    if size <= roi:
        return [0]
    step = scan_interval(size, roi, overlap)
    starts = []
    for k in range(int(np.ceil(size / step))):
        starts.append(min(k * step, size - roi))
        if k * step + roi >= size:
            break
    return starts


def count_windows(shape: Sequence[int], roi_size: Sequence[int], overlap: float) -> int:
    """Number of windows MONAI's sliding window places on a volume of ``shape`` (H, W, D) voxels."""
    return int(np.prod([len(window_starts(n, r, overlap)) for n, r in zip(shape, roi_size)]))


def aligned_crop(box: Box, shape: Sequence[int], roi_size: Sequence[int], overlap: float,
                 trim: Sequence[int] | None = None) -> Box:
    """The smallest crop holding every full-volume window that intersects ``box``.

    It starts at a window start of the full-volume grid and ends at a window end, so MONAI's
    grid on the crop is the subset of the full grid inside it (see the module docstring).
    An axis no longer than the window keeps its whole length (MONAI pads it the same way).

    Args:
        trim: voxels per axis cut off each side of a window before testing whether it
            intersects ``box`` (0: exact). Windows that reach the box only with their rim,
            where the Gaussian weight is small, are then left out.
    """
    trim = trim or (0,) * len(box)
    crop = []
    for (lo, hi), n, r, t in zip(box, shape, roi_size, trim):
        if n <= r:
            crop.append((0, n))
            continue
        starts = window_starts(n, r, overlap)
        hit = [s for s in starts if s + t < hi and s + r - t > lo] or [s for s in starts if s < hi and s + r > lo]
        crop.append((hit[0], hit[-1] + r))
    return tuple(crop)


# ---------------------------------------------------------------------------- boxes
def body_box(image: torch.Tensor, threshold: float, pool: int = BODY_POOL,
             min_fraction: float = BODY_MIN_FRACTION) -> Box | None:
    """Bounding box of the body in a preprocessed (C, H, W, D) image; ``None`` if nothing is above ``threshold``.

    The voxels above ``threshold`` (network input units, :func:`body_threshold`) are max-pooled
    by ``pool`` voxels (which can only widen the box), their connected components counted, and
    the box taken over the components holding at least ``min_fraction`` of the largest one's
    pooled voxels: isolated specks are ignored, arms and the table are kept (they widen the box,
    they never cut the organ off).
    """
    mask = (image[0] > threshold).float()[None, None]
    pooled = F.max_pool3d(mask, kernel_size=pool, stride=pool, ceil_mode=True)[0, 0].bool().cpu().numpy()
    if not pooled.any():
        return None
    components, n = ndimage.label(pooled, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(components.ravel())[1:]
    keep = np.isin(components, 1 + np.flatnonzero(sizes >= min_fraction * sizes.max()))
    shape = image.shape[1:]
    return tuple((int(lo) * pool, min(int(hi) * pool, int(n_))) for (lo, hi), n_ in zip(_mask_box(keep), shape))


def organ_box(labels: np.ndarray, margin: int = DEFAULT_ORGAN_MARGIN,
              min_fraction: float = ORGAN_MIN_FRACTION) -> Box | None:
    """Box around the foreground of a coarse (H, W, D) label map, widened by ``margin`` voxels.

    For each foreground class, the components holding at least ``min_fraction`` of that
    class's largest component count (so both kidneys of one label do, a stray speck does not).
    ``None`` when no foreground class is predicted. The box is not clipped to the volume.
    """
    keep = np.zeros(labels.shape, bool)
    for c in np.unique(labels):
        if c == 0:
            continue
        components, _ = ndimage.label(labels == c, structure=np.ones((3, 3, 3), bool))
        sizes = np.bincount(components.ravel())[1:]
        keep |= np.isin(components, 1 + np.flatnonzero(sizes >= min_fraction * sizes.max()))
    if not keep.any():
        return None
    return tuple((lo - margin, hi + margin) for lo, hi in _mask_box(keep))


def _mask_box(mask: np.ndarray) -> Box:
    """Half-open bounding box of a non-empty boolean mask."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append((int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def _clip_box(box: Box, within: Box) -> Box:
    return tuple((max(lo, wlo), min(hi, whi)) for (lo, hi), (wlo, whi) in zip(box, within))


def _slices(box: Box) -> tuple[slice, ...]:
    return tuple(slice(lo, hi) for lo, hi in box)


# ---------------------------------------------------------------------------- inference
@dataclass
class RoiStats:
    """What one case's inference did.

    Attributes:
        mode: the ROI mode used.
        shape: (H, W, D) of the volume, voxels.
        box: the ROI whose prediction is kept (the whole volume for ``none`` or when no
            body / organ was found).
        windows_full: windows a full-volume sliding window places.
        windows_run: windows this inference ran (coarse pass included).
        coarse_windows: windows of the coarse organ pass (``organ`` mode).
        fallback: why the ROI fell back to a larger box, or ``""``.
    """

    mode: str
    shape: tuple[int, ...]
    box: Box
    windows_full: int
    windows_run: int
    coarse_windows: int = 0
    fallback: str = ""

    @property
    def fraction_skipped(self) -> float:
        """Share of the full-volume windows not run (negative if the coarse pass cost more than it saved)."""
        return 1.0 - self.windows_run / self.windows_full


@dataclass
class RoiInferer:
    """Sliding-window inference over a region of interest: ``inferer(inputs, network) -> logits``.

    A drop-in for ``monai.inferers.SlidingWindowInferer(roi_size, sw_batch_size, overlap,
    mode="gaussian")`` (the trainer's and :class:`~labelfree.inference.predictor.Predictor`'s
    inferer): inside the ROI the logits equal it up to floating-point noise, outside they are
    background (see the module docstring).

    Args:
        roi_size: window size in voxels (H, W, D).
        overlap: overlap of neighbouring windows, in [0, 1).
        sw_batch_size: windows per forward pass.
        mode: ``"none"``, ``"body"`` or ``"organ"``.
        body_threshold: body / air threshold in network input units (:func:`body_threshold`).
        organ_margin: voxels added around the coarse organ box (``organ`` mode).
        organ_trim: fraction of the window cut off each side when testing which windows reach
            the organ box (``organ`` mode; 0: the organ box is exact like the body box).

    Attributes:
        stats: one :class:`RoiStats` per case of the last call.
    """

    roi_size: Sequence[int]
    overlap: float
    sw_batch_size: int = 1
    mode: str = DEFAULT_ROI_MODE
    body_threshold: float = 0.0
    organ_margin: int = DEFAULT_ORGAN_MARGIN
    organ_trim: float = DEFAULT_ORGAN_TRIM
    stats: list[RoiStats] = field(default_factory=list, repr=False)

    def __post_init__(self):
        if self.mode not in ROI_MODES:
            raise ValueError(f"unknown ROI mode {self.mode!r}; choose one of {list(ROI_MODES)}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be at least 1, got {self.sw_batch_size}")
        if self.organ_margin < 0:
            raise ValueError(f"organ_margin must be >= 0 voxels, got {self.organ_margin}")
        if not 0.0 <= self.organ_trim < 0.5:
            raise ValueError(f"organ_trim must be in [0, 0.5), got {self.organ_trim}")
        self.roi_size = tuple(int(r) for r in self.roi_size)

    def __call__(self, inputs: torch.Tensor, network: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Logits (B, K, H, W, D) of a (B, C, H, W, D) batch; a MetaTensor input gives a MetaTensor."""
        if self.mode == "none":
            shape = tuple(inputs.shape[2:])
            n = count_windows(shape, self.roi_size, self.overlap)
            self.stats = [RoiStats("none", shape, tuple((0, s) for s in shape), n, n)] * inputs.shape[0]
            return self._sliding_window(inputs, network, self.overlap, "gaussian")
        meta_source = inputs if isinstance(inputs, MetaTensor) else None
        plain = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        outputs, self.stats = [], []
        for b in range(plain.shape[0]):
            logits, stats = self._one_case(plain[b:b + 1], network)
            outputs.append(logits)
            self.stats.append(stats)
        output = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
        if meta_source is not None:  # keep the image's metadata, as MONAI's sliding window does (Invertd needs it)
            output = convert_to_dst_type(output, MetaTensor([]).copy_meta_from(meta_source, copy_attr=False))[0]
        return output

    def _sliding_window(self, image, network, overlap: float, blend: str) -> torch.Tensor:
        return sliding_window_inference(
            image, roi_size=self.roi_size, sw_batch_size=self.sw_batch_size, predictor=network,
            overlap=overlap, mode=blend,
        )

    def _one_case(self, image: torch.Tensor, network) -> tuple[torch.Tensor, RoiStats]:
        shape = tuple(int(s) for s in image.shape[2:])
        whole = tuple((0, s) for s in shape)
        n_full = count_windows(shape, self.roi_size, self.overlap)
        box, fallback, coarse, trim = body_box(image[0], self.body_threshold), "", 0, None
        if box is None:
            box, fallback = whole, "nothing above the body threshold"
        if self.mode == "organ":
            body = box
            coarse_logits = self._sliding_window(image[(..., *_slices(body))], network, 0.0, "constant")
            coarse = count_windows([hi - lo for lo, hi in body], self.roi_size, 0.0)
            labels = torch.argmax(coarse_logits[0], dim=0).cpu().numpy()
            organ = organ_box(labels, self.organ_margin)
            if organ is None:
                fallback = fallback or "the coarse pass found no organ: body box"
            else:
                box = _clip_box(tuple((lo + b0, hi + b0) for (lo, hi), (b0, _) in zip(organ, body)), body)
                trim = tuple(int(r * self.organ_trim) for r in self.roi_size)
        crop = aligned_crop(box, shape, self.roi_size, self.overlap, trim)
        crop_logits = self._sliding_window(image[(..., *_slices(crop))], network, self.overlap, "gaussian")
        crop_logits = torch.as_tensor(crop_logits)
        output = torch.full((1, crop_logits.shape[1], *shape), -OUTSIDE_LOGIT_MARGIN,
                            dtype=crop_logits.dtype, device=crop_logits.device)
        output[:, 0] = 0.0
        inside = tuple(slice(lo - c0, hi - c0) for (lo, hi), (c0, _) in zip(box, crop))
        output[(..., *_slices(box))] = crop_logits[(..., *inside)]
        n_run = coarse + count_windows([hi - lo for lo, hi in crop], self.roi_size, self.overlap)
        return output, RoiStats(self.mode, shape, box, n_full, n_run, coarse, fallback)


def build_inferer(
    roi_size: Sequence[int],
    overlap: float,
    sw_batch_size: int | None,
    roi_mode: str,
    window: tuple[float, float],
    device: torch.device | str,
) -> RoiInferer:
    """The sliding-window inferer of the command-line settings (training's validation, validation.py).

    Args:
        roi_size: window size in voxels (``--roi_x/y/z``).
        overlap: ``--val_overlap``.
        sw_batch_size: ``--sw_batch_size``; ``None``: the device's default.
        roi_mode: ``--roi_mode``.
        window: the (a_min, a_max) HU intensity window of the preprocessing.
        device: where the network runs (chooses the default batch of windows).
    """
    return RoiInferer(
        roi_size=roi_size, overlap=overlap, sw_batch_size=resolve_sw_batch_size(sw_batch_size, device),
        mode=roi_mode, body_threshold=body_threshold(*window),
    )
