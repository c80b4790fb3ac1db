"""One healthy case -> its synthetic-tumor copies on disk (the work of one offline-generation task).

A copy is painted in the input's own voxel grid: the arrays are only permuted and flipped
(no resampling) to the RAS axis order the synthesis engine expects (last axis
inferior-superior), painted at the file's own spacing (the engine's sizes are in mm),
permuted back and written with the input's affine. Every file goes through
:mod:`labelfree.io.atomic` (atomic), and a copy's record (``records/<name>.json``, its lesions
included) is written last, so a record on disk means the copy is complete: that is what
makes a run resumable.

The randomness of copy ``k`` of a case comes from one seed,
``SeedSequence(master_seed, spawn_key=(crc32(case name), k))``: the tumor type is drawn from
a Generator of that seed and ``TumorGenerated.set_random_state(seed)`` draws the rest (with
``--synthesis gan`` / ``diffusion`` the ellipsoids, which the trained model then repaints, its
diffusion noise drawn from a torch Generator of the same seed). The output does not depend on
the number of workers, on the order of the datalist, or on which copies an interrupted run
had already written.
"""

from __future__ import annotations

import functools
import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from labelfree.evaluation.lesions import equivalent_sphere_radius_mm
from labelfree.io.atomic import save_nifti_atomic, write_json_atomic
from labelfree.io.readers import voxel_spacing
from labelfree.masks import label_components

#: Names of the files of one sample below the output root (nnU-Net v2 raw-data naming).
IMAGES_DIR, LABELS_DIR, RECORDS_DIR = "imagesTr", "labelsTr", "records"
CHANNEL_SUFFIX = "_0000"
NIFTI = ".nii.gz"


class OfflineError(ValueError):
    """A source case cannot be used (unreadable file, geometry mismatch, unknown label values)."""


@dataclass(frozen=True)
class Settings:
    """What every copy of a run is painted with (the same for all cases; stored in the run's config).

    Attributes:
        organ: organ profile name (``tumor_synthesis.organs``).
        synthesis: synthesis model of ``TumorGenerated`` (``"ellipsoid"``: the original's).
        tumor_types: the profile's tumor types (empty for ``organ="multi"``).
        tumor_prob: probability of each of ``tumor_types``.
        seed: master seed.
        copies: synthetic copies per healthy case.
        include_source: also write each source case unchanged (``<case>_src``).
        surface_rim_mm: organ tissue kept between a tumor and the organ surface (None: the profile's).
        generator: ``synthesis`` gan / diffusion: the ``syn_train.py`` model file (absolute path)
            that repaints the engine's ellipsoids; None otherwise.
        steps: ``synthesis`` diffusion: sampling steps per painted window; None otherwise.
    """

    organ: str
    synthesis: str
    tumor_types: tuple[str, ...]
    tumor_prob: tuple[float, ...]
    seed: int
    copies: int
    include_source: bool
    surface_rim_mm: float | None = None
    generator: str | None = None
    steps: int | None = None

    def record(self) -> dict:
        """The settings as stored (offline_config.json, lesions.json, a worker's job).

        The trained model's fields only when one paints, so that a folder written before they
        existed is still resumed.
        """
        record = asdict(self)
        if self.generator is None:
            del record["generator"], record["steps"]
        return record


def sample_seed(master_seed: int, case_name: str, copy: int) -> int:
    """The seed (uint32) of copy ``copy`` of ``case_name``: independent of datalist order and workers."""
    key = zlib.crc32(case_name.encode("utf-8"))
    return int(np.random.SeedSequence(int(master_seed), spawn_key=(key, int(copy))).generate_state(1)[0])


def copy_name(case_name: str, copy: int) -> str:
    return f"{case_name}_syn{copy:02d}"


def source_name(case_name: str) -> str:
    return f"{case_name}_src"


def output_paths(root: Path, name: str) -> dict[str, Path]:
    """Image, label and record paths of sample ``name`` below ``root``."""
    return {
        "image": root / IMAGES_DIR / f"{name}{CHANNEL_SUFFIX}{NIFTI}",
        "label": root / LABELS_DIR / f"{name}{NIFTI}",
        "record": root / RECORDS_DIR / f"{name}.json",
    }


