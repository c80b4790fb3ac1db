"""Check the cases of a datalist before training: every file read, every geometry compared.

A broken case should stop a run before it starts, not after three days. For each entry
of a datalist this reads the image and the label completely (a truncated ``.nii.gz`` only
fails when its data are decompressed, not when its header is read) and checks that

* both files exist and load, and are 3D (or 4D with one channel), on a voxel grid a scan can
  have (no spacing of 0, negative, NaN or infinite, no singular affine);
* the image holds no NaN or infinite value;
* the label has the image's shape and affine (within :data:`labelfree.io.readers.GRID_TOLERANCE_MM`;
  the rule and its messages are :func:`labelfree.data.case_geometry.grid_mismatch`, shared with
  the pre-flight's header pass);
* the label values are integers among the allowed ones;
* the organ label is not empty.

It also warns (without failing) about a scan listed twice, or in both training and
validation: a leak in a training list, deliberate in an evaluation list that trains and
validates on the same cases.

Results are :class:`CaseCheck` records, so training code can call :func:`check_datalist`
and refuse to start; ``scripts/check_data.py`` prints them as a table.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from labelfree.data.case_geometry import grid_mismatch, impossible_grid
from labelfree.data.datalist import DatalistError, load_datalist, read_datalist_json
from labelfree.data.labels import LabelError, as_integer_labels, label_value_counts
from labelfree.io.formats import ReaderError, case_name, path_exists
from labelfree.io.readers import ImpossibleGeometryError, read_volume

SPLITS = ("training", "validation")


@dataclass
class CaseCheck:
    """What was found for one datalist entry.

    Attributes:
        split: ``training`` or ``validation``.
        index: position of the entry in its split.
        image: absolute image path.
        label: absolute label path, or ``None`` for an image-only entry.
        shape: image shape (voxels), ``None`` when the image could not be read.
        spacing: voxel spacing (mm) from the image header.
        label_values: sorted values present in the label.
        label_counts: voxels per label value.
        organ_voxels: voxels of the organ label(s).
        organ_ml: organ volume (mL), voxels x voxel volume.
        problems: every problem found; empty means the case is fine.
    """

    split: str
    index: int
    image: str
    label: str | None
    shape: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    label_values: tuple[int, ...] | None = None
    label_counts: dict[int, int] = field(default_factory=dict)
    organ_voxels: int | None = None
    organ_ml: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def name(self) -> str:
        """Short case name: the image file (or DICOM folder) name without its format suffix."""
        return case_name(self.image)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["label_counts"] = {str(k): v for k, v in self.label_counts.items()}
        return d


def check_case(
    image_path: str,
    label_path: str | None,
    allowed_labels: Sequence[int] | None,
    organ_labels: Sequence[int],
    split: str = "training",
    index: int = 0,
    convention: str | None = None,
) -> CaseCheck:
    """Check one image/label pair; never raises for bad data, records problems instead.

    Args:
        image_path: CT image (NIfTI, NRRD, MetaImage or a DICOM folder; labelfree.io.readers).
        label_path: its label, or ``None`` (image-only entry: only the image is checked).
        allowed_labels: label values allowed (the run's organ profile: 0 .. num_classes - 1);
            ``None`` allows any integer value.
        organ_labels: value(s) that make up the organ; the organ must not be empty.
            Empty sequence: no organ check.
        split, index: where the entry comes from (for the report).
        convention: words for the allowed values, added to their message (e.g. "the liver
            convention: 0 background, 1 liver, 2 tumor").
    """
    result = CaseCheck(split, index, str(image_path), None if label_path is None else str(label_path))
    image = _load(image_path, "image", result.problems, scaled=False)
    if image is not None:
        result.shape = tuple(int(s) for s in image.shape)
        result.spacing = tuple(round(float(z), 4) for z in image.spacing)
        bad = count_non_finite(image.array)
        if bad:
            result.problems.append(f"image holds {bad} NaN or infinite voxel(s): {image_path}")
    if label_path is None:
        return result
    label = _load(label_path, "label", result.problems, scaled=True)
    if label is None:
        return result
    if image is not None:
        # The grids of the volumes as read: for NRRD, MetaImage and DICOM the first look at them.
        result.problems.extend(grid_mismatch(image, label, label_path))
    try:
        values = as_integer_labels(label.array, f"label {label_path}")
    except LabelError as e:
        result.problems.append(str(e))
        return result
    counts = label_value_counts(values)
    result.label_counts = counts
    result.label_values = tuple(sorted(counts))
    if allowed_labels is not None:
        unexpected = sorted(set(counts) - set(allowed_labels))
        if unexpected:
            words = f"; {convention}" if convention else ""
            result.problems.append(f"unexpected label values {unexpected} in {label_path} "
                                   f"(allowed: {sorted(allowed_labels)}{words})")
    if organ_labels:
        result.organ_voxels = int(sum(counts.get(v, 0) for v in organ_labels))
        result.organ_ml = result.organ_voxels * float(np.prod(label.spacing)) / 1000.0
        if result.organ_voxels == 0:
            result.problems.append(f"organ empty: no voxel of label {'/'.join(map(str, organ_labels))} in {label_path}")
    return result


def count_non_finite(data: np.ndarray) -> int:
    """Voxels that are NaN or +-inf (0 for integer data, which cannot hold them)."""
    data = np.asarray(data)
    if data.dtype.kind not in "fc":
        return 0
    # Chunked along the last axis: a whole-volume boolean copy of a 512^2 x 900 CT is 236 MB.
    return int(sum(np.count_nonzero(~np.isfinite(data[..., z:z + 32])) for z in range(0, data.shape[-1] or 1, 32)))


def _load(path: str, what: str, problems: list[str], scaled: bool):
    """The whole :class:`labelfree.io.readers.Volume`, or ``None`` with a problem recorded.

    Reading the data (not only the header) is what detects a truncated or corrupt gzip
    stream. ``scaled=False`` reads NIfTI's stored values without applying
    scl_slope/scl_inter: the image's values are not checked, and scaling would turn an
    int16 CT into float64 (4x the memory).
    """
    if not path_exists(path):
        problems.append(f"{what} file missing: {path}")
        return None
    try:
        return read_volume(path, scaled=scaled)
    except ImpossibleGeometryError as e:
        problems.append(f"{what} file {impossible_grid(path, e)}")
        return None
    except ReaderError as e:
        problems.append(f"{what} file unreadable: {e}")
        return None


def declared_labels(json_path: str | os.PathLike) -> tuple[int, ...] | None:
    """Label values a decathlon datalist declares in its ``"labels"`` header, if any.

    ``{"labels": {"0": "background", "1": "liver", "2": "tumor"}}`` -> ``(0, 1, 2)``.
    """
    labels = read_datalist_json(json_path).get("labels")
    if not isinstance(labels, dict):
        return None
    try:
        return tuple(sorted(int(k) for k in labels))
    except ValueError:
        return None


def datalist_entries(
    json_path: str | os.PathLike, train_dir: str | os.PathLike | None, val_dir: str | os.PathLike | None,
    splits: Iterable[str] = SPLITS,
) -> Iterator[tuple[str, int, dict]]:
    """(split, index, entry with absolute paths) for every entry of the requested splits.

    Raises:
        DatalistError: the datalist cannot be read, or a requested split is missing.
    """
    data = read_datalist_json(json_path)
    for split in splits:
        if split not in data:
            raise DatalistError(f"datalist {json_path} has no '{split}' list (keys: {sorted(data)})")
        base = train_dir if split == "training" else val_dir
        for i, entry in enumerate(load_datalist(json_path, split, base)):
            yield split, i, entry


def check_datalist(
    json_path: str | os.PathLike,
    train_dir: str | os.PathLike | None,
    val_dir: str | os.PathLike | None,
    splits: Iterable[str] = SPLITS,
    *,
    allowed_labels: Sequence[int] | None,
    organ_labels: Sequence[int],
    workers: int = 1,
    progress: bool = False,
) -> tuple[list[CaseCheck], list[str]]:
    """Check every entry of a datalist.

    Args:
        json_path: the decathlon datalist.
        train_dir, val_dir: bases of the training and validation paths (as ``main.py``).
        splits: which lists to check.
        allowed_labels, organ_labels: see :func:`check_case`.
        workers: files read in parallel (threads: gzip decompression releases the GIL).
        progress: show a tqdm bar.

    Returns:
        (one :class:`CaseCheck` per entry in datalist order, datalist-level warnings: a scan
        listed twice or in both training and validation, see :func:`datalist_warnings`).

    Raises:
        DatalistError: the datalist itself cannot be read.
    """
    entries = list(datalist_entries(json_path, train_dir, val_dir, splits))

    def run(item: tuple[str, int, dict]) -> CaseCheck:
        split, i, entry = item
        return check_case(entry["image"], entry.get("label"), allowed_labels, organ_labels, split, i)

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            iterator = pool.map(run, entries)
            results = list(_maybe_progress(iterator, len(entries), progress))
    else:
        results = [run(item) for item in _maybe_progress(entries, len(entries), progress)]
    return results, datalist_warnings(entries)


def _maybe_progress(iterable, total: int, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc="checking", unit="case")


def datalist_warnings(entries: Sequence[tuple[str, int, dict]]) -> list[str]:
    """Remarks on the list as a whole: a scan twice in a split, or in both splits.

    Not failures: an evaluation list may validate on its training cases on purpose, but in
    a training list this is a leak that inflates validation scores.
    """
    problems = []
    seen: dict[str, dict[str, int]] = {}
    for split, _, entry in entries:
        image = str(Path(entry["image"]).resolve())
        seen.setdefault(image, {}).setdefault(split, 0)
        seen[image][split] += 1
    for image, splits in seen.items():
        for split, n in splits.items():
            if n > 1:
                problems.append(f"{image} listed {n} times in {split}")
        if len(splits) > 1:
            problems.append(f"{image} is in both training and validation")
    return problems


def format_table(results: Sequence[CaseCheck]) -> str:
    """Fixed-width table: case, split, shape, spacing, label values, organ, status."""
    header = ("case", "split", "shape", "spacing (mm)", "label values", "organ voxels", "organ mL", "status")
    rows = [header]
    for r in results:
        rows.append((
            r.name,
            r.split,
            "x".join(map(str, r.shape)) if r.shape else "-",
            "x".join(f"{s:g}" for s in r.spacing) if r.spacing else "-",
            ",".join(map(str, r.label_values)) if r.label_values is not None else "-",
            str(r.organ_voxels) if r.organ_voxels is not None else "-",
            f"{r.organ_ml:.1f}" if r.organ_ml is not None else "-",
            "ok" if r.ok else f"{len(r.problems)} problem(s)",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_problems(results: Sequence[CaseCheck]) -> str:
    """Every problem, one line each, grouped by case."""
    lines = []
    for r in results:
        if r.problems:
            lines.append(f"{r.split}[{r.index}] {r.name}:")
            lines.extend(f"  - {p}" for p in r.problems)
    return "\n".join(lines)
