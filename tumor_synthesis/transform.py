"""``TumorGenerated``: the MONAI dictionary transform that paints synthetic tumors."""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends, convert_data_type, convert_to_dst_type

from tumor_synthesis.engine import synthesize_tumors
from tumor_synthesis.growth import get_growth_rules
from tumor_synthesis.growth_engine import grow_tumors
from tumor_synthesis.organs import MultiOrganProfile, get_organ_profile, with_surface_rim

#: Synthesis models: the original's deformed ellipsoids, or the growth model (cellular automaton).
SYNTHESIS_MODELS = ("ellipsoid", "growth")
#: Default simulation grid (mm) of the growth model (published: 1 mm; see ``grid_mm`` of
#: :func:`tumor_synthesis.growth_engine.grow_tumors`).
GROWTH_GRID_MM = 2.0


class TumorGenerated(RandomizableTransform, MapTransform):
    """Paint synthetic tumors into the organ of a healthy CT (Hu et al., CVPR 2023).

    Works in HU on channel-first ``(1, H, W, D)`` image and label, numpy arrays or torch
    tensors / MetaTensors, after ``Orientationd("RAS")`` and ``Spacingd`` (the last axis
    must be superior-inferior). With probability ``prob`` a tumor type is drawn and its
    tumors are painted: the image gets darker, textured, soft-edged lesions inside the
    organ and the label marks their voxels with the profile's tumor label (2); the organ
    stays 1 and nothing outside the organ changes. Samples whose label already holds a
    tumor (a value above the organ label) and samples without organ are returned as they
    are, like in the original.

    ``organ="multi"`` reads FreeTumor's multi-organ label (1 liver, 3 pancreas, 5 kidney)
    and paints every organ present with its own profile and tumor-type mix, its tumors
    labelled 2, 4 and 6; an organ whose tumor label is already present is skipped, the
    others are still painted.

    Sizes are physical: tumor radii, deformation, placement erosion, edge blur and texture
    are defined in mm (the original's voxels at 1 mm), so the output at 1 mm follows the
    original's distributions and at other spacings the tumors keep their size in mm. The
    spacing is read from a MetaTensor's affine; plain arrays use ``spacing``.

    ``synthesis="growth"`` grows the tumors instead (Pixel2Cancer's cellular automaton,
    :mod:`tumor_synthesis.growth`): seeds in the organ, growth gated by the tissue density,
    vessels as barriers that yield under pressure, satellites, a necrotic core. Its size
    classes are tiny, small, medium and large (ranges of the number of growth
    iterations); ``tumor_prob`` is then their mix (default: the published uniform law of
    the iteration count). Liver, pancreas, kidney and multi; not lung. It runs on the
    device of the input tensors: numpy and CPU tensors on the CPU (in the loader workers),
    CUDA tensors on their GPU.

    All randomness comes from ``self.R``: ``set_random_state(seed)`` reproduces a sample
    exactly, and MONAI's ``DataLoader`` seeds each worker differently. (The growth model on
    CUDA draws its per-voxel numbers from a CUDA generator: reproducible on that device,
    not equal to the CPU's sample.)

    Args:
        keys: the image key and the label key, in that order.
        prob: probability of painting tumors into a sample.
        tumor_prob: probability of each tumor type of the organ profile (liver: tiny,
            small, medium, large, mix); None uses the profile's (liver: 0.2 each). Not
            with ``organ="multi"``, where each organ uses its profile's.
        organ: organ profile name (see ``tumor_synthesis.organs``): liver, lung,
            pancreas, kidney, or multi.
        allow_missing_keys: return the sample unchanged when a key is missing instead of
            raising ``KeyError``.
        spacing: voxel size (sx, sy, sz) in mm of inputs that carry no affine (numpy
            arrays, plain tensors); default 1 mm. A MetaTensor's own affine always wins.
        inplace: paint into the input arrays (CPU; the growth model: any device) instead of copies, as the original
            does. Saves one full-volume copy of image and label per painted sample; safe
            when every sample is a fresh array, e.g. after a ``CacheDataset`` with its
            default ``copy_cache=True`` or without caching. Not with ``copy_cache=False``:
            the cache itself would be painted.
        surface_rim_mm: keep this much organ tissue (mm) between a clipped tumor and the
            organ's surface (every organ of ``organ="multi"``); None uses the profile's (0
            for every organ: the original clips tumors at the surface itself, so a tumor
            at the edge merges with whatever abuts the organ; see ``OrganProfile``). Ellipsoid
            model only.
        synthesis: ``"ellipsoid"`` (the original's deformed ellipsoids, default) or
            ``"growth"`` (the cellular automaton).
        growth_grid_mm: simulation grid spacing (mm) of the growth model (published: 1; the
            default 2 is about 10 times faster, with the iteration count scaled to keep
            the sizes).
        device: move image and label to this device first, painted or not (None: leave
            them where they are). ``"cuda"`` runs the growth model, and every transform
            after this one, on the GPU: for a loader in the main process
            (``num_workers=0``, no ``pin_memory``), as ``main.py --syn_device cuda`` sets up.
        label_visible_edge: ellipsoid model only. None (the original): the label is the
            unblurred tumor mask and the blurred darkening spreads beyond it. A fraction in (0, 1), e.g. 0.3: the
            label also takes the organ voxels where the blurred mask is at least that
            fraction of its full value, so it ends where the visible lesion fades (see
            ``synthesize_tumors``; ``python -m tumor_synthesis.realism`` measures the halo).

    Raises:
        ValueError: bad arguments, or (when called) inputs that are not ``(1, H, W, D)`` or
            whose shapes differ.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        prob: float = 0.9,
        tumor_prob: Sequence[float] | None = None,
        organ: str = "liver",
        allow_missing_keys: bool = False,
        spacing: Sequence[float] | None = None,
        inplace: bool = False,
        surface_rim_mm: float | None = None,
        synthesis: str = "ellipsoid",
        growth_grid_mm: float = GROWTH_GRID_MM,
        device: str | torch.device | None = None,
        label_visible_edge: float | None = None,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if len(self.keys) != 2:
            raise ValueError(f"TumorGenerated needs exactly two keys (image, label), got {self.keys}")
        if synthesis not in SYNTHESIS_MODELS:
            raise ValueError(f"unknown synthesis model {synthesis!r}; choose one of {list(SYNTHESIS_MODELS)}")
        self.synthesis = synthesis
        self.profile = get_organ_profile(organ)
        if surface_rim_mm is not None:
            if synthesis == "growth" and surface_rim_mm != 0:
                raise ValueError("surface_rim_mm shapes the ellipsoid model's clipping; the growth model is "
                                 "stopped by the organ edge itself (use 0 or None with synthesis='growth')")
            self.profile = with_surface_rim(self.profile, surface_rim_mm)
        self.multi_organ = isinstance(self.profile, MultiOrganProfile)
        self.growth_rules = {}
        if synthesis == "growth":
            if not growth_grid_mm > 0:
                raise ValueError(f"growth_grid_mm must be a positive spacing in mm, got {growth_grid_mm}")
            # Raises for an organ without growth rules (lung), naming the supported ones.
            self.growth_rules = {m.name: get_growth_rules(m.name) for m in self.profile.members}
        self.growth_grid_mm = float(growth_grid_mm)
        self.device = None if device is None else torch.device(device)
        if self.multi_organ:
            if tumor_prob is not None:
                raise ValueError(f"organ {organ!r} paints several organs, each with its own tumor types: "
                                 "tumor_prob must be None")
            self.tumor_types, self.tumor_prob = (), None
        elif synthesis == "growth":
            rules = self.growth_rules[self.profile.name]
            self.tumor_types = rules.size_names
            self.tumor_prob = self._check_tumor_prob(rules.size_probabilities if tumor_prob is None else tumor_prob)
        else:
            self.tumor_types = self.profile.tumor_types
            self.tumor_prob = self._check_tumor_prob(tumor_prob)
        self.spacing = None if spacing is None else self._check_spacing(spacing, "spacing")
        self.inplace = bool(inplace)
        if label_visible_edge is not None and not 0.0 < float(label_visible_edge) < 1.0:
            raise ValueError(f"label_visible_edge must be a fraction in (0, 1) or None, got {label_visible_edge}")
        if label_visible_edge is not None and synthesis == "growth":
            raise ValueError("label_visible_edge moves the label edge of the ellipsoid model's blurred tumors; the "
                             "growth model labels every voxel it reached (use None with synthesis='growth')")
        self.label_visible_edge = None if label_visible_edge is None else float(label_visible_edge)
        self._tumor_type: str | None = None
        self._seed: np.ndarray | None = None

    def _check_tumor_prob(self, tumor_prob) -> np.ndarray:
        if tumor_prob is None:
            tumor_prob = self.profile.type_probabilities
        p = np.asarray(tumor_prob, dtype=np.float64).ravel()
        if p.size != len(self.tumor_types):
            raise ValueError(
                f"tumor_prob needs one probability per tumor type {list(self.tumor_types)}, got {p.size}"
            )
        if not np.all(np.isfinite(p)) or np.any(p < 0) or not np.isclose(p.sum(), 1.0, atol=1e-6):
            raise ValueError(f"tumor_prob must be non-negative and sum to 1, got {p.tolist()}")
        return p / p.sum()

    @staticmethod
    def _check_spacing(spacing, what: str) -> tuple[float, float, float]:
        s = tuple(float(v) for v in np.asarray(spacing, dtype=np.float64).ravel())
        if len(s) != 3 or not all(np.isfinite(v) and v > 0 for v in s):
            raise ValueError(f"{what} must be three positive voxel sizes in mm, got {s}")
        return s

    def randomize(self, data=None) -> None:
        """Draw whether to paint, and if so the tumor type and the sample's seed."""
        super().randomize(None)
        if not self._do_transform:
            return
        if not self.multi_organ:  # several organs draw their types from the sample's seed
            self._tumor_type = self.tumor_types[int(self.R.choice(len(self.tumor_types), p=self.tumor_prob))]
        # A 128-bit seed from self.R feeds the engine's own Generator.
        self._seed = self.R.randint(0, 2**32, size=4, dtype=np.uint64)

    def _spacing_of(self, image) -> tuple[float, float, float]:
        if isinstance(image, MetaTensor):
            spacing = affine_to_spacing(image.affine, r=3)
            return self._check_spacing(convert_data_type(spacing, np.ndarray)[0], "the image affine's spacing")
        return self.spacing or (1.0, 1.0, 1.0)

    @staticmethod
    def _check_inputs(image, label, image_key, label_key) -> None:
        for key, arr in ((image_key, image), (label_key, label)):
            if not isinstance(arr, (np.ndarray, torch.Tensor)):
                raise ValueError(f"{key!r} must be a numpy array or a torch tensor, got {type(arr).__name__}")
            if arr.ndim != 4:
                raise ValueError(f"{key!r} must be channel-first (1, H, W, D), got shape {tuple(arr.shape)}")
            if arr.shape[0] != 1:
                raise ValueError(f"{key!r} must have one channel, got {arr.shape[0]} in shape {tuple(arr.shape)}")
        if tuple(image.shape) != tuple(label.shape):
            raise ValueError(
                f"{image_key!r} and {label_key!r} shapes differ: {tuple(image.shape)} vs {tuple(label.shape)}"
            )

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        if self.device is not None:
            self._to_device(d)
        self.randomize(None)
        if not self._do_transform:
            return d
        present = list(self.key_iterator(d))
        if len(present) != 2:  # only reachable with allow_missing_keys
            return d
        image_key, label_key = self.keys
        image, label = d[image_key], d[label_key]
        self._check_inputs(image, label, image_key, label_key)
        if self.synthesis == "growth":
            return self._grow(d, image, label, image_key, label_key)
        label_np = convert_data_type(label, np.ndarray)[0][0]
        image_np = convert_data_type(image, np.ndarray)[0][0]
        # Host arrays are views of CPU inputs; a CUDA tensor is painted on a host copy.
        inplace = self.inplace and all(_on_cpu(x) for x in (image, label))
        if self.multi_organ:
            result = self._paint_organs(image_np, label_np, self._spacing_of(image), inplace)
        else:
            result = synthesize_tumors(
                image_np,
                label_np,
                np.random.default_rng(self._seed),
                self._tumor_type,
                self.profile,
                spacing=self._spacing_of(image),
                inplace=inplace,
                **self._edge_kwargs(),
            )
        if result is None or inplace:
            return d
        d[image_key] = convert_to_dst_type(result.image[None], dst=image, dtype=image.dtype)[0]
        d[label_key] = convert_to_dst_type(result.label[None], dst=label, dtype=label.dtype)[0]
        return d


    def _to_device(self, d: dict) -> None:
        if self.device.type == "cuda" and torch.utils.data.get_worker_info() is not None:
            raise RuntimeError("TumorGenerated(device='cuda') runs in a DataLoader worker process, where CUDA "
                               "cannot be used: load with num_workers=0 (main.py: --workers 0)")
        for key in self.key_iterator(d):
            value = d[key]
            d[key] = torch.as_tensor(value).to(self.device) if isinstance(value, np.ndarray) else value.to(self.device)

    def _grow(self, d: dict, image, label, image_key, label_key) -> dict:
        """The growth model, on the inputs' device; in place when ``inplace``."""
        image_t, label_t = _as_torch(image)[0], _as_torch(label)[0]
        if label_t.device != image_t.device:
            raise ValueError(f"{image_key!r} and {label_key!r} are on different devices: "
                             f"{image_t.device} and {label_t.device}")
        rng = np.random.default_rng(self._seed)
        spacing = self._spacing_of(image)
        if not self.inplace:
            image_t, label_t = image_t.clone(), label_t.clone()
        painted = False
        for member in self.profile.members:
            if self.multi_organ:
                p = np.asarray(self.growth_rules[member.name].size_probabilities, dtype=np.float64)
                size = self.growth_rules[member.name].size_names[int(rng.choice(len(p), p=p / p.sum()))]
            else:
                size = self._tumor_type
            result = grow_tumors(
                image_t, label_t, rng, size, self.growth_rules[member.name], spacing,
                organ_label=member.organ_label, tumor_label=member.tumor_label, texture=member.texture,
                inplace=True, shared_label=self.multi_organ, grid_mm=self.growth_grid_mm,
            )
            painted = painted or result is not None
        if not painted or self.inplace:
            return d
        d[image_key] = convert_to_dst_type(image_t[None], dst=image, dtype=image.dtype)[0]
        d[label_key] = convert_to_dst_type(label_t[None], dst=label, dtype=label.dtype)[0]
        return d

    def _edge_kwargs(self) -> dict:
        # Passed only when set, so the engine's call stays the original's by default.
        return {} if self.label_visible_edge is None else {"label_visible_edge": self.label_visible_edge}

    def _paint_organs(self, image: np.ndarray, label: np.ndarray, spacing, inplace: bool):
        """Paint each organ of a multi-organ label in turn; None when none was painted."""
        rng = np.random.default_rng(self._seed)
        painted = None
        for member in self.profile.members:
            p = np.asarray(member.type_probabilities, dtype=np.float64)
            tumor_type = member.tumor_types[int(rng.choice(len(p), p=p / p.sum()))]
            if painted is None and not inplace:
                # Copies only once something is painted, then every organ paints in place.
                result = synthesize_tumors(image, label, rng, tumor_type, member, spacing, False, shared_label=True,
                                            **self._edge_kwargs())
                if result is not None:
                    painted, image, label = result, result.image, result.label
            else:
                result = synthesize_tumors(image, label, rng, tumor_type, member, spacing, True, shared_label=True,
                                            **self._edge_kwargs())
                painted = painted or result
        return painted


def _as_torch(x) -> torch.Tensor:
    """A plain tensor sharing memory with ``x`` (numpy array, tensor or MetaTensor)."""
    if isinstance(x, MetaTensor):
        return x.as_tensor()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    return x


def _on_cpu(x) -> bool:
    return not isinstance(x, torch.Tensor) or x.device.type == "cpu"
