"""Every file the evaluation writes, and the printed table.

* ``pred/<case>.nii.gz``: uint8 label map in the exact geometry of the input scan,
  with the input's header (affine, qform/sform, units);
* ``metrics.csv``: one row per scored case; the original project's columns first
  (``name, <organ>_dice, <organ>_nsd, <tumor>_dice, <tumor>_nsd``), then lesion
  detection counts;
* ``summary.json``: NaN-aware means with counts, and lesion sensitivity pooled over
  all cases (overall and per radius bin).

All files are written atomically through :mod:`labelfree.io.atomic`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from labelfree.evaluation.lesions import radius_bin_names
from labelfree.io.atomic import save_nifti_atomic, write_json_atomic, write_text_atomic

LESION_COLUMNS = ("lesions", "detected", "predicted_lesions", "false_positives")


def metric_columns(organ_name: str = "liver", tumor_name: str = "tumor", bin_names: Sequence[str] | None = None) -> list[str]:
    """Column order of ``metrics.csv``: original columns first, then lesion counts.

    Args:
        organ_name: prefix of the organ columns (``liver`` gives the original names).
        tumor_name: prefix of the tumor columns.
        bin_names: radius bin names (default :func:`evaluation.lesions.radius_bin_names`).
    """
    bins = list(radius_bin_names() if bin_names is None else bin_names)
    columns = ["name", f"{organ_name}_dice", f"{organ_name}_nsd", f"{tumor_name}_dice", f"{tumor_name}_nsd"]
    columns += list(LESION_COLUMNS)
    for name in bins:
        columns += [f"lesions_{name}", f"detected_{name}"]
    return columns


def pair_metric_columns(label_pairs: Sequence[tuple[str, int, str, int]], bin_names: Sequence[str] | None = None) -> list[str]:
    """Column order of ``metrics.csv`` for a label convention of one or more (organ, tumor) pairs.

    One pair: :func:`metric_columns` (liver gives the original's columns). Several pairs
    (multi-organ): ``name``, then ``<organ>_dice, <organ>_nsd, <tumor>_dice, <tumor>_nsd``
    per pair, then the lesion counts summed over pairs, then each tumor's own counts
    prefixed with ``<tumor>_`` (see ``evaluation.scoring.score_label_pairs``).
    """
    if len(label_pairs) == 1:
        organ_name, _, tumor_name, _ = label_pairs[0]
        return metric_columns(organ_name, tumor_name, bin_names)
    lesion_columns = metric_columns("organ", "tumor", bin_names)[5:]
    columns = ["name"]
    for organ_name, _, tumor_name, _ in label_pairs:
        columns += [f"{organ_name}_dice", f"{organ_name}_nsd", f"{tumor_name}_dice", f"{tumor_name}_nsd"]
    columns += lesion_columns
    for _, _, tumor_name, _ in label_pairs:
        columns += [f"{tumor_name}_{c}" for c in lesion_columns]
    return columns


def score_columns_of(label_pairs: Sequence[tuple[str, int, str, int]]) -> list[str]:
    """The Dice / NSD columns of :func:`pair_metric_columns` (what the summary averages)."""
    return [c for name, _, tumor, _ in label_pairs for c in (f"{name}_dice", f"{name}_nsd", f"{tumor}_dice", f"{tumor}_nsd")]


def save_prediction(labels: np.ndarray, reference_image, path: str | os.PathLike) -> Path:
    """Write a label map as uint8 NIfTI in the geometry of ``reference_image``.

    Args:
        labels: (H, W, D) label map on the voxel grid of ``reference_image``.
        reference_image: the input scan's geometry: a nibabel image, or a
            ``labelfree.io.readers.Volume`` of any format (``shape``, RAS+ ``affine``, and the
            NIfTI ``header`` or ``None``). A NIfTI input's header is reused; for NRRD,
            MetaImage and DICOM inputs the RAS affine of the reader is the NIfTI affine, so
            each voxel lands on the world point of the input's voxel (LPS turned into RAS).
        path: destination ``.nii.gz``.
    """
    labels = np.asarray(labels)
    if labels.shape != tuple(reference_image.shape[:3]):
        raise ValueError(
            f"prediction shape {labels.shape} differs from the input scan's shape {reference_image.shape} ({path})"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"labels outside 0..255 cannot be written as uint8 ({path})")
    source_header = getattr(reference_image, "header", None)
    if source_header is not None:
        header = source_header.copy()
    else:
        import nibabel as nib

        header = nib.Nifti1Header()
        header.set_xyzt_units("mm")
    header.set_intent("label")
    return save_nifti_atomic(labels, reference_image.affine, path, dtype=np.uint8, header=header)


def _format_cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else repr(float(value))
    return str(value)


def write_metrics_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: str | os.PathLike) -> Path:
    """Write one row per case in ``columns`` order (missing values are left empty)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format_cell(row[c]) if c in row else "" for c in columns])
    return write_text_atomic(path, buffer.getvalue())


