"""All per-case numbers of one labelled case: organ and tumor Dice/NSD plus lesion detection.

This is what ``validation.py`` records per case (one row of ``metrics.csv``); the
benchmark times the same function.

Two conventions on which the field disagrees are chosen here by name (flags of
``validation.py`` and ``labelfree-score``, recorded in ``summary.json``):

* :data:`ORGAN_REGIONS`: ``organ_and_tumor`` (default; the organ columns score the organ
  label with its tumor label, as LiTS does) or ``organ_only`` (the organ label alone, as the
  original's ``validation.py`` scored it);
* ``empty_mask_score``: ``one`` (default) or ``nan`` (nnU-Net's and the original's) for a
  region empty in both prediction and label (:data:`evaluation.metrics.EMPTY_MASK_SCORES`).

A prediction file is scored on its label's voxel grid: one saved in another axis order or
orientation (LPS against a RAS label) is re-indexed onto it exactly
(:func:`labelfree.io.orientation.onto_grid`); any other difference is refused, naming both files.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from labelfree.evaluation.lesions import detect_lesions
from labelfree.evaluation.metrics import EMPTY_MASK_SCORES, case_metrics, empty_both_score
from labelfree.io.readers import voxel_spacing  # noqa: F401  (re-exported: validation.py and tests use it here)
from labelfree.masks import bounding_box

#: Which labels the organ columns score, by the name ``--organ_region`` takes: ``organ_and_tumor``
#: (the organ includes its tumors, as in LiTS; this project's default) or ``organ_only`` (the
#: organ label alone, as the original's ``validation.py`` scored it). The tumor columns score
#: the tumor label alone under both.
ORGAN_REGIONS = ("organ_and_tumor", "organ_only")
DEFAULT_ORGAN_REGION = "organ_and_tumor"
DEFAULT_EMPTY_MASK_SCORE = "one"


def add_convention_arguments(parser, recorded: bool = False) -> None:
    """``--organ_region`` and ``--empty_mask_score`` of ``validation.py`` and ``labelfree-score``.

    Both default to ``None``; :func:`resolve_conventions` fills in the value (``recorded``: the
    help says that a re-scoring tool takes the one recorded in the folder's ``summary.json`` first).
    """
    first = "the one recorded in the folder's summary.json, else " if recorded else ""
    parser.add_argument("--organ_region", default=None, choices=ORGAN_REGIONS,
                        help="labels the organ columns (liver_dice, liver_nsd...) score: organ_and_tumor = organ "
                             "label with its tumor label, as LiTS; organ_only = the organ label alone, as the "
                             f"original's validation.py (default: {first}{DEFAULT_ORGAN_REGION})")
    parser.add_argument("--empty_mask_score", default=None, choices=list(EMPTY_MASK_SCORES),
                        help="Dice and NSD of a region empty in both prediction and label: one, or nan as nnU-Net "
                             "and the original (NaN cases are left out of the means, which count them; default: "
                             f"{first}{DEFAULT_EMPTY_MASK_SCORE})")


def resolve_conventions(organ_region: str | None, empty_mask_score: str | None,
                        recorded: dict | None = None) -> dict[str, str]:
    """``{"organ_region", "empty_mask_score"}``: each flag where given, else ``recorded``'s, else the default."""
    recorded = recorded or {}
    return {"organ_region": organ_region or recorded.get("organ_region") or DEFAULT_ORGAN_REGION,
            "empty_mask_score": empty_mask_score or recorded.get("empty_mask_score") or DEFAULT_EMPTY_MASK_SCORE}


def organ_region_labels(organ_label: int, tumor_label: int, organ_region: str = DEFAULT_ORGAN_REGION) -> tuple[int, ...]:
    """The label values the organ columns score under ``organ_region`` (:data:`ORGAN_REGIONS`)."""
    if organ_region == "organ_and_tumor":
        return (organ_label, tumor_label)
    if organ_region == "organ_only":
        return (organ_label,)
    raise ValueError(f"organ region {organ_region!r}: expected one of {', '.join(ORGAN_REGIONS)}")


def score_prediction(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    spacing_mm: Sequence[float],
    organ_label: int,
    tumor_label: int,
    organ_name: str = "liver",
    tumor_name: str = "tumor",
    tolerance_mm: float = 2.0,
    organ_region: str = DEFAULT_ORGAN_REGION,
    empty_mask_score: str | float = DEFAULT_EMPTY_MASK_SCORE,
) -> dict[str, float | int]:
    """Score a predicted label map against its reference.

    The organ region is the organ label with its tumor label (the organ includes its
    tumors, as in LiTS) or, with ``organ_region="organ_only"``, the organ label alone; the
    tumor region is the tumor label alone.

    Args:
        pred_labels: predicted (H, W, D) label map on the reference's voxel grid.
        ref_labels: reference (H, W, D) label map.
        spacing_mm: voxel size in mm of the reference along the three axes.
        organ_label, tumor_label: label values (``OrganProfile.label_pairs`` of the run's profile).
        organ_name, tumor_name: column prefixes (``liver``/``tumor`` give the original columns).
        tolerance_mm: NSD tolerance in mm.
        organ_region: ``organ_and_tumor`` or ``organ_only`` (:data:`ORGAN_REGIONS`).
        empty_mask_score: ``one`` or ``nan``: the score of a region empty in both.

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
    regions = {organ_name: organ_region_labels(organ_label, tumor_label, organ_region), tumor_name: (tumor_label,)}
    scores: dict[str, float | int] = dict(case_metrics(pred_labels, ref_labels, spacing_mm, regions, tolerance_mm,
                                                       empty_both_score(empty_mask_score)))
    scores.update(detect_lesions(pred_labels == tumor_label, ref_labels == tumor_label, spacing_mm))
    return scores


def score_label_pairs(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    spacing_mm: Sequence[float],
    label_pairs: Sequence[tuple[str, int, str, int]],
    tolerance_mm: float = 2.0,
    organ_region: str = DEFAULT_ORGAN_REGION,
    empty_mask_score: str | float = DEFAULT_EMPTY_MASK_SCORE,
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
        organ_region, empty_mask_score: the conventions of :func:`score_prediction`.
    """
    conventions = {"organ_region": organ_region, "empty_mask_score": empty_mask_score}
    if len(label_pairs) == 1:
        organ_name, organ_label, tumor_name, tumor_label = label_pairs[0]
        return score_prediction(pred_labels, ref_labels, spacing_mm, organ_label, tumor_label, organ_name,
                                tumor_name, tolerance_mm, **conventions)
    scores: dict[str, float | int] = {}
    totals: dict[str, int] = {}
    for organ_name, organ_label, tumor_name, tumor_label in label_pairs:
        pair = score_prediction(pred_labels, ref_labels, spacing_mm, organ_label, tumor_label, organ_name,
                                tumor_name, tolerance_mm, **conventions)
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
                tolerance_mm: float = 2.0, organ_region: str = DEFAULT_ORGAN_REGION,
                empty_mask_score: str | float = DEFAULT_EMPTY_MASK_SCORE) -> dict[str, float | int]:
    """Score a prediction file against its label file, on the label's voxel grid and at its spacing.

    Both are read from disk, so this is the same computation whether the prediction was
    just written by ``validation.py`` or is re-scored later (``labelfree-score``). A
    prediction saved on the label's grid in another axis order or orientation is re-indexed
    onto it (:func:`labelfree.io.orientation.onto_grid`).

    Raises:
        GridMismatch: the prediction's grid is not the label's, even up to axis order and
            flips (the message names both files and what differs).
        ValueError: a file does not hold integer labels.
    """
    from labelfree.data.labels import as_integer_labels
    from labelfree.io.orientation import GridMismatch, onto_grid
    from labelfree.io.readers import read_volume

    # Any label format (NIfTI, NRRD, MetaImage...). Both (H, W, D): the reader drops a
    # one-channel 4th axis; both affines are RAS+, so an LPS-saved file compares correctly.
    label_volume = read_volume(label_path)
    label = as_integer_labels(label_volume.array, what=f"label {label_path}")
    pred_volume = read_volume(pred_path)
    try:
        pred = onto_grid(pred_volume.array, pred_volume.affine, label.shape, label_volume.affine)
    except GridMismatch as e:
        raise GridMismatch(grid_mismatch_message(pred_path, label_path, str(e))) from None
    pred = as_integer_labels(pred, what=f"prediction {pred_path}")
    return score_label_pairs(pred, label, label_volume.spacing, label_pairs, tolerance_mm, organ_region,
                             empty_mask_score)


