"""Label conventions, source-dataset layouts and label conversions.

The project's label convention (single organ) is 0 background, 1 organ, 2 tumor/lesion;
the multi-organ convention (FreeTumor) is 0 background, 1 liver, 2 liver tumor, 3 pancreas,
4 pancreas tumor, 5 kidney, 6 kidney tumor; chest data use 0 background, 1 lung, 2 lesion.

This module holds the pieces shared by ``transfer_label.py`` (which writes converted labels)
and ``datafolds/make_datafolds.py`` (which pairs converted labels with their images):

* :data:`LAYOUTS`: where each public dataset keeps its labels and images below the data
  root, and how a converted label in ``label/`` is named (the original project's names).
* pure array functions: relabelling through a value map, value counts, and an approximate
  lung extraction from a chest CT in HU.

Arrays are (H, W, D) as stored in NIfTI; images in HU, labels as small integers.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from labelfree.io.formats import natural_key


# Folder of converted labels below the data root, as in the original project.
CONVERTED_LABEL_DIR = "label"
# Written next to the converted labels by transfer_label.py: output -> image and source.
MANIFEST_NAME = "manifest.json"

MANIFEST_VERSION = 1

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def tumor_values() -> tuple[int, ...]:
    """Tumor/lesion label values of every organ profile (2 in the single-organ and chest
    conventions; 2, 4, 6 in the multi-organ one). A converted label holding any of them is not
    a healthy case."""
    # Imported here: tumor_synthesis brings MONAI and torch, which the label tools otherwise never need.
    from tumor_synthesis.organs import available_organs, get_organ_profile

    return tuple(sorted({m.tumor_label for organ in available_organs() for m in get_organ_profile(organ).members}))


class LabelError(ValueError):
    """A label file holds values that cannot be interpreted as integer labels."""


@dataclass(frozen=True)
class DatasetLayout:
    """Where a public dataset keeps its files below the data root, and what we make of it.

    Attributes:
        name: short name used on the command line (``--dataset btcv``).
        folder: the dataset's folder below the data root; its presence means "dataset present".
        label_dir: folder of the source labels (relative to the data root).
        image_dir: folder of the CT images (relative to the data root).
        prefix: prefix of the converted label in ``label/`` (``multi-atlas-`` + source name).
        organ: organ the converted labels are for (``liver`` or ``lung``).
        image_rename: (old, new) substring replaced once in a label file name to get its
            image file name (``label0001`` -> ``img0001``); ``None`` when the names are equal.
        description: one line for ``--help``.
        pattern: glob of the source files in ``label_dir`` (``image_dir`` for chest datasets).
    """

    name: str
    folder: str
    label_dir: str
    image_dir: str
    prefix: str
    organ: str
    image_rename: tuple[str, str] | None
    description: str
    pattern: str = "*.nii.gz"

    @property
    def source_dir(self) -> str:
        """Folder whose files are the cases: labels, or images for the chest datasets."""
        return self.image_dir if self.organ == "lung" and self.name in IMAGE_DRIVEN else self.label_dir

    def converted_name(self, source_name: str) -> str:
        """File name in ``label/`` of the converted ``source_name`` label."""
        return f"{self.prefix}{source_name}"

    def image_name(self, source_name: str) -> str:
        """File name of the CT image that the label ``source_name`` belongs to."""
        return rename_once(source_name, self.image_rename)

    def image_path(self, source_name: str) -> str:
        """Image path relative to the data root (POSIX separators, as in datalists)."""
        return f"{self.image_dir}/{self.image_name(source_name)}"


def rename_once(name: str, rename: tuple[str, str] | None) -> str:
    """Replace the first occurrence of ``rename[0]`` in ``name`` by ``rename[1]``."""
    if rename is None:
        return name
    old, new = rename
    return name.replace(old, new, 1)


#: Datasets listed by their images (a chest CT may come without a label; LNDb has one mask per reader).
IMAGE_DRIVEN = ("chest", "lndb", "lndb_mhd")
#: TotalSegmentator ``total`` classes (``totalsegmentator/map_to_binary.py``) -> our labels, per preset.
TOTALSEG_MAPS = {
    "liver": {5: 1},
    "pancreas": {7: 1},
    "kidney": {2: 1, 3: 1},
    "lung": {10: 1, 11: 1, 12: 1, 13: 1, 14: 1},
    # FreeTumor's multi-organ convention: 1 liver, 3 pancreas, 5 kidney (tumors 2/4/6 do not occur).
    "multi": {5: 1, 7: 3, 2: 5, 3: 5},
}


# Layouts of the original project (BTCV, TCIA, CHAOS, LiTS: names verified against the
# original's transfer_label.py and datalists) plus the additions of this project (MSD Task03
# Liver, healthy chest CT, LNDb). Order = processing order of transfer_label.py.
LAYOUTS: dict[str, DatasetLayout] = {
    layout.name: layout
    for layout in (
        DatasetLayout(
            "btcv", "01_Multi-Atlas_Labeling", "01_Multi-Atlas_Labeling/label", "01_Multi-Atlas_Labeling/img",
            "multi-atlas-", "liver", ("label", "img"),
            "BTCV labelNNNN (liver = 6) -> label/multi-atlas-labelNNNN; image imgNNNN",
        ),
        DatasetLayout(
            "tcia", "02_TCIA_Pancreas-CT", "02_TCIA_Pancreas-CT/multiorgan_label", "02_TCIA_Pancreas-CT/img",
            "tcia-", "liver", ("label", "PANCREAS_"),
            "TCIA multi-organ labelNNNN (liver = 6) -> label/tcia-labelNNNN; image PANCREAS_NNNN",
        ),
        DatasetLayout(
            "chaos", "03_CHAOS", "03_CHAOS/ct/liver_label", "03_CHAOS/ct/img",
            "chaos-", "liver", ("_segmentation", "_image"),
            "CHAOS N_segmentation (0/1 or 0/255) -> label/chaos-N_segmentation; image N_image",
        ),
        DatasetLayout(
            "lits", "04_LiTS", "04_LiTS/label", "04_LiTS/img",
            "lits-", "liver", None,
            "LiTS liver_N (0/1/2): tumor-free cases -> label/lits-liver_N; tumor cases stay (validation)",
        ),
        DatasetLayout(
            "msd_liver", "Task03_Liver", "Task03_Liver/labelsTr", "Task03_Liver/imagesTr",
            "msd-", "liver", None,
            "MSD Task03 liver_N (0/1/2): tumor-free cases -> label/msd-liver_N",
        ),
        DatasetLayout(
            "chest", "05_Chest", "05_Chest/label", "05_Chest/img",
            "chest-", "lung", None,
            "healthy chest CT NAME [+ optional lung label NAME] -> label/chest-NAME (0/1 lung)",
        ),
        DatasetLayout(
            "lndb", "06_LNDb", "06_LNDb/label", "06_LNDb/img",
            "lndb-", "lung", None,
            "chest CT NAME + nodule label NAME -> label/lndb-NAME (0/1 lung/2 nodule)",
        ),
        # The public datasets in the layouts they are distributed in (any format labelfree.io.readers reads).
        DatasetLayout(
            "lndb_mhd", "LNDb", "LNDb/masks", "LNDb/data",
            "lndb-", "lung", None,
            "LNDb as distributed: CT LNDb-NNNN.mhd(+.raw) in data/, one nodule mask per radiologist "
            "masks/LNDb-NNNN_radR.mhd -> label/lndb-LNDb-NNNN (0/1 lung from the CT / 2 nodule where at "
            "least --lndb_agreement radiologists marked it)",
            pattern="*.mhd",
        ),
        DatasetLayout(
            "msd_lung", "Task06_Lung", "Task06_Lung/labelsTr", "Task06_Lung/imagesTr",
            "msd06-", "lung", None,
            "MSD Task06 lung_N (0/1 tumor) -> label/msd06-lung_N (0/1 lung from the CT / 2 tumor)",
        ),
        DatasetLayout(
            "kits", "kits23", "kits23/dataset", "kits23/dataset",
            "kits-", "kidney", None,
            "KiTS case_NNNNN/segmentation (1 kidney, 2 tumor, 3 cyst) + imaging -> label/kits-case_NNNNN "
            "(1 kidney incl. cysts / 2 tumor); every case has a tumor (validation cases)",
            pattern="case_*",
        ),
        *(
            DatasetLayout(
                f"totalseg_{organ}", "TotalSegmentator", "TotalSegmentator/labelsTr", "TotalSegmentator/imagesTr",
                f"ts-{organ}-", organ, None,
                f"TotalSegmentator label map NAME (total task) + image NAME -> label/ts-{organ}-NAME "
                f"({', '.join(f'{s}->{d}' for s, d in mapping.items())})",
            )
            for organ, mapping in TOTALSEG_MAPS.items()
        ),
    )
}


def layout_of_converted(name: str) -> DatasetLayout | None:
    """The built-in dataset whose converted-label prefix ``name`` starts with, if any."""
    # Longest prefix first, should one prefix ever start another.
    for layout in sorted(LAYOUTS.values(), key=lambda lay: -len(lay.prefix)):
        if name.startswith(layout.prefix):
            return layout
    return None


def read_manifest(root: str | os.PathLike, warn: Callable[[str], None] | None = None) -> dict:
    """The manifest ``label/manifest.json`` written by transfer_label.py, or an empty one.

    Returns:
        ``{"version": 1, "outputs": {converted file name: {"dataset", "organ", "image",
        "source", "has_tumor", "problems", "info"}}, "not_written": {source path: {...,
        "reason", "tumor_case"}}}``; paths relative to the data root.
    """
    path = Path(root) / CONVERTED_LABEL_DIR / MANIFEST_NAME
    empty = {"version": MANIFEST_VERSION, "outputs": {}, "not_written": {}}
    if not path.is_file():
        return empty
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        if warn is not None:
            warn(f"{path} unreadable ({e})")
        return empty
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        if warn is not None:
            warn(f"{path} is not a version {MANIFEST_VERSION} manifest")
        return empty
    data.setdefault("outputs", {})
    data.setdefault("not_written", {})
    return data


def nifti_stem(name: str) -> str:
    """``liver_3.nii.gz`` -> ``liver_3``."""
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def list_nifti_files(folder: str | os.PathLike, pattern: str = "*.nii.gz") -> list[Path]:
    """NIfTI files of ``folder`` matching ``pattern``, naturally sorted.

    Hidden files are left out: archives packed on macOS (the MSD tarballs among them) carry
    ``._liver_0.nii.gz`` resource forks that are not NIfTI files.
    """
    folder = Path(folder)
    files = [p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def parse_label_map(items: Iterable[str]) -> dict[int, int]:
    """Parse ``["6:1", "11:3"]`` into ``{6: 1, 11: 3}``.

    Raises:
        ValueError: an item is not ``SRC:DST`` with non-negative integers, DST > 255, or a
            source value is mapped twice.
    """
    mapping: dict[int, int] = {}
    for item in items:
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", item)
        if match is None:
            raise ValueError(f"--map {item!r}: expected SRC:DST with non-negative integers, e.g. 6:1")
        src, dst = int(match.group(1)), int(match.group(2))
        if dst > 255:
            raise ValueError(f"--map {item!r}: destination {dst} does not fit a uint8 label")
        if src in mapping and mapping[src] != dst:
            raise ValueError(f"--map: source value {src} mapped twice ({mapping[src]} and {dst})")
        mapping[src] = dst
    return mapping


def as_integer_labels(data: np.ndarray, what: str = "label") -> np.ndarray:
    """Return label data as a signed integer array.

    Labels stored as floats (common after conversions) are accepted when every value lies
    within 1e-3 of an integer; anything else means the file is not a label map.

    Raises:
        LabelError: non-integer or non-finite values.
    """
    data = np.asarray(data)
    if data.dtype.kind in "iu":
        return data.astype(np.int64, copy=False) if data.dtype.kind == "u" and data.itemsize >= 8 else data
    if data.dtype.kind == "b":
        return data.astype(np.uint8)
    if not np.all(np.isfinite(data)):
        raise LabelError(f"{what}: holds NaN or infinite values")
    rounded = np.rint(data)
    bad = np.abs(data - rounded) > 1e-3
    if bad.any():
        examples = np.unique(data[bad])[:5]
        raise LabelError(f"{what}: holds non-integer values (e.g. {', '.join(f'{v:g}' for v in examples)})")
    return rounded.astype(np.int64)


def label_value_counts(label: np.ndarray) -> dict[int, int]:
    """Voxel count of every value present in an integer label array."""
    # order="K": NIfTI data arrive Fortran-ordered; a C-order ravel would copy the volume.
    flat = np.asarray(label).ravel(order="K")
    if flat.size == 0:
        return {}
    low, high = int(flat.min()), int(flat.max())
    if low < 0 or high >= 65536:
        values, counts = np.unique(flat, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}
    # bincount widens its input to int64; doing it in chunks keeps that copy in cache
    # (about 2x faster than one call on a 512x512x100 uint8 label, 5x faster than np.unique).
    total = np.zeros(high + 1, np.int64)
    step = 1 << 18
    for start in range(0, flat.size, step):
        counts = np.bincount(flat[start:start + step], minlength=high + 1)
        total += counts
    return {v: int(c) for v, c in enumerate(total) if c}


def map_label_values(label: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    """Relabel through ``mapping`` (source value -> new value); unmapped values become 0.

    Args:
        label: integer label array, any shape.
        mapping: e.g. ``{6: 1}`` (BTCV liver -> 1) or ``{6: 1, 11: 3}``.

    Returns:
        uint8 array of the same shape.
    """
    label = np.asarray(label)
    if len(mapping) <= 8:
        # A few comparisons beat a lookup table, whose fancy indexing widens the indices to int64.
        # zeros_like keeps the memory order of NIfTI data (Fortran), so saving needs no transpose.
        out = np.zeros_like(label, dtype=np.uint8)
        for src, dst in mapping.items():
            if dst:
                out[label == src] = dst
        return out
    if label.size == 0:
        return np.zeros(label.shape, np.uint8)
    lut = np.zeros(max(int(label.max()), max(mapping)) + 1, np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    # Negative values are never mapped (parse_label_map only accepts non-negative sources).
    return lut[np.clip(label, 0, None)]


def extract_lung_mask(
    image_hu: np.ndarray, air_threshold_hu: float = -400.0, second_lung_min_ratio: float = 0.1
) -> np.ndarray:
    """Approximate lung mask of a chest CT by thresholding and connected components.

    An approximation for chest CTs that come without a lung label, good enough to place
    synthetic lesions inside the lungs, not a segmentation to report: the airways are
    included where they touch the lungs, and dense pathology (consolidation, large masses)
    above the threshold is excluded unless it is enclosed in an axial slice.

    Steps: the body is the largest component of voxels >= ``air_threshold_hu``, holes
    filled per axial slice; candidate air = voxels below the threshold inside the body;
    components touching the in-plane border of the volume are outside air (the top and
    bottom faces are allowed because the trachea leaves through them); the largest
    remaining component is kept, the second one only when it holds at least
    ``second_lung_min_ratio`` of the largest (two lungs not joined by the airways, as
    opposed to bowel gas); holes (vessels, nodules) are filled per axial slice.

    Args:
        image_hu: (H, W, D) CT in HU, D the axial (slice) axis.
        air_threshold_hu: voxels below it are air/lung (HU).
        second_lung_min_ratio: minimum size of the second component relative to the first.

    Returns:
        (H, W, D) bool lung mask; all False when nothing lung-like is found.
    """
    from scipy import ndimage

    from labelfree.masks import largest_component

    image_hu = np.asarray(image_hu)
    if image_hu.ndim != 3:
        raise ValueError(f"expected a 3D (H, W, D) image, got shape {image_hu.shape}")
    dense = image_hu >= air_threshold_hu
    body = largest_component(dense, connectivity=1)
    if not body.any():
        return np.zeros(image_hu.shape, bool)
    body = _fill_holes_per_slice(body)
    air = ~dense & body

    labels, n = ndimage.label(air)
    if n == 0:
        return np.zeros(image_hu.shape, bool)
    border = np.zeros(image_hu.shape, bool)
    border[[0, -1], :, :] = True
    border[:, [0, -1], :] = True
    outside = np.unique(labels[border & air])
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    sizes[outside] = 0
    order = np.argsort(sizes)[::-1]
    if sizes[order[0]] == 0:
        return np.zeros(image_hu.shape, bool)
    keep = [order[0]]
    if n > 1 and sizes[order[1]] >= second_lung_min_ratio * sizes[order[0]] and sizes[order[1]] > 0:
        keep.append(order[1])
    lungs = np.isin(labels, keep)
    return _fill_holes_per_slice(lungs)


def _fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """Fill holes in every axial (H, W) slice of an (H, W, D) mask."""
    from scipy import ndimage

    # A 2D structure with an empty third axis fills each slice on its own, in one call.
    structure = np.zeros((3, 3, 3), bool)
    structure[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_fill_holes(mask, structure=structure)
