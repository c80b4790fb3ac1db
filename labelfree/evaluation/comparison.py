"""Arms compared on the same cases: markdown results table, bar plots and prediction overlays.

An *arm* is one trained model evaluated by ``validation.py`` (its output folder holds
``metrics.csv`` and ``pred/<case>.nii.gz``). :func:`main` is ``scripts/make_report.py``::

    python scripts/make_report.py --arm synthetic=outs/syn/0.5 --arm real=outs/real/0.5 \\
        --json_dir data/phantom/datafolds/healthy.json --val_dir data/phantom --out results

Written to ``--out``: ``<name>.md`` (the table: tumor Dice and NSD, liver Dice and NSD,
lesion sensitivity overall and by equivalent-sphere radius, false-positive lesions per case,
then one line per case), ``<name>_scores.png``, ``<name>_detection.png`` and, with
``--json_dir``, ``overlays/<arm>_<case>.png`` (axial slice through the largest reference
lesion: CT, reference outline, predicted outline) and ``overlays/<arm>_<case>_false_positive.png``
through the largest false-positive lesion, if any. The per-arm means and pooled sensitivities
are :func:`labelfree.evaluation.report.summarize`'s, the numbers of ``summary.json``.
"""


from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from labelfree.evaluation.lesions import RADIUS_BIN_EDGES_MM
from labelfree.evaluation.report import summarize
from labelfree.io.atomic import write_text_atomic
from labelfree.io.output_dir import check_output_dir
from labelfree.runtime.cli_errors import exits_on

SCORE_COLUMNS = ("tumor_dice", "tumor_nsd", "liver_dice", "liver_nsd")
COUNT_COLUMNS = ("lesions", "detected", "predicted_lesions", "false_positives")


class ReportError(ValueError):
    """An input of the report is missing or malformed."""