def grid_mismatch_message(pred_path, label_path, difference: str) -> str:
    """The one line that refuses a prediction off its label's grid."""
    return (f"prediction {pred_path} is not on the voxel grid of its label {label_path}, even up to axis order "
            f"and flips: {difference}")


def check_written_prediction(pred_path, image_geometry, image_path) -> None:
    """``validation.py``'s guard on each prediction it wrote: its header, read back, holds the input's grid.

    The prediction is written with the input's affine and (NIfTI) header, so it lies on the
    input's grid, and the pre-flight check put the label on the same grid; reading the
    header back catches a writer whose file would place the voxels elsewhere (a qform that
    disagrees with the sform, a header copied from another file) before it is scored.

    Args:
        pred_path: the written prediction.
        image_geometry: the input's :class:`labelfree.io.readers.Volume` (shape and affine).
        image_path: the input, named in the message.

    Raises:
        GridMismatch: naming both files and what differs.
    """
    from labelfree.io.orientation import GridMismatch, describe_grid_difference
    from labelfree.io.readers import read_geometry, same_grid

    written = read_geometry(pred_path)
    if not same_grid(written, image_geometry):
        difference = describe_grid_difference(written.shape, written.affine, image_geometry.shape,
                                              image_geometry.affine) or "axes in another order or orientation"
        raise GridMismatch(f"prediction {pred_path} as written is not on the voxel grid of its image {image_path}: "
                           f"{difference}")