def _finite_or_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def summarize(rows: Sequence[Mapping[str, Any]], score_columns: Sequence[str], bin_names: Sequence[str] | None = None) -> dict:
    """Aggregate per-case rows.

    Args:
        rows: per-case dicts as written to ``metrics.csv``.
        score_columns: the Dice/NSD columns to average (NaN-aware).
        bin_names: radius bin names (default :func:`evaluation.lesions.radius_bin_names`).

    Returns:
        ``{"cases": n, "metrics": {column: {"mean", "std", "median", "n", "n_nan"}},
        "lesion_detection": {...}}``. Sensitivities pool lesions over all cases
        (detected / lesions), ``None`` when there is no reference lesion; NaN means
        become ``None`` so the JSON stays valid.
    """
    bins = list(radius_bin_names() if bin_names is None else bin_names)
    summary: dict[str, Any] = {"cases": len(rows), "metrics": {}}
    for column in score_columns:
        values = np.array([float(r.get(column, math.nan)) for r in rows], dtype=np.float64)
        finite = values[~np.isnan(values)]
        summary["metrics"][column] = {
            "mean": _finite_or_none(float(np.mean(finite))) if finite.size else None,
            "std": _finite_or_none(float(np.std(finite))) if finite.size else None,
            "median": _finite_or_none(float(np.median(finite))) if finite.size else None,
            "n": int(finite.size),
            "n_nan": int(values.size - finite.size),
        }

    def total(column: str) -> int:
        return int(sum(int(r.get(column, 0)) for r in rows))

    def sensitivity(detected: int, lesions: int) -> float | None:
        return detected / lesions if lesions else None

    lesions, detected = total("lesions"), total("detected")
    false_positives = total("false_positives")
    summary["lesion_detection"] = {
        "lesions": lesions,
        "detected": detected,
        "sensitivity": sensitivity(detected, lesions),
        "predicted_lesions": total("predicted_lesions"),
        "false_positives": false_positives,
        "false_positives_per_case": false_positives / len(rows) if rows else None,
        "by_radius_mm": {
            name: {
                "lesions": total(f"lesions_{name}"),
                "detected": total(f"detected_{name}"),
                "sensitivity": sensitivity(total(f"detected_{name}"), total(f"lesions_{name}")),
            }
            for name in bins
        },
    }
    return summary


def write_summary_json(summary: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write the summary (plus any run settings the caller added) as JSON."""
    return write_json_atomic(path, summary)


def format_table(rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], score_columns: Sequence[str]) -> str:
    """A fixed-width text table: one line per case, then the mean and lesion sensitivity."""
    columns = ["name", *score_columns, "lesions", "detected", "false_positives"]
    headers = ["case", *score_columns, "lesions", "detected", "FP"]

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, (float, np.floating)):
            return "nan" if math.isnan(value) else f"{float(value):.4f}"
        return str(value)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    mean_row = ["mean", *[cell(summary["metrics"][c]["mean"]) for c in score_columns]]
    detection = summary["lesion_detection"]
    mean_row += [str(detection["lesions"]), str(detection["detected"]), str(detection["false_positives"])]
    table = [headers, *body, mean_row]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]

    def fmt(line: Sequence[str]) -> str:
        return "  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(line, widths)))

    rule = "-" * len(fmt(headers))
    lines = [fmt(headers), rule, *[fmt(line) for line in body], rule, fmt(mean_row)]
    counted = {c: summary["metrics"][c]["n"] for c in score_columns}
    if any(n != len(rows) for n in counted.values()):  # NaN scores (--empty_mask_score nan) left out
        lines.append(f"means over the cases with a score, of {len(rows)}: "
                     + ", ".join(f"{c} {n}" for c, n in counted.items()) + " (NaN left out)")
    by_bin = ", ".join(f"{name} {b['detected']}/{b['lesions']}" for name, b in detection["by_radius_mm"].items())
    lines.append(
        f"lesion sensitivity {_ratio_text(detection['sensitivity'])} "
        f"({detection['detected']}/{detection['lesions']}; by equivalent radius in mm: {by_bin}); "
        f"false-positive lesions per case {_ratio_text(detection['false_positives_per_case'])}"
    )
    return "\n".join(lines)


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def write_scores(rows: Sequence[Mapping[str, Any]], label_pairs: Sequence[tuple[str, int, str, int]],
                 out_dir: str | os.PathLike, settings: Mapping[str, Any]) -> dict:
    """Write ``metrics.csv`` and ``summary.json`` of scored cases into ``out_dir``, print the table.

    The one writer of both files, for ``validation.py`` and for re-scoring a prediction folder.

    Args:
        rows: one dict per case (``name`` and the scores of ``scoring.score_label_pairs``).
        label_pairs: ``(organ name, organ label, tumor name, tumor label)`` per organ.
        out_dir: the evaluation folder (holding ``pred/``).
        settings: recorded as the summary's ``settings``.

    Returns:
        The summary.
    """
    out_dir = Path(out_dir)
    columns = pair_metric_columns(label_pairs)
    score_columns = score_columns_of(label_pairs)
    summary = summarize(rows, score_columns)
    if len(label_pairs) > 1:  # lesion detection of each tumor label on its own
        summary["lesion_detection_by_tumor"] = {
            tumor: summarize(
                [{k[len(tumor) + 1:]: v for k, v in r.items() if k.startswith(f"{tumor}_")} for r in rows], []
            )["lesion_detection"]
            for _, _, tumor, _ in label_pairs
        }
    summary["settings"] = dict(settings)
    write_metrics_csv(rows, columns, out_dir / "metrics.csv")
    write_summary_json(summary, out_dir / "summary.json")
    print(format_table(rows, summary, score_columns))
    print(f"metrics: {out_dir / 'metrics.csv'}, summary: {out_dir / 'summary.json'}")
    return summary
