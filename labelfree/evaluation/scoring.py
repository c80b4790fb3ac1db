"""All per-case numbers of one labelled case: organ and tumor Dice/NSD plus lesion detection.

This is what ``validation.py`` records per case (one row of ``metrics.csv``); the
benchmark times the same function.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from labelfree.evaluation.lesions import detect_lesions
from labelfree.evaluation.metrics import case_metrics
from labelfree.io.readers import voxel_spacing  # noqa: F401  (re-exported: validation.py and tests use it here)
from labelfree.masks import bounding_box


def score_prediction(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    spacing_mm: Sequence[float],
    organ_label: int,
    tumor_label: int,
    organ_name: str = "liver",
    tumor_name: str = "tumor",
    tolerance_mm: float = 2.0,
) -> dict[str, float | int]:
    """Score a predicted label map against its reference.

    The organ region is the organ label with its tumor label (the organ includes its
    tumors, as in LiTS); the tumor region is the tumor label alone.

    Args:
        pred_labels: predicted (H, W, D) label map on the reference's voxel grid.
        ref_labels: reference (H, W, D) label map.
        spacing_mm: voxel size in mm of the reference along the three axes.
        organ_label, tumor_label: label values (``OrganProfile.label_pairs`` of the run's profile).
        organ_name, tumor_name: column prefixes (``liver``/``tumor`` give the original columns).
        tolerance_mm: NSD tolerance in mm.

    Returns:
        ``<organ>_dice, <organ>_nsd, <tumor>_dice, <tumor>_nsd`` (empty-mask convention of
        :mod:`evaluation.metrics`) followed by the counts of
        :func:`evaluation.lesions.detect_lesions`.
    """
    pred_labels, ref_labels = np.asarray(pred_labels), np.asarray(ref_labels)
    if pred_labels.shape != ref_labels.shape:
        raise ValueError(f"prediction shape {pred_labels.shape} differs from reference shape {ref_labels.shape}")
    # Every region is foreground, so one crop to the foreground of both (plus the one-voxel
    # margin the surface needs) serves all metrics and avoids full-scan passes per region.
    pred_fg, ref_fg = pred_labels != 0, ref_labels != 0
    box = bounding_box(pred_fg | ref_fg, margin=1)
    if box is not None:
        pred_labels, ref_labels = pred_labels[box], ref_labels[box]
    regions = {organ_name: (organ_label, tumor_label), tumor_name: (tumor_label,)}
    scores: dict[str, float | int] = dict(case_metrics(pred_labels, ref_labels, spacing_mm, regions, tolerance_mm))
    scores.update(detect_lesions(pred_labels == tumor_label, ref_labels == tumor_label, spacing_mm))
    return scores


def score_label_pairs(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    spacing_mm: Sequence[float],
    label_pairs: Sequence[tuple[str, int, str, int]],
    tolerance_mm: float = 2.0,
) -> dict[str, float | int]:
    """Score every (organ, tumor) pair of a label convention.

    One pair gives exactly :func:`score_prediction`'s keys. With several pairs (the
    multi-organ convention) each pair adds ``<organ>_dice, <organ>_nsd, <tumor>_dice,
    <tumor>_nsd`` and its lesion counts prefixed with ``<tumor>_`` (e.g.
    ``pancreas_tumor_detected``); the unprefixed lesion counts are the sums over pairs.

    Args:
        pred_labels: predicted (H, W, D) label map on the reference's voxel grid.
        ref_labels: reference (H, W, D) label map.
        spacing_mm: voxel size in mm.
        label_pairs: ``(organ name, organ label, tumor name, tumor label)`` per organ
            (``OrganProfile.label_pairs``).
        tolerance_mm: NSD tolerance in mm.
    """
    if len(label_pairs) == 1:
        organ_name, organ_label, tumor_name, tumor_label = label_pairs[0]
        return score_prediction(pred_labels, ref_labels, spacing_mm, organ_label, tumor_label, organ_name,
                                tumor_name, tolerance_mm)
    scores: dict[str, float | int] = {}
    totals: dict[str, int] = {}
    for organ_name, organ_label, tumor_name, tumor_label in label_pairs:
        pair = score_prediction(pred_labels, ref_labels, spacing_mm, organ_label, tumor_label, organ_name,
                                tumor_name, tolerance_mm)
        region_keys = {f"{organ_name}_dice", f"{organ_name}_nsd", f"{tumor_name}_dice", f"{tumor_name}_nsd"}
        for key, value in pair.items():
            if key in region_keys:
                scores[key] = value
            else:
                scores[f"{tumor_name}_{key}"] = value
                totals[key] = totals.get(key, 0) + int(value)
    scores.update(totals)
    return scores


def score_files(pred_path: str, label_path: str, label_pairs: Sequence[tuple[str, int, str, int]],
                tolerance_mm: float = 2.0) -> dict[str, float | int]:
    """Score a prediction file against its label file, at the label's voxel spacing.

    Both are read from disk, so this is the same computation whether the prediction was
    just written by ``validation.py`` or is re-scored later (``labelfree-score``).

    Raises:
        ValueError: the two files' grids differ, or a file does not hold integer labels.
    """
    from labelfree.data.labels import as_integer_labels
    from labelfree.io.readers import read_volume

    # Any label format (NIfTI, NRRD, MetaImage...); predictions are NIfTI in the image's voxel order.
    # Both (H, W, D): the reader drops a one-channel 4th axis.
    label_volume = read_volume(label_path)
    label = as_integer_labels(label_volume.array, what=f"label {label_path}")
    pred = as_integer_labels(read_volume(pred_path).array, what=f"prediction {pred_path}")
    if pred.shape != label.shape:
        raise ValueError(f"prediction {pred_path} has shape {pred.shape}, its label {label_path} {label.shape}")
    return score_label_pairs(pred, label, label_volume.spacing, label_pairs, tolerance_mm)


def score_cases(cases: Sequence[dict], pred_dir, label_pairs: Sequence[tuple[str, int, str, int]],
                tolerance_mm: float = 2.0, workers: int = 1, progress: bool = True) -> list[dict]:
    """Score ``<pred_dir>/<name>.nii.gz`` of every labelled case, in a pool of ``workers`` processes.

    Args:
        cases: ``{"name", "label", ...}`` dicts (cases without a label are skipped).
        pred_dir: the folder of predictions (``validation.py``'s ``pred/``).
        label_pairs: ``(organ name, organ label, tumor name, tumor label)`` per organ.
        tolerance_mm: NSD tolerance.
        workers: processes; 0 or 1 scores in this process.

    Returns:
        One row per labelled case, in the cases' order: ``{"name": ..., **scores}``.
    """
    from pathlib import Path

    from tqdm import tqdm

    labelled = [c for c in cases if c.get("label")]
    jobs = [(str(Path(pred_dir) / f"{c['name']}.nii.gz"), c["label"], tuple(label_pairs), tolerance_mm)
            for c in labelled]
    bar = tqdm(total=len(jobs), desc="scoring", unit="case", dynamic_ncols=True, disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(score_files(*job))
            bar.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: the parent may hold torch's threads and CUDA; the workers need only numpy/scipy.
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(score_files, *job) for job in jobs]
            for future in futures:
                future.result()
                bar.update()
            results = [f.result() for f in futures]
    bar.close()
    return [{"name": c["name"], **scores} for c, scores in zip(labelled, results)]