def check_prediction_grids(pairs: Sequence[tuple[str, str]]) -> list[int]:
    """Compare every prediction's grid with its label's from the headers, before any scoring.

    Args:
        pairs: ``(prediction path, label path)`` per case.

    Returns:
        The indices of the pairs whose prediction lies on its label's grid in another axis
        order or orientation (scored after re-indexing; the caller may say so).

    Raises:
        GridMismatch: one line per prediction that is off its label's grid (shift, voxel size,
            shape, rotation), naming both files and the difference.
    """
    from labelfree.io.orientation import GridMismatch, orientation_difference
    from labelfree.io.readers import read_geometry, same_grid

    reoriented, problems = [], []
    for index, (pred_path, label_path) in enumerate(pairs):
        pred, label = read_geometry(pred_path), read_geometry(label_path)
        if same_grid(pred, label):
            continue
        difference = orientation_difference(pred.shape, pred.affine, label.shape, label.affine)
        if difference:
            problems.append(grid_mismatch_message(pred_path, label_path, difference))
        else:
            reoriented.append(index)
    if problems:
        raise GridMismatch(problems[0] if len(problems) == 1 else
                           f"{len(problems)} predictions are off their label's grid:\n  " + "\n  ".join(problems))
    return reoriented


#: Total label voxels (all cases together) below which a pool of scoring processes costs more
#: than it saves: each spawned worker is a fresh interpreter that imports numpy, scipy, nibabel
#: and the scoring code (seconds), against 0.03 to 0.1 s per million label voxels of scoring.
#: ``benchmarks/bench_score.py`` on 2 shared CPU cores (docs/results/2026-12-05-scoring-weight.md),
#: sets of 0.9 to 252 million voxels: 1 process / pool of 2 from 0.04 to 0.79, except once 1.16 at
#: 118 million (0.72 when run again). A needless pool costs up to 25x on small sets, a missed one
#: at most the worker count, hence a mark at the top of the measured range.
POOL_MIN_VOXELS = 250_000_000


def pool_pays(n_cases: int, total_voxels: int, workers: int, min_voxels: int = POOL_MIN_VOXELS) -> bool:
    """Whether ``workers`` processes are worth starting for ``n_cases`` cases of ``total_voxels`` label voxels."""
    return workers > 1 and n_cases > 1 and total_voxels >= min_voxels


def scoring_processes(cases: Sequence[dict], workers: int, min_voxels: int = POOL_MIN_VOXELS) -> int:
    """How many processes :func:`score_cases` uses for the labelled ``cases``: ``workers``, or 1 where no pool pays.

    The size of the work is the labels' voxel count, from their headers (no voxel data read).
    """
    labelled = [c for c in cases if c.get("label")]
    if workers <= 1 or len(labelled) <= 1:
        return 1
    from labelfree.io.readers import read_geometry

    total_voxels = sum(int(np.prod(read_geometry(c["label"]).shape)) for c in labelled)
    return min(workers, len(labelled)) if pool_pays(len(labelled), total_voxels, workers, min_voxels) else 1


def score_cases(cases: Sequence[dict], pred_dir, label_pairs: Sequence[tuple[str, int, str, int]],
                tolerance_mm: float = 2.0, workers: int = 1, progress: bool = True,
                organ_region: str = DEFAULT_ORGAN_REGION, empty_mask_score: str | float = DEFAULT_EMPTY_MASK_SCORE,
                pool_min_voxels: int = POOL_MIN_VOXELS) -> list[dict]:
    """Score ``<pred_dir>/<name>.nii.gz`` of every labelled case, in a pool of ``workers`` processes.

    Args:
        cases: ``{"name", "label", ...}`` dicts (cases without a label are skipped).
        pred_dir: the folder of predictions (``validation.py``'s ``pred/``).
        label_pairs: ``(organ name, organ label, tumor name, tumor label)`` per organ.
        tolerance_mm: NSD tolerance.
        workers: at most this many processes; 0 or 1 scores in this process, and so does a
            set of cases too small for a pool to pay (:func:`pool_pays`, judged from the
            labels' headers).
        organ_region, empty_mask_score: the conventions of :func:`score_prediction`.
        pool_min_voxels: the break-even of :func:`pool_pays` (tests set 0 to force a pool).

    Returns:
        One row per labelled case, in the cases' order: ``{"name": ..., **scores}``.
    """
    from pathlib import Path

    from tqdm import tqdm

    labelled = [c for c in cases if c.get("label")]
    jobs = [(str(Path(pred_dir) / f"{c['name']}.nii.gz"), c["label"], tuple(label_pairs), tolerance_mm,
             organ_region, empty_mask_score) for c in labelled]
    bar = tqdm(total=len(jobs), desc="scoring", unit="case", dynamic_ncols=True, disable=not progress)
    workers = scoring_processes(labelled, workers, pool_min_voxels)
    if workers <= 1:
        results = []
        for job in jobs:
            results.append(score_files(*job))
            bar.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: the parent may hold torch's threads and CUDA; the workers need only numpy/scipy.
        with ProcessPoolExecutor(max_workers=workers,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(score_files, *job) for job in jobs]
            for future in futures:
                future.result()
                bar.update()
            results = [f.result() for f in futures]
    bar.close()
    return [{"name": c["name"], **scores} for c, scores in zip(labelled, results)]
