"""``TumorGenerate``: the MONAI array transform that paints synthetic tumors into one (image, label) pair."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type, convert_to_tensor

from tumor_synthesis.case_data import CaseData, case_key, compute_case_data
from tumor_synthesis.growth_engine import GROWTH_GRID_MM
from tumor_synthesis.models import SynthesisOptions, get_synthesis_model
from tumor_synthesis.organs import MultiOrganProfile, OrganProfile, get_organ_profile


class TumorGenerate(RandomizableTransform):
    """Paint synthetic tumors into the organ of a healthy CT (Hu et al., CVPR 2023).

    Called as ``TumorGenerate(...)(image, label)`` on channel-first ``(1, H, W, D)`` image
    (HU) and label, numpy arrays or torch tensors / MetaTensors, after
    ``Orientation("RAS")`` and ``Spacing`` (the last axis must be superior-inferior); returns
    ``(image, label)``. With probability ``prob`` a tumor type is drawn and its tumors are
    painted: the image gets darker, textured, soft-edged lesions inside the organ and the
    label marks their voxels with the profile's tumor label (2); the organ stays 1 and
    nothing outside the organ changes. Samples whose label already holds a tumor (a value
    above the organ label) and samples without organ are returned unpainted, like in the
    original.

    Output types follow MONAI's convention: the inputs are converted to tensors first, and
    image and label come back as tensors in every path, painted or not (a MetaTensor stays
    a MetaTensor with its metadata; numpy arrays come back as CPU tensors), with the input's
    dtype, on the input's device (or on ``device``). Unpainted, they share the inputs'
    memory (numpy arrays: unless they had to be copied, e.g. non-contiguous ones).

    ``organ="multi"`` reads FreeTumor's multi-organ label (1 liver, 3 pancreas, 5 kidney)
    and paints every organ present with its own profile and tumor-type mix, its tumors
    labelled 2, 4 and 6; an organ whose tumor label is already present is skipped, the
    others are still painted.

    Sizes are physical: tumor radii, deformation, placement erosion, edge blur and texture
    are defined in mm (the original's voxels at 1 mm), so the output at 1 mm follows the
    original's distributions and at other spacings the tumors keep their size in mm. The
    spacing is read from a MetaTensor's affine; plain arrays use ``spacing``.

    The synthesis model (:data:`tumor_synthesis.models.SYNTHESIS_MODELS`) does the painting:
    ``"ellipsoid"`` (the original's deformed ellipsoids, in numpy on the CPU; CUDA inputs are
    painted on a host copy) or ``"growth"`` (Pixel2Cancer's cellular automaton,
    :mod:`tumor_synthesis.growth`: seeds in the organ, growth gated by the tissue density,
    vessels as barriers that yield under pressure, satellites, a necrotic core; in torch on
    the device of the inputs: numpy and CPU tensors on the CPU, CUDA tensors on their GPU).
    The growth model's size classes are tiny, small, medium and large (ranges of the number
    of growth iterations); ``tumor_prob`` is then their mix (default: the published uniform
    law of the iteration count). Liver, pancreas, kidney and multi; not lung.

    All randomness comes from ``self.R`` (:meth:`randomize`): ``set_random_state(seed)``
    reproduces a sample exactly. (The growth model on CUDA draws its per-voxel numbers from
    a CUDA generator: reproducible on that device, not equal to the CPU's sample.)

    Args:
        prob: probability of painting tumors into a sample.
        tumor_prob: probability of each tumor type (size class) of the model for the organ
            (ellipsoid liver: tiny, small, medium, large, mix); None uses the default
            (ellipsoid liver: 0.2 each). Not with ``organ="multi"``, where each organ uses
            its own.
        organ: organ profile name (see ``tumor_synthesis.organs``): liver, lung,
            pancreas, kidney, or multi.
        spacing: voxel size (sx, sy, sz) in mm of inputs that carry no affine (numpy
            arrays, plain tensors); default 1 mm. A MetaTensor's own affine always wins.
        inplace: paint into the inputs (ellipsoid model: CPU inputs; growth model: any
            device) instead of copies, as the original does. Saves one full-volume copy of
            image and label per painted sample; safe when every sample is a fresh array, e.g.
            after a ``CacheDataset`` with its default ``copy_cache=True`` or without caching.
            Not with ``copy_cache=False``: the cache itself would be painted.
        surface_rim_mm: keep this much organ tissue (mm) between a clipped tumor and the
            organ's surface (every organ of ``organ="multi"``); None uses the profile's (0
            for every organ: the original clips tumors at the surface itself, so a tumor
            at the edge merges with whatever abuts the organ; see ``OrganProfile``).
            Ellipsoid model only.
        synthesis: name of the synthesis model, ``"ellipsoid"`` (default) or ``"growth"``.
        growth_grid_mm: simulation grid spacing (mm) of the growth model (published: 1; the
            default 2 is about 10 times faster, with the iteration count scaled to keep
            the sizes).
        device: move image and label to this device first, painted or not (None: leave
            them where they are). ``"cuda"`` runs the growth model, and every transform
            after this one, on the GPU: for a loader in the main process
            (``num_workers=0``, no ``pin_memory``), as ``main.py --syn_device cuda`` sets up.
        label_visible_edge: ellipsoid model only. None (the original): the label is the
            unblurred tumor mask and the blurred darkening spreads beyond it. A fraction in
            (0, 1), e.g. 0.3: the label also takes the organ voxels where the blurred mask
            is at least that fraction of its full value, so it ends where the visible lesion
            fades (see ``synthesize_tumors``; ``python -m tumor_synthesis.realism`` measures
            the halo).
        preset: ``"original"`` (default: the published method, bit for bit) or
            ``"realistic"``: the organ profile's realistic values
            (``tumor_synthesis.organs.Preset``: sharper edges, a label that ends where the
            visible lesion ends, real lesions' contrast), for the ellipsoid and growth models;
            organs without such values are refused.

    Raises:
        ValueError: bad arguments, or (when called) inputs that are not ``(1, H, W, D)``
            arrays or whose shapes differ.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        prob: float = 0.9,
        tumor_prob: Sequence[float] | None = None,
        organ: str = "liver",
        spacing: Sequence[float] | None = None,
        inplace: bool = False,
        surface_rim_mm: float | None = None,
        synthesis: str = "ellipsoid",
        growth_grid_mm: float = GROWTH_GRID_MM,
        device: str | torch.device | None = None,
        label_visible_edge: float | None = None,
        preset: str = "original",
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        model_class = get_synthesis_model(synthesis)
        options = SynthesisOptions(surface_rim_mm, growth_grid_mm, label_visible_edge, preset)
        self.preset = preset
        self.model = model_class(get_organ_profile(organ), options)
        self.synthesis = synthesis
        self.growth_grid_mm = float(growth_grid_mm)
        self.label_visible_edge = None if label_visible_edge is None else float(label_visible_edge)
        self.multi_organ = isinstance(self.profile, MultiOrganProfile)
        if self.multi_organ:
            if tumor_prob is not None:
                raise ValueError(f"organ {organ!r} paints several organs, each with its own tumor types: "
                                 "tumor_prob must be None")
            self.tumor_types, self.tumor_prob = (), None
        else:
            self.tumor_types = self.model.size_classes(self.profile)
            default = self.model.size_probabilities(self.profile)
            self.tumor_prob = _check_tumor_prob(default if tumor_prob is None else tumor_prob, self.tumor_types)
        self.spacing = None if spacing is None else _check_spacing(spacing, "spacing")
        self.inplace = bool(inplace)
        self.device = None if device is None else torch.device(device)
        self._tumor_type: str | None = None
        self._seed: np.ndarray | None = None

    @property
    def profile(self) -> OrganProfile | MultiOrganProfile:
        """The organ profile painted (with ``surface_rim_mm`` applied)."""
        return self.model.profile

    def randomize(self, data=None) -> None:
        """Draw whether to paint, and if so the tumor type and the sample's seed."""
        super().randomize(None)
        if not self._do_transform:
            return
        if not self.multi_organ:  # several organs draw their types from the sample's seed
            self._tumor_type = self.tumor_types[int(self.R.choice(len(self.tumor_types), p=self.tumor_prob))]
        # A 128-bit seed from self.R feeds the engine's own Generator.
        self._seed = self.R.randint(0, 2**32, size=4, dtype=np.uint64)

    def __call__(self, image, label, randomize: bool = True,
                 case_data: CaseData | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Paint one sample.

        Args:
            image: (1, H, W, D) image in HU, numpy array or tensor / MetaTensor.
            label: (1, H, W, D) label with the organ(s) of the profile.
            randomize: draw a new sample first; False reuses the last draw of
                :meth:`randomize` (as a dictionary wrapper does).
            case_data: the case's facts from :meth:`case_data` (e.g. computed once per case
                in a pipeline's cached prefix by :class:`tumor_synthesis.case_transform.TumorCaseDatad`);
                used only when they were made for this label's shape and affine, this
                spacing and this profile, else computed afresh. The sample is the same either way.

        Returns:
            ``(image, label)`` as tensors (see the class docstring), painted or not.
        """
        check_image_label(image, label)
        image, label = self.prepare(image), self.prepare(label)
        if randomize:
            self.randomize()
        if not self._do_transform:
            return image, label
        spacing = self._spacing_of(image)
        if case_data is not None and case_data.key != case_key(label, spacing, self.profile):
            case_data = None  # made for other arrays (a crop, another spacing or profile): not these
        work = self.model.work_arrays(image, label)
        inplace = self.inplace and work.views
        painted = self.model.paint(work.image, work.label, np.random.default_rng(self._seed), spacing,
                                   self._tumor_type, inplace, case=case_data)
        if painted is None or inplace:
            return image, label
        return tuple(convert_to_dst_type(new[None], dst=old, dtype=old.dtype)[0]
                     for new, old in zip(painted, (image, label)))

    def case_data(self, image, label) -> CaseData:
        """The per-case facts this transform needs for ``(image, label)`` (:mod:`tumor_synthesis.case_data`).

        Deterministic: a function of the case, the spacing and the profile only. Pass the
        result to :meth:`__call__` on every draw of the same arrays to skip the per-case work.

        Args:
            image: (1, H, W, D) image in HU, numpy array or tensor / MetaTensor.
            label: (1, H, W, D) label.
        """
        check_image_label(image, label)
        # As __call__ sees them (prepare() without the move): the key must be the one computed there.
        image, label = (x if isinstance(x, torch.Tensor) else convert_to_tensor(x, track_meta=False)
                        for x in (image, label))
        spacing = self._spacing_of(image)
        key = case_key(label, spacing, self.profile)
        host = [(x.as_tensor() if isinstance(x, MetaTensor) else x).detach()[0].cpu().numpy() for x in (image, label)]
        return compute_case_data(host[1], key, host[0])

    def prepare(self, x) -> torch.Tensor:
        """``x`` as this transform returns it: a tensor (a MetaTensor stays one) on ``device``.

        Numpy arrays become CPU tensors sharing their memory where torch can.
        """
        tensor = x if isinstance(x, torch.Tensor) else convert_to_tensor(x, track_meta=False)
        if self.device is None:
            return tensor
        if self.device.type == "cuda" and torch.utils.data.get_worker_info() is not None:
            raise RuntimeError("tumor synthesis with device='cuda' runs in a DataLoader worker process, where CUDA "
                               "cannot be used: load with num_workers=0 (main.py: --workers 0)")
        return tensor.to(self.device)

    def _spacing_of(self, image: torch.Tensor) -> tuple[float, float, float]:
        if isinstance(image, MetaTensor):
            spacing = affine_to_spacing(image.affine, r=3)
            return _check_spacing(convert_data_type(spacing, np.ndarray)[0], "the image affine's spacing")
        return self.spacing or (1.0, 1.0, 1.0)


def check_image_label(image, label, names: Sequence[str] = ("image", "label")) -> None:
    """Raise ValueError in one line unless image and label are (1, H, W, D) arrays or tensors of one shape.

    Args:
        image: the image.
        label: the label.
        names: how the message names them (a dictionary transform: its keys).
    """
    image_name, label_name = names
    for name, arr in ((image_name, image), (label_name, label)):
        if not isinstance(arr, (np.ndarray, torch.Tensor)):
            raise ValueError(f"{name!r} must be a numpy array or a torch tensor, got {type(arr).__name__}")
        if arr.ndim != 4:
            raise ValueError(f"{name!r} must be channel-first (1, H, W, D), got shape {tuple(arr.shape)}")
        if arr.shape[0] != 1:
            raise ValueError(f"{name!r} must have one channel, got {arr.shape[0]} in shape {tuple(arr.shape)}")
    if tuple(image.shape) != tuple(label.shape):
        raise ValueError(f"{image_name!r} and {label_name!r} shapes differ: {tuple(image.shape)} vs "
                         f"{tuple(label.shape)}")


def _check_tumor_prob(tumor_prob, tumor_types: Sequence[str]) -> np.ndarray:
    p = np.asarray(tumor_prob, dtype=np.float64).ravel()
    if p.size != len(tumor_types):
        raise ValueError(f"tumor_prob needs one probability per tumor type {list(tumor_types)}, got {p.size}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or not np.isclose(p.sum(), 1.0, atol=1e-6):
        raise ValueError(f"tumor_prob must be non-negative and sum to 1, got {p.tolist()}")
    return p / p.sum()


def _check_spacing(spacing, what: str) -> tuple[float, float, float]:
    s = tuple(float(v) for v in np.asarray(spacing, dtype=np.float64).ravel())
    if len(s) != 3 or not all(np.isfinite(v) and v > 0 for v in s):
        raise ValueError(f"{what} must be three positive voxel sizes in mm, got {s}")
    return s