def read_metrics_csv(path: str | Path) -> list[dict]:
    """Rows of a ``validation.py`` ``metrics.csv``: scores as floats (NaN kept), counts as ints."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no such metrics file (run validation.py first)")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("name", *SCORE_COLUMNS, *COUNT_COLUMNS) if c not in (reader.fieldnames or [])]
        if missing:
            raise ReportError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = []
        for line_no, raw in enumerate(reader, start=2):
            row: dict = {"name": raw["name"]}
            for key, text in raw.items():
                if key == "name" or key is None:
                    continue
                try:
                    row[key] = float(text) if key in SCORE_COLUMNS else int(float(text or 0))
                except ValueError:
                    raise ReportError(f"{path}, line {line_no}: column {key} holds {text!r}, not a number") from None
            rows.append(row)
    if not rows:
        raise ReportError(f"{path}: no cases")
    return rows


def summarize_arm(rows: Sequence[Mapping], bin_names: Sequence[str] | None = None) -> dict:
    """Mean scores (NaN-aware) and pooled lesion detection of one arm, from :func:`summarize`.

    Returns:
        ``{"cases", <score>: {"mean", "std", "n"}, "lesions", "detected", "sensitivity",
        "false_positives_per_case", "bins": {bin: (detected, lesions)}}``; a sensitivity is
        ``None`` when there is no reference lesion.
    """
    full = summarize(rows, SCORE_COLUMNS, bin_names)
    detection = full["lesion_detection"]
    summary: dict = {"cases": full["cases"]}
    for column in SCORE_COLUMNS:
        summary[column] = {key: full["metrics"][column][key] for key in ("mean", "std", "n")}
    summary["lesions"], summary["detected"] = detection["lesions"], detection["detected"]
    summary["sensitivity"] = detection["sensitivity"]
    summary["false_positives_per_case"] = detection["false_positives_per_case"]
    summary["bins"] = {name: (b["detected"], b["lesions"]) for name, b in detection["by_radius_mm"].items()}
    return summary


def bin_titles(edges: Sequence[float] = RADIUS_BIN_EDGES_MM) -> list[str]:
    """Readable radius-bin headers, e.g. ``r 0-5 mm`` and ``r >= 20 mm``."""
    return [f"r >= {lo:g} mm" if math.isinf(hi) else f"r {lo:g}-{hi:g} mm" for lo, hi in zip(edges[:-1], edges[1:])]


def _score_cell(stats: Mapping) -> str:
    if stats["mean"] is None:
        return "n/a"
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def _ratio_cell(detected: int, lesions: int) -> str:
    return "-" if lesions == 0 else f"{detected / lesions:.2f} ({detected}/{lesions})"


def markdown_table(summaries: Mapping[str, Mapping]) -> str:
    """The comparison table: one row per arm (mean ± std over cases; sensitivities pooled)."""
    bins = list(next(iter(summaries.values()))["bins"])
    headers = ["arm", "cases", "tumor Dice", "tumor NSD", "liver Dice", "liver NSD", "lesion sensitivity",
               *[f"sens. {t}" for t in bin_titles()[: len(bins)]], "FP lesions / case"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for arm, s in summaries.items():
        cells = [arm, str(s["cases"]), *[_score_cell(s[c]) for c in SCORE_COLUMNS],
                 _ratio_cell(s["detected"], s["lesions"]),
                 *[_ratio_cell(*s["bins"][b]) for b in bins], f"{s['false_positives_per_case']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_case_table(arm_rows: Mapping[str, Sequence[Mapping]]) -> str:
    """One markdown line per (arm, case)."""
    headers = ["arm", "case", "tumor Dice", "tumor NSD", "liver Dice", "lesions detected", "FP lesions"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]

    def num(x: float) -> str:
        return "nan" if not math.isfinite(x) else f"{x:.3f}"

    for arm, rows in arm_rows.items():
        for r in rows:
            lines.append(f"| {arm} | {r['name']} | {num(r['tumor_dice'])} | {num(r['tumor_nsd'])} | "
                         f"{num(r['liver_dice'])} | {r['detected']}/{r['lesions']} | {r['false_positives']} |")
    return "\n".join(lines)


def render_markdown(
    title: str,
    summaries: Mapping[str, Mapping],
    arm_rows: Mapping[str, Sequence[Mapping]],
    *,
    notes: Sequence[str] = (),
    command: str | None = None,
    images: Sequence[str] = (),
) -> str:
    """The whole report page."""
    parts = [f"# {title}", ""]
    parts += [*notes, ""] if notes else []
    parts += [markdown_table(summaries), "",
              "Scores are mean ± standard deviation over the cases; lesion sensitivities pool the lesions of all "
              "cases (detected / reference lesions), binned by the radius of the sphere of equal volume. A lesion "
              "counts as detected when any predicted tumor voxel touches it; a predicted component touching no "
              "reference lesion is a false-positive lesion.", "",
              "## Per case", "", per_case_table(arm_rows), ""]
    if images:
        parts += ["## Figures", ""] + [f"![{Path(p).stem}]({p})" for p in images] + [""]
    if command:
        parts += ["## Reproduce", "", "```bash", command, "```", ""]
    return "\n".join(parts)


def write_plots(summaries: Mapping[str, Mapping], out_dir: Path, name: str) -> list[Path]:
    """Bar plots of the mean scores and of the sensitivity per radius bin; returns their paths."""
    from labelfree.evaluation.figures import save_arm_bars

    scores = {arm: {"tumor Dice": s["tumor_dice"]["mean"], "tumor NSD": s["tumor_nsd"]["mean"],
                    "liver Dice": s["liver_dice"]["mean"], "lesion sens.": s["sensitivity"]}
              for arm, s in summaries.items()}
    titles = bin_titles()
    detection = {arm: {t: (d / n if n else None) for t, (d, n) in zip(titles, s["bins"].values())}
                 for arm, s in summaries.items()}
    paths = [out_dir / f"{name}_scores.png", out_dir / f"{name}_detection.png"]
    save_arm_bars(scores, paths[0], title="mean over the held-out cases", ylabel="score")
    save_arm_bars(detection, paths[1], title="lesion sensitivity by radius (equal-volume sphere)",
                  ylabel="sensitivity")
    return paths


def write_overlays(arm_dirs: Mapping[str, Path], json_dir: str, val_dir: str | None, out_dir: Path,
                   max_cases: int | None = None, tumor_label: int = 2) -> list[Path]:
    """Overlays of the datalist's validation cases, for every arm.

    ``overlays/<arm>_<case>.png`` shows the slice through the largest reference lesion;
    ``overlays/<arm>_<case>_false_positive.png`` (when the arm predicted a tumor touching no
    reference lesion) the slice through the largest such false-positive lesion.
    """
    import nibabel as nib

    from labelfree.evaluation.figures import largest_false_positive_slice, save_overlay, shrink_png
    from labelfree.data.datalist import load_datalist
    from labelfree.io.formats import case_name
    from labelfree.io.readers import read_volume

    def canonical(path):
        # Any scan format (labelfree.io.readers) -> RAS voxel order for display, as nibabel's canonical.
        volume = read_volume(path)
        return nib.as_closest_canonical(nib.Nifti1Image(np.asarray(volume.array), volume.affine))

    items = load_datalist(json_dir, "validation", val_dir)[:max_cases]
    written = []
    for item in items:
        name = case_name(item["image"])
        image_nii = canonical(item["image"])  # RAS voxel order for display
        image = np.asanyarray(image_nii.dataobj).astype(np.float32)
        reference = np.asanyarray(canonical(item["label"]).dataobj).astype(np.uint8)
        spacing = image_nii.header.get_zooms()[:3]
        for arm, arm_dir in arm_dirs.items():
            pred_path = arm_dir / "pred" / f"{name}.nii.gz"
            if not pred_path.is_file():
                raise ReportError(f"{pred_path}: no prediction of case {name} for arm {arm}")
            pred = np.asanyarray(canonical(pred_path).dataobj).astype(np.uint8)
            path = out_dir / "overlays" / f"{arm}_{name}.png"
            save_overlay(image, reference, pred, path, spacing_mm=spacing, title=f"{arm}: {name}")
            shrink_png(path)
            written.append(path)
            fp_slice = largest_false_positive_slice(pred == tumor_label, reference == tumor_label)
            if fp_slice is not None:
                path = out_dir / "overlays" / f"{arm}_{name}_false_positive.png"
                save_overlay(image, reference, pred, path, spacing_mm=spacing, slice_index=fp_slice,
                             title=f"{arm}: {name}, largest false-positive tumor")
                shrink_png(path)
                written.append(path)
    return written


def parse_arm(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise ReportError(f"--arm {text!r}: expected NAME=FOLDER (a validation.py output folder)")
    return name, Path(folder)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Turn validation.py outputs into a markdown results table, bar "
                                                 "plots and prediction overlays.")
    parser.add_argument("--arm", action="append", required=True, metavar="NAME=FOLDER",
                        help="a validation.py output folder (holding metrics.csv and pred/) and its name; repeatable")
    parser.add_argument("--out", required=True, help="output folder of the table and the PNGs")
    parser.add_argument("--name", default="metrics", help="file stem of the table and plots (default: metrics)")
    parser.add_argument("--title", default="Tumor segmentation results", help="heading of the markdown page")
    parser.add_argument("--json_dir", default=None,
                        help="datalist whose 'validation' cases were evaluated (needed for the overlays)")
    parser.add_argument("--val_dir", default=None, help="root of the datalist's relative paths")
    parser.add_argument("--max_overlays", type=int, default=None, help="overlays of at most this many cases")
    parser.add_argument("--note", action="append", default=[], help="a line of text above the table; repeatable")
    parser.add_argument("--command", default=None, help="the command that regenerates the results (shown)")
    return parser


@exits_on(ReportError)
def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    check_output_dir(args.out, "--out")  # writable: told before any file is read
    arm_dirs = dict(parse_arm(a) for a in args.arm)
    arm_rows = {arm: read_metrics_csv(folder / "metrics.csv") for arm, folder in arm_dirs.items()}
    summaries = {arm: summarize_arm(rows) for arm, rows in arm_rows.items()}
    out_dir = Path(args.out)
    images = write_plots(summaries, out_dir, args.name)
    if args.json_dir:
        images += write_overlays(arm_dirs, args.json_dir, args.val_dir, out_dir, args.max_overlays)
    relative = [str(p.relative_to(out_dir)) for p in images]
    page = render_markdown(args.title, summaries, arm_rows, notes=args.note, command=args.command, images=relative)
    table_path = write_text_atomic(out_dir / f"{args.name}.md", page)
    print(markdown_table(summaries))
    print(f"table: {table_path}; {len(images)} PNG(s) under {out_dir}")
    return 0

