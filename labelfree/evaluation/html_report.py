"""A static HTML report with a slice browser per case: ``report/index.html`` beside ``metrics.csv``.

The report opens from disk in a browser, with no server and no network, and can be zipped and
mailed as one folder::

    report/index.html          summary, per-case table (sortable), the viewer (CSS and JS inlined)
    report/cases/case_000.js   one case's volumes and lesions, loaded when the case is opened

The viewer's code is the project's own (``report_assets/viewer.js`` and ``viewer.css``, package
data). A case file calls ``LF.caseLoaded(index, data)`` (a ``<script>`` tag loads from ``file://``
where ``fetch`` may not). Its volumes are stored small:

* in RAS voxel order (brought there by a permutation and flips, no interpolation), at the
  evaluation's spacing or coarser: integer block factors keep every axis at most
  :data:`MAX_EDGE_VOXELS` and the whole grid at most :data:`MAX_VOXELS`; the CT is block-averaged,
  label maps keep the label of highest priority in each block (tumor over organ over background)
  so that a small lesion does not vanish;
* 8-bit: the CT in HU through the piecewise-linear code table :data:`HU_POINTS` ->
  :data:`CODE_POINTS` (3.75 HU per code from -250 to 350 HU, coarser in lung and bone, air one code), so that
  the organ, abdomen and lung windows are all applied in the browser from one array;
* zlib-compressed and base64-encoded (the browser inflates them with ``DecompressionStream``).

Lesions are matched at the evaluation's full resolution by :func:`evaluation.lesions.match_lesions`
(the rule that ``metrics.csv`` counts with); only their positions are mapped to the stored grid.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import math
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from labelfree.evaluation.figures import PREDICTION_COLOURS, REFERENCE_COLOURS
from labelfree.evaluation.lesions import equivalent_sphere_radius_mm, match_lesions
from labelfree.evaluation.report import _format_cell, pair_metric_columns, score_columns_of
from labelfree.io.atomic import write_error
from labelfree.io.readers import voxel_spacing
from labelfree.masks import label_components, union_bounding_box

#: Folder of the report, beside ``metrics.csv``.
REPORT_DIR = "report"
#: Largest stored size of any axis (voxels) and of the whole grid: a 512 x 512 x 120 scan is
#: stored as 256 x 256 x 120.
MAX_EDGE_VOXELS = 256
MAX_VOXELS = 8_000_000
#: HU -> 8-bit code, piecewise linear (codes 0..255); the viewer inverts it. Soft tissue gets 3.75 HU
#: per code (under the noise of any CT), lung 11, bone 36; air (-950 HU and below) is one code, so
#: that the noise of the air around the body costs nothing (a third of the stored size otherwise).
HU_POINTS = (-950.0, -250.0, 350.0, 1500.0)
CODE_POINTS = (0.0, 64.0, 224.0, 255.0)
#: Window presets besides the organ's own, as (lowest, highest) HU shown.
WINDOW_PRESETS = {"abdomen": (-160.0, 240.0), "lung": (-1350.0, 150.0)}
#: False positives listed per tumor label: the largest ones (an untrained network predicts hundreds).
MAX_LISTED_FALSE_POSITIVES = 50
#: Colour of synthetic tumors (and their organ) in the synthesis preview.
SYNTHESIS_COLOURS = {"organ": REFERENCE_COLOURS["organ"], "tumor": PREDICTION_COLOURS["tumor"]}


@dataclass
class Layer:
    """A label map drawn as outlines over every panel, toggled on its own.

    Attributes:
        name: shown beside its checkbox (``reference``, ``prediction``).
        labels: uint8 (X, Y, Z) label map on the stored grid.
        colours: CSS colour of each outlined label value.
        line_width: in CSS pixels; the reference is drawn wider, under the prediction, so that
            where both outlines coincide the reference shows as a rim around the prediction.
    """

    name: str
    labels: np.ndarray
    colours: dict[int, str]
    line_width: float = 1.5


@dataclass
class Lesion:
    """One entry of a case's lesion list.

    Attributes:
        text: what it is (``liver tumor 2``).
        status: ``found``, ``missed``, ``false positive`` or ``synthetic``.
        radius_mm: equivalent-sphere radius at the evaluation's spacing.
        volume_ml: volume in ml.
        slices: stored-grid index (x, y, z) of its largest sagittal, coronal and axial cross-section.
        centre: stored-grid (x, y, z) centre of mass, in voxels.
    """

    text: str
    status: str
    radius_mm: float
    volume_ml: float
    slices: tuple[int, int, int]
    centre: tuple[float, float, float]


@dataclass
class ViewerCase:
    """What the slice browser shows of one case (all arrays (X, Y, Z) in RAS order on one stored grid).

    Attributes:
        name: case name.
        spacing_mm: voxel size of the stored grid in mm along x, y, z.
        panels: ``(title, uint8 CT codes)`` shown side by side (see :func:`hu_to_codes`).
        layers: outlines drawn over every panel.
        lesions: the lesion list; a click shows its slice.
        notes: said under the lesion list (lesions left out of it).
        organ_window: the organ's (lowest, highest) HU, the default window.
        start: stored-grid (x, y, z) slices shown first.
    """

    name: str
    spacing_mm: tuple[float, float, float]
    panels: list[tuple[str, np.ndarray]]
    layers: list[Layer]
    lesions: list[Lesion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    organ_window: tuple[float, float] = (-160.0, 240.0)
    start: tuple[int, int, int] | None = None


# ----------------------------------------------------------------------------------------------
# Volumes: RAS order, block factors, 8-bit codes, compression


def to_ras(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """An (H, W, D) array in RAS voxel order (nibabel's closest canonical: axes permuted and flipped)."""
    import nibabel as nib

    return nib.orientations.apply_orientation(np.asarray(array), nib.orientations.io_orientation(affine))


def ras_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along x, y, z of the array :func:`to_ras` returns."""
    import nibabel as nib

    spacing = voxel_spacing(affine)
    out = [0.0, 0.0, 0.0]
    for source_axis, (target_axis, _) in enumerate(nib.orientations.io_orientation(affine)):
        out[int(target_axis)] = spacing[source_axis]
    return tuple(out)


def display_factors(shape: Sequence[int], spacing_mm: Sequence[float]) -> tuple[int, int, int]:
    """Integer block factor per axis: at most :data:`MAX_EDGE_VOXELS` per axis, :data:`MAX_VOXELS` in all.

    Beyond the per-axis limit, the axis whose stored voxels are finest (in mm) is coarsened first.
    """
    factors = [max(1, math.ceil(n / MAX_EDGE_VOXELS)) for n in shape]

    def stored() -> int:
        return int(np.prod([math.ceil(n / f) for n, f in zip(shape, factors)]))

    while stored() > MAX_VOXELS:
        axis = min(range(3), key=lambda a: (spacing_mm[a] * factors[a], a))
        factors[axis] += 1
    return tuple(factors)


def _block_reduce(array: np.ndarray, factors: Sequence[int], ufunc: np.ufunc, pad_mode: str) -> np.ndarray:
    """``ufunc`` over each block of ``factors`` voxels of an (X, Y, Z) array padded to whole blocks.

    One strided pass per position in the block (fx * fy * fz passes over 1 / (fx fy fz) of the
    voxels each): several times faster than a reduction over the axes of a 6-D reshaped view.
    """
    pad = [(0, -n % f) for n, f in zip(array.shape, factors)]
    if any(p for _, p in pad):
        array = np.pad(array, pad, mode=pad_mode)
    fx, fy, fz = factors
    out = None
    for i, j, k in itertools.product(range(fx), range(fy), range(fz)):
        part = array[i::fx, j::fy, k::fz]
        out = part.copy() if out is None else ufunc(out, part, out=out)
    return out


def downsample_mean(volume: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Block means (float32) of an (X, Y, Z) volume; edge voxels repeat into the last partial block."""
    volume = np.asarray(volume, dtype=np.float32)
    if tuple(factors) == (1, 1, 1):
        return volume
    return _block_reduce(volume, factors, np.add, "edge") / float(np.prod(factors))


def downsample_labels(labels: np.ndarray, factors: Sequence[int], tumor_labels: Iterable[int]) -> np.ndarray:
    """Block label of highest priority (tumor, then any other label, then background) as uint8."""
    labels = np.asarray(labels).astype(np.uint8)
    if tuple(factors) == (1, 1, 1):
        return labels
    # key = rank * 256 + label: its block maximum is the label of highest rank (ties: highest value).
    rank = np.ones(256, np.uint16)
    rank[0] = 0
    rank[[t for t in tumor_labels if 0 < t < 256]] = 2
    key = (rank * 256 + np.arange(256, dtype=np.uint16))[labels]
    return (_block_reduce(key, factors, np.maximum, "constant") % 256).astype(np.uint8)


def hu_to_codes(hu: np.ndarray) -> np.ndarray:
    """HU -> uint8 codes of the table :data:`HU_POINTS` -> :data:`CODE_POINTS` (clipped at both ends)."""
    return np.rint(np.interp(np.asarray(hu, dtype=np.float32), HU_POINTS, CODE_POINTS)).astype(np.uint8)


def codes_to_hu(codes: np.ndarray) -> np.ndarray:
    """The inverse of :func:`hu_to_codes` (what the viewer shows), float32 HU."""
    return np.interp(np.asarray(codes, dtype=np.float32), CODE_POINTS, HU_POINTS).astype(np.float32)


def encode_volume(volume: np.ndarray) -> str:
    """uint8 (X, Y, Z) -> base64 of its zlib stream, x fastest (index ``x + X * (y + Y * z)``)."""
    raw = np.asarray(volume, dtype=np.uint8).tobytes(order="F")
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")  # 9: 0.2 % smaller, twice the time


def decode_volume(text: str, shape: Sequence[int]) -> np.ndarray:
    """The inverse of :func:`encode_volume` (what the viewer does), for tests and checks."""
    raw = zlib.decompress(base64.b64decode(text))
    return np.frombuffer(raw, dtype=np.uint8).reshape(tuple(shape), order="F")


# ----------------------------------------------------------------------------------------------
# Lesions


def _components_entries(components: np.ndarray, offset: Sequence[int], spacing_mm: Sequence[float],
                        factors: Sequence[int], texts: Sequence[str], statuses: Sequence[str],
                        radii: Sequence[float]) -> list[Lesion]:
    """Lesion entries of numbered components (1..n) of a full-resolution RAS grid cropped at ``offset``."""
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    entries = []
    for index, box in enumerate(ndimage.find_objects(components)):
        if box is None:
            continue
        mask = components[box] == index + 1
        slices, centre = [], []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            area = mask.sum(axis=other)  # cross-section (voxels) of each slice along this axis
            start = offset[axis] + box[axis].start
            native = start + int(np.argmax(area))
            mass = float(np.average(np.arange(area.size), weights=area)) + start
            slices.append(native // factors[axis])
            centre.append((mass + 0.5) / factors[axis] - 0.5)
        entries.append(Lesion(texts[index], statuses[index], float(radii[index]),
                              float(mask.sum()) * voxel_ml, tuple(slices), tuple(centre)))
    return entries


def evaluation_lesions(pred: np.ndarray, ref: np.ndarray, spacing_mm: Sequence[float], factors: Sequence[int],
                       tumor_name: str = "tumor") -> tuple[list[Lesion], int]:
    """Reference lesions (found / missed), then false-positive components, each by decreasing size.

    Only the :data:`MAX_LISTED_FALSE_POSITIVES` largest false positives are listed.

    Args:
        pred, ref: (X, Y, Z) tumor masks at the evaluation's resolution, RAS order.
        spacing_mm: their voxel size.
        factors: the stored grid's block factors (positions are given on that grid).
        tumor_name: names the entries (``tumor 1``...).

    Returns:
        The entries, and the number of false positives left out.
    """
    box = union_bounding_box(pred, ref, margin=1)  # match on the lesions' box only, as detect_lesions does
    if box is None:
        return [], 0
    offset = tuple(b.start for b in box)
    match = match_lesions(pred[box], ref[box], spacing_mm)
    n_ref = match.detected.size
    reference = _components_entries(
        match.reference, offset, spacing_mm, factors, [f"{tumor_name} {i + 1}" for i in range(n_ref)],
        ["found" if d else "missed" for d in match.detected], match.reference_radius_mm)
    fp_ids = np.flatnonzero(match.false_positive) + 1
    fp_ids = fp_ids[np.argsort(-match.predicted_radius_mm[fp_ids - 1], kind="stable")]
    unlisted = max(0, fp_ids.size - MAX_LISTED_FALSE_POSITIVES)
    fp_ids = fp_ids[:MAX_LISTED_FALSE_POSITIVES]
    false_positive_components = np.where(np.isin(match.predicted, fp_ids), match.predicted, 0)
    renumber = np.zeros(match.false_positive.size + 1, dtype=np.int32)
    renumber[fp_ids] = np.arange(1, fp_ids.size + 1)  # 1..k by decreasing size
    false_positives = _components_entries(
        renumber[false_positive_components], offset, spacing_mm, factors,
        [f"predicted {tumor_name} {i + 1}" for i in range(fp_ids.size)], ["false positive"] * fp_ids.size,
        match.predicted_radius_mm[fp_ids - 1])
    return sorted(reference, key=lambda e: -e.radius_mm) + false_positives, unlisted


def _start_slices(lesions: Sequence[Lesion], fallback: np.ndarray) -> tuple[int, int, int]:
    """Slices through the first (largest, reference first) lesion, else the centre of ``fallback``'s mask."""
    if lesions:
        return lesions[0].slices
    if fallback.any():
        return tuple(int(round(c)) for c in ndimage.center_of_mass(fallback))
    return tuple(n // 2 for n in fallback.shape)


# ----------------------------------------------------------------------------------------------
# Cases


def _on_scan_grid(path: str | os.PathLike, what: str, image) -> np.ndarray:
    """Integer labels of ``path`` on the voxel grid of ``image`` (re-indexed when saved in another orientation)."""
    from labelfree.data.labels import as_integer_labels
    from labelfree.io.orientation import onto_grid
    from labelfree.io.readers import read_volume

    volume = read_volume(path)
    labels = as_integer_labels(volume.array, what=f"{what} {path}")
    return onto_grid(labels, volume.affine, image.array.shape, image.affine)


def evaluation_case(name: str, image_path: str | os.PathLike, label_path: str | os.PathLike,
                    pred_path: str | os.PathLike, label_pairs: Sequence[tuple[str, int, str, int]],
                    organ_window: tuple[float, float]) -> ViewerCase:
    """The viewer's case of one scored prediction: CT, reference and prediction outlines, lesions.

    Args:
        name: case name.
        image_path, label_path, pred_path: the scan (HU), its reference labels and the prediction,
            on one voxel grid up to axis order and flips (any format of :mod:`labelfree.io.readers`).
        label_pairs: ``(organ name, organ label, tumor name, tumor label)`` per organ.
        organ_window: the organ's (lowest, highest) HU.
    """
    from labelfree.io.readers import read_volume

    image = read_volume(image_path)
    affine = image.affine
    spacing = ras_spacing(affine)
    ct = to_ras(image.array, affine)
    # Label and prediction may be saved in another orientation than the scan (scoring accepts
    # the same grid up to axis order and flips): re-index each onto the scan's grid first.
    ref = to_ras(_on_scan_grid(label_path, "label", image), affine)
    pred = to_ras(_on_scan_grid(pred_path, "prediction", image), affine)
    if not ct.shape == ref.shape == pred.shape:
        raise ValueError(f"case {name}: scan {ct.shape}, label {ref.shape} and prediction {pred.shape} differ in shape")
    factors = display_factors(ct.shape, spacing)
    tumors = [tumor for _, _, _, tumor in label_pairs]
    lesions, notes = [], []
    for _, _, tumor_name, tumor in label_pairs:
        entries, unlisted = evaluation_lesions(pred == tumor, ref == tumor, spacing, factors,
                                               tumor_name.replace("_", " "))
        lesions += entries
        if unlisted:
            notes.append(f"and {unlisted} smaller false-positive {tumor_name.replace('_', ' ')}(s), not listed")

    def colours(scheme: Mapping[str, str]) -> dict[int, str]:
        return {value: scheme[kind] for _, organ, _, tumor in label_pairs
                for kind, value in (("organ", organ), ("tumor", tumor))}

    stored_ref = downsample_labels(ref, factors, tumors)
    return ViewerCase(
        name=name,
        spacing_mm=tuple(s * f for s, f in zip(spacing, factors)),
        panels=[("CT", hu_to_codes(downsample_mean(ct, factors)))],
        layers=[Layer("reference", stored_ref, colours(REFERENCE_COLOURS), line_width=3.5),
                Layer("prediction", downsample_labels(pred, factors, tumors), colours(PREDICTION_COLOURS))],
        lesions=lesions,
        notes=notes,
        organ_window=tuple(float(v) for v in organ_window),
        start=_start_slices(lesions, stored_ref > 0),
    )


def synthesis_case(name: str, healthy_hu: np.ndarray, synthetic_hu: np.ndarray, synthetic_labels: np.ndarray,
                   spacing_mm: Sequence[float], organ_label: int, tumor_label: int,
                   organ_window: tuple[float, float]) -> ViewerCase:
    """The viewer's case of a synthesis preview: the healthy scan beside the one with synthetic tumors.

    Args:
        name: shown in the table.
        healthy_hu, synthetic_hu: (X, Y, Z) CT in HU, RAS order, one grid.
        synthetic_labels: (X, Y, Z) labels after synthesis (organ, tumor).
        spacing_mm: voxel size in mm.
        organ_label, tumor_label: label values.
        organ_window: the organ's (lowest, highest) HU.
    """
    spacing = tuple(float(s) for s in spacing_mm)
    factors = display_factors(np.shape(healthy_hu), spacing)
    tumor = np.asarray(synthetic_labels) == tumor_label
    components, n = label_components(tumor)
    sizes = np.bincount(components.ravel(), minlength=n + 1)[1:]
    names = [f"synthetic tumor {i + 1}" for i in range(n)]
    lesions = sorted(_components_entries(components, (0, 0, 0), spacing, factors, names,
                                         ["synthetic"] * n, equivalent_sphere_radius_mm(sizes, spacing)),
                     key=lambda e: -e.radius_mm)
    labels = downsample_labels(synthetic_labels, factors, [tumor_label])
    return ViewerCase(
        name=name,
        spacing_mm=tuple(s * f for s, f in zip(spacing, factors)),
        panels=[("healthy", hu_to_codes(downsample_mean(healthy_hu, factors))),
                ("with synthetic tumors", hu_to_codes(downsample_mean(synthetic_hu, factors)))],
        layers=[Layer("synthetic tumors", labels, {organ_label: SYNTHESIS_COLOURS["organ"],
                                                     tumor_label: SYNTHESIS_COLOURS["tumor"]})],
        lesions=lesions,
        organ_window=tuple(float(v) for v in organ_window),
        start=_start_slices(lesions, labels > 0),
    )


def case_payload(case: ViewerCase) -> dict[str, Any]:
    """The JSON the viewer reads (volumes encoded by :func:`encode_volume`)."""
    shape = case.panels[0][1].shape
    for what, array in [*case.panels, *[(layer.name, layer.labels) for layer in case.layers]]:
        if array.shape != shape:
            raise ValueError(f"case {case.name}: {what} has shape {array.shape}, the CT {shape}")
    windows = [{"name": "organ", "low": case.organ_window[0], "high": case.organ_window[1]}]
    windows += [{"name": name, "low": low, "high": high} for name, (low, high) in WINDOW_PRESETS.items()]
    return {
        "name": case.name,
        "shape": [int(n) for n in shape],
        "spacing": [round(float(s), 4) for s in case.spacing_mm],
        "codes": {"hu": list(HU_POINTS), "code": list(CODE_POINTS)},
        "windows": windows,
        "panels": [{"title": title, "data": encode_volume(codes)} for title, codes in case.panels],
        "layers": [{"name": layer.name, "line_width": layer.line_width, "data": encode_volume(layer.labels),
                    "colours": {str(k): v for k, v in layer.colours.items()}} for layer in case.layers],
        "lesions": [{"text": e.text, "status": e.status, "radius_mm": round(e.radius_mm, 2),
                     "volume_ml": round(e.volume_ml, 3), "slices": [int(s) for s in e.slices],
                     "centre": [round(float(c), 2) for c in e.centre]} for e in case.lesions],
        "notes": list(case.notes),
        "start": [int(min(max(s, 0), n - 1)) for s, n in zip(case.start or [n // 2 for n in shape], shape)],
    }


# ----------------------------------------------------------------------------------------------
# The page


def _asset(name: str) -> str:
    return (resources.files("labelfree.evaluation") / "report_assets" / name).read_text(encoding="utf-8")


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}"
    return str(value)


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def evaluation_summary_html(summary: Mapping[str, Any], score_columns: Sequence[str]) -> str:
    """Means of the scores, lesion detection by size and false positives per case, from ``summary.json``."""
    metrics = summary["metrics"]
    means = _table(["metric", "mean", "median", "std", "cases", "NaN"],
                   [[html.escape(c), _number(metrics[c]["mean"]), _number(metrics[c]["median"]),
                     _number(metrics[c]["std"]), str(metrics[c]["n"]), str(metrics[c]["n_nan"])]
                    for c in score_columns], "summary")
    detection = summary["lesion_detection"]
    by_size = _table(["equivalent radius (mm)", "lesions", "detected", "sensitivity"],
                     [[html.escape(name.replace("r", "", 1).replace("_", " to ")).replace("inf", "&infin;"),
                       str(b["lesions"]), str(b["detected"]), _number(b["sensitivity"], 3)]
                      for name, b in detection["by_radius_mm"].items()]
                     + [["all", str(detection["lesions"]), str(detection["detected"]),
                         _number(detection["sensitivity"], 3)]], "summary")
    fp = (f'<p class="facts">false-positive lesions: {detection["false_positives"]} in {summary["cases"]} case(s), '
          f'{_number(detection["false_positives_per_case"], 2)} per case; predicted lesions: '
          f'{detection["predicted_lesions"]}</p>')
    return (f'<section class="cards"><div><h2>Scores (mean over cases)</h2>{means}</div>'
            f'<div><h2>Lesion detection by size</h2>{by_size}{fp}</div></section>')


def cases_table_html(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """The per-case table: one row per case, every column sortable; a click on a row opens the case.

    Each cell holds the value as ``metrics.csv`` writes it in ``data-value`` (what sorting uses)
    and shows floats with 4 decimals.
    """
    head = "".join(f'<th data-column="{html.escape(c)}" title="sort">{html.escape(c)}</th>' for c in columns)
    body = []
    for index, row in enumerate(rows):
        cells = []
        for column in columns:
            value = row.get(column)
            text = "" if value is None else _format_cell(value)
            shown = html.escape(str(value)) if column == columns[0] else _number(value)
            cells.append(f'<td data-value="{html.escape(text)}">{shown}</td>')
        body.append(f'<tr data-case="{index}" tabindex="0">{"".join(cells)}</tr>')
    return (f'<table id="cases" class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def page_html(title: str, subtitle: str, summary_html: str, table_html: str) -> str:
    """The whole ``index.html`` (CSS and JS inlined)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_asset("viewer.css")}</style></head>
<body>
<header><h1>{html.escape(title)}</h1><p class="facts">{subtitle}</p></header>
<main>
{summary_html}
<section><h2>Cases</h2><p class="hint">Click a column to sort, a row to open the case below.</p>
<div class="scroll">{table_html}</div></section>
<section id="viewer" hidden></section>
</main>
<script>{_asset("viewer.js")}</script>
</body></html>
"""


def write_report(folder: str | os.PathLike, title: str, subtitle: str, summary_html: str, table_html: str,
                 cases: Iterable[ViewerCase]) -> Path:
    """Write the report folder (index.html, cases/case_NNN.js), replacing any earlier one whole.

    ``cases`` is consumed one at a time (one case's volumes in memory); the i-th case belongs to
    the i-th row of the table (``data-case="i"``). The new folder is built beside the old one
    and swapped in.

    Returns:
        The path of ``index.html``.

    Raises:
        ValueError: ``folder`` exists and holds anything but an earlier report.
        OutputWriteError: a write failed (disk full, quota); no partial report is left and an
            earlier one is kept.
    """
    final = Path(folder)
    if final.exists() and not (final.is_dir() and {p.name for p in final.iterdir()} <= {"index.html", "cases"}):
        raise ValueError(f"{final} exists and is not a report folder (index.html, cases/); give another one")
    out_dir = final.parent
    building = old = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=out_dir))
        (building / "cases").mkdir()
        for index, case in enumerate(cases):
            payload = json.dumps(case_payload(case), separators=(",", ":"))
            (building / "cases" / f"case_{index:03d}.js").write_text(
                f"LF.caseLoaded({index},{payload});\n", encoding="utf-8")
        (building / "index.html").write_text(page_html(title, subtitle, summary_html, table_html), encoding="utf-8")
        os.chmod(building, 0o755)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=out_dir))
            os.replace(final, old / final.name)
        os.replace(building, final)
    except OSError as error:  # a full disk or a quota: one line, the earlier report back in place
        if old is not None and (old / final.name).exists() and not final.exists():
            os.replace(old / final.name, final)
        raise write_error(final, error, final.exists()) from error
    finally:
        for leftover in (building, old):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    return final / "index.html"


def write_evaluation_report(out_dir: str | os.PathLike, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                            label_pairs: Sequence[tuple[str, int, str, int]], cases: Sequence[Mapping[str, Any]],
                            organ_window: tuple[float, float], pred_dir: str | os.PathLike | None = None,
                            title: str | None = None) -> Path:
    """The report of one scored evaluation folder: ``<out_dir>/report/index.html``.

    Args:
        out_dir: the folder holding ``pred/`` and ``metrics.csv``.
        rows: the rows of ``metrics.csv`` (``name`` first).
        summary: what :func:`evaluation.report.write_scores` returned.
        label_pairs: ``(organ name, organ label, tumor name, tumor label)`` per organ.
        cases: ``{"name", "image", "label"}`` of the scored cases (the scan each row was scored on).
        organ_window: the organ's (lowest, highest) HU, the viewer's default window.
        pred_dir: the predictions ``<case>.nii.gz`` (default: ``<out_dir>/pred``).
        title: page title (default: the folder).
    """
    out_dir = Path(out_dir)
    pred_dir = Path(pred_dir) if pred_dir is not None else out_dir / "pred"
    by_name = {c["name"]: c for c in cases}
    columns = [c for c in pair_metric_columns(label_pairs) if any(c in r for r in rows)]
    summary_html = evaluation_summary_html(summary, score_columns_of(label_pairs))
    viewer_cases = (evaluation_case(r["name"], by_name[r["name"]]["image"], by_name[r["name"]]["label"],
                                    pred_dir / f"{r['name']}.nii.gz", label_pairs, organ_window)
                    for r in rows)
    subtitle = (f"{len(rows)} case(s) from {html.escape(str((out_dir / 'metrics.csv').resolve()))}; "
                f"outlines of the reference wide (organ {REFERENCE_COLOURS['organ']}, "
                f"tumor {REFERENCE_COLOURS['tumor']}), of the prediction thin (organ {PREDICTION_COLOURS['organ']}, "
                f"tumor {PREDICTION_COLOURS['tumor']})")
    title = title or f"Evaluation {out_dir.resolve().parent.name}/{out_dir.name}"
    return write_report(out_dir / REPORT_DIR, title, subtitle, summary_html, cases_table_html(columns, rows),
                        viewer_cases)