def planned_names(case_name: str, settings: Settings) -> list[str]:
    names = [source_name(case_name)] if settings.include_source else []
    return names + [copy_name(case_name, k) for k in range(settings.copies)]


def is_done(root: Path, name: str) -> bool:
    """A sample is complete when its record exists (it is written after its image and label)."""
    paths = output_paths(root, name)
    return all(paths[k].is_file() for k in ("record", "image", "label"))


def process_case(job: dict) -> list[dict]:
    """Write the missing samples of one source case; return the records of all its samples.

    Args:
        job: ``{"root", "name", "image", "label", "settings" (:meth:`Settings.record`), "device"}``;
            ``device``: where the trained model of ``--synthesis gan`` / ``diffusion`` paints
            (``"cpu"``, ``"cuda"``, ``"cuda:N"``).

    Returns:
        The records of the case's samples on disk (read back for samples a previous run
        wrote); a case whose label already holds a tumor has no synthetic copies.

    Raises:
        OfflineError: the case's files are unreadable, disagree in shape, or the label holds
            values outside the organ's label convention.
    """
    root, name = Path(job["root"]), job["name"]
    settings = Settings(**job["settings"])
    todo = [n for n in planned_names(name, settings) if not is_done(root, n)]
    if todo:
        _write_samples(root, name, job["image"], job["label"], settings, set(todo), job.get("device", "cpu"))
    return [json.loads(output_paths(root, n)["record"].read_text()) for n in planned_names(name, settings)
            if is_done(root, n)]


def _write_samples(root: Path, name: str, image_path: str, label_path: str, settings: Settings, todo: set,
                   device: str) -> None:
    from tumor_synthesis.organs import get_organ_profile

    profile = get_organ_profile(settings.organ)
    image, label, affine, image_dtype = _load_pair(image_path, label_path)
    _check_label_values(label, profile, label_path)
    healthy = not np.isin(label, [m.tumor_label for m in profile.members]).any()
    to_ras, from_ras, spacing = _ras_reorientation(affine)
    source = {"case": name, "source_image": str(image_path), "source_label": str(label_path),
              "organ": settings.organ, "synthesis": settings.synthesis}

    if source_name(name) in todo:
        _write_sample(root, source_name(name), image, label, affine, image_dtype,
                      {**source, "kind": "source", "healthy": healthy, "seed": None, "tumor_type": None,
                       "lesions": _lesions(label, affine, profile)})
    if not healthy:
        # A case with a tumor is never painted (as the original's transform refuses it); it
        # still enters the dataset through --include_source, e.g. to mix real tumors in.
        return
    image_ras, label_ras = to_ras(image), to_ras(label)
    for k in range(settings.copies):
        sample = copy_name(name, k)
        if sample not in todo:
            continue
        seed = sample_seed(settings.seed, name, k)
        tumor_type = None  # multi-organ: each organ draws its own type from the sample's seed
        if settings.tumor_types:
            rng = np.random.default_rng(seed)
            tumor_type = settings.tumor_types[int(rng.choice(len(settings.tumor_types), p=settings.tumor_prob))]
        painted_image, painted_label = paint_copy(settings, tumor_type, spacing, seed, image_ras[None], label_ras[None],
                                                  device)
        painted_image, painted_label = from_ras(painted_image[0]), from_ras(painted_label[0])
        _write_sample(root, sample, painted_image, painted_label, affine, image_dtype,
                      {**source, "kind": "synthetic", "copy": k, "seed": seed, "tumor_type": tumor_type,
                       "lesions": _lesions(painted_label, affine, profile)})


def paint_copy(settings: Settings, tumor_type: str | None, spacing, seed: int, image: np.ndarray, label: np.ndarray,
               device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """One synthetic copy of a healthy case: its image (HU, float32) and label, both (1, H, W, D) in RAS order.

    Drawn from ``seed`` alone. With ``--synthesis gan`` / ``diffusion`` the engine paints
    ellipsoids and the trained model repaints them (:func:`tumor_synthesis.repaint.repaint_case`,
    as the realism tool does), the diffusion noise from a torch Generator of ``seed``.

    Args:
        spacing: voxel size (mm) along the RAS axes.
        image, label: the healthy case (left unchanged).
        device: where the trained model paints.
    """
    out = build_transform(settings, tumor_type, spacing).set_random_state(seed=seed)(
        {"image": image.copy(), "label": label.copy()})
    if settings.generator is None:
        return np.asarray(out["image"]), np.asarray(out["label"])
    import torch

    from tumor_synthesis.organs import get_organ_profile
    from tumor_synthesis.repaint import repaint_case

    profile = get_organ_profile(settings.organ)
    model = painter(settings.generator, settings.synthesis, device)
    painted_image, painted_label = repaint_case(model, image, label, out["image"], out["label"], profile.window,
                                                [m.tumor_label for m in profile.members], settings.steps,
                                                torch.Generator().manual_seed(int(seed)))
    return painted_image.numpy(), painted_label.numpy()


@functools.lru_cache(maxsize=1)
def painter_state(path: str, synthesis: str):
    """The checked model of a ``syn_train.py`` file (``read_generator``: kind, safety, weights), read once.

    The entry point's checks and the painting in that same process (``--workers 0`` or ``1``)
    share the read.

    Raises:
        OfflineError: the file is missing, unreadable, unsafe (a pickle naming code), not a
            model file of ``syn_train.py``, or of the other kind than ``synthesis``.
    """
    from labelfree.io.checkpoint import CheckpointError
    from labelfree.training.generator import read_generator

    try:
        return read_generator(path, synthesis=synthesis)
    except CheckpointError as e:
        raise OfflineError(str(e)) from None


@functools.lru_cache(maxsize=1)
def painter(path: str, synthesis: str, device: str):
    """The trained model of ``path`` on ``device``, in eval mode, built once per process.

    A torch module would be pickled into every case's job to cross into the pool's spawned
    workers; instead each worker builds its own at its first copy and keeps it.
    """
    import torch

    return painter_state(path, synthesis).build(torch.device(device)).eval()


def build_transform(settings: Settings, tumor_type: str | None, spacing):
    """``TumorGenerated`` painting every call (prob 1) tumors of ``tumor_type`` with the run's organ and model.

    ``--synthesis gan`` / ``diffusion``: the ellipsoid model, whose tumors the trained model
    repaints (:func:`paint_copy`).
    """
    from labelfree.config.synthesis import LEARNED_SYNTHESIS
    from tumor_synthesis import TumorGenerated

    kwargs = {}
    if settings.synthesis not in ("ellipsoid",) + LEARNED_SYNTHESIS:
        # Passed only when asked for, so that this also runs with engines that have one model.
        kwargs["synthesis"] = settings.synthesis
    tumor_prob = None
    if tumor_type is not None:  # the type drawn for this copy, with probability 1
        tumor_prob = np.eye(len(settings.tumor_types))[settings.tumor_types.index(tumor_type)]
    return TumorGenerated(keys=("image", "label"), prob=1.0, tumor_prob=tumor_prob, organ=settings.organ,
                          spacing=spacing, surface_rim_mm=settings.surface_rim_mm, **kwargs)


def _load_pair(image_path: str, label_path: str):
    """Image (float32 HU), label (uint8), the image's affine and its on-disk dtype.

    Read through :mod:`labelfree.io.readers` (a one-channel 4D NIfTI is a 3D volume there, as
    everywhere); the on-disk dtype is the NIfTI header's (other formats: the array's).
    """
    from labelfree.io.formats import ReaderError, path_exists
    from labelfree.io.readers import read_volume

    volumes = []
    for what, path in (("image", image_path), ("label", label_path)):
        if not path_exists(path):
            raise OfflineError(f"{what} file not found: {path}")
        try:
            volumes.append(read_volume(path))
        except ReaderError as e:
            raise OfflineError(f"{what} file unreadable: {e}") from e
    image_volume, label_volume = volumes
    image, label = np.asarray(image_volume.array), np.asarray(label_volume.array)
    if image.shape != label.shape:
        raise OfflineError(f"image {image_path} {image.shape} and label {label_path} {label.shape} must be 3D "
                           "volumes of one shape")
    rounded = np.rint(label)
    if not np.array_equal(rounded, label) or rounded.min() < 0 or rounded.max() > 255:
        raise OfflineError(f"label {label_path} must hold small non-negative integers")
    header = image_volume.header
    image_dtype = header.get_data_dtype() if header is not None else image.dtype
    return image.astype(np.float32), rounded.astype(np.uint8), image_volume.affine, image_dtype


def _check_label_values(label: np.ndarray, profile, label_path: str) -> None:
    found = np.unique(label)
    unknown = sorted(int(v) for v in found if int(v) >= profile.num_classes)
    if unknown:
        raise OfflineError(f"label {label_path} holds values {unknown} outside the {profile.name} convention "
                           f"{dict(enumerate(profile.class_names))} (convert it first, e.g. labelfree-transfer-label)")


def ras_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along the R, A and S axes of a file's grid (the engine's axis order, and the
    order of a trained model's ``--space_x/y/z``)."""
    import nibabel as nib

    to_ras_ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine),
                                                  nib.orientations.axcodes2ornt("RAS"))
    zooms = voxel_spacing(affine)
    return tuple(float(zooms[int(np.flatnonzero(to_ras_ornt[:, 0] == axis)[0])]) for axis in range(3))


def _ras_reorientation(affine: np.ndarray):
    """Functions mapping an array of the file's axis order to RAS and back, and the RAS spacing (mm)."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    to_ras_ornt = nib.orientations.ornt_transform(ornt, nib.orientations.axcodes2ornt("RAS"))
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), ornt)
    spacing = ras_spacing(affine)

    def to_ras(a):
        return np.ascontiguousarray(nib.orientations.apply_orientation(a, to_ras_ornt))

    def from_ras(a):
        return np.ascontiguousarray(nib.orientations.apply_orientation(a, back))

    return to_ras, from_ras, spacing


def _lesions(label: np.ndarray, affine: np.ndarray, profile) -> list[dict]:
    """Every tumor component (26-connected) of ``label``: centre (voxel index and world mm), volume, size."""
    zooms = voxel_spacing(affine)
    voxel_ml = float(np.prod(zooms)) / 1000.0
    records = []
    for member in profile.members:
        components, n = label_components(label == member.tumor_label, connectivity=3)
        if n == 0:
            continue
        index = np.arange(1, n + 1)
        centres = ndimage.center_of_mass(np.ones(label.shape, dtype=np.float32), components, index)
        counts = np.bincount(components.ravel(), minlength=n + 1)[1:]
        boxes = ndimage.find_objects(components)
        for centre, count, box in zip(centres, counts, boxes):
            world = (np.asarray(affine) @ np.array([*centre, 1.0]))[:3]
            records.append({
                "organ": member.name,
                "label": int(member.tumor_label),
                "center_voxel": [round(float(c), 2) for c in centre],
                "center_mm": [round(float(c), 2) for c in world],
                "voxels": int(count),
                "volume_ml": round(float(count) * voxel_ml, 4),
                "equivalent_radius_mm": round(float(equivalent_sphere_radius_mm(int(count), zooms)), 2),
                "bbox_voxel": [[int(s.start), int(s.stop)] for s in box],
            })
    return records


def _write_sample(root: Path, name: str, image: np.ndarray, label: np.ndarray, affine, image_dtype, record: dict):
    paths = output_paths(root, name)
    save_nifti_atomic(_to_dtype(image, image_dtype), affine, paths["image"])
    save_nifti_atomic(label, affine, paths["label"], dtype=np.uint8)
    record = {"name": name, "image": str(paths["image"].relative_to(root)),
              "label": str(paths["label"].relative_to(root)), **record}
    # Last: the record marks the sample complete (see is_done).
    write_json_atomic(paths["record"], record)


def _to_dtype(image: np.ndarray, dtype) -> np.ndarray:
    """The painted HU image in the source's on-disk dtype (integers rounded, not truncated, and clipped)."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(image), info.min, info.max).astype(dtype)
    return image.astype(np.float32)
