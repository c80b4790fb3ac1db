"""Evaluate a trained segmentation network: predictions in the original geometry, Dice, NSD, lesions.

The original project's command keeps working::

    python validation.py --model=unet --val_overlap=0.75 --val_dir $val_path \\
        --json_dir datafolds/fold_0.json --log_dir runs/synt.no_pretrain.unet0 --save_dir outs

It loads ``<log_dir>/model.pt`` (or ``--checkpoint``), segments every case of the
datalist's ``validation`` list with Gaussian-blended sliding windows, maps each
prediction back onto the exact voxel grid of its input NIfTI, post-processes it (largest
organ component, tumors within 30 mm of it; ``--no_postprocess`` to skip) and scores it
against its label. Written to ``<save_dir>/<log_dir name>/<val_overlap>/``:

* ``pred/<case>.nii.gz``: uint8 labels with the input's shape, affine and header;
* ``metrics.csv``: ``name, <organ>_dice, <organ>_nsd, tumor_dice, tumor_nsd`` (the
  original columns; lung: ``lung_*``, ``nodule_*``) followed by lesion-detection counts;
  with ``--organ multi`` (FreeTumor labels 1..6) one ``<organ>_dice, <organ>_nsd,
  <organ>_tumor_dice, <organ>_tumor_nsd`` group per organ, the lesion counts summed over
  organs, then each tumor's counts prefixed with its name (``liver_tumor_detected`` ...);
* ``summary.json``: NaN-aware means with counts, pooled lesion sensitivity, settings.

Scans without labels (datalist entries without ``"label"``, or ``--images DIR``) are
only segmented. Preprocessing settings (intensity window, spacing, patch size, network)
default to the values saved in the checkpoint by ``main.py``, so they match training.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import DataLoader, Dataset
from tqdm import tqdm

import labelfree.args
from labelfree.evaluation import report
from labelfree.evaluation.inference import Predictor, load_model, select_device
from labelfree.evaluation import roi as roi_inference
from labelfree.evaluation.postprocess import DEFAULT_TUMOR_MARGIN_MM, postprocess_labels
from labelfree.evaluation.scoring import score_label_pairs
from labelfree.networks import MODEL_NAMES, SWIN_FEATURE_SIZES, build_model
from labelfree.checkpoint import CheckpointError, load_checkpoint
from labelfree.datalist import DatalistError, check_datalist_files, load_datalist
from labelfree.labels import LabelError, as_integer_labels, list_nifti_files, nifti_stem
from labelfree.transforms import get_transforms

#: Settings that must match training: validation flag -> (checkpoint ``args`` key(s), fallback).
#: The fallback ``None`` means "derived later" (the intensity window comes from the organ).
TRAINING_SETTINGS = {
    "model": (("model_name", "model"), "unet"),
    "swin_type": (("swin_type",), "base"),
    "feature_size": (("feature_size",), None),
    "num_classes": (("num_classes", "out_channels"), 3),
    "organ": (("organ",), "liver"),
    "a_min": (("a_min",), None),
    "a_max": (("a_max",), None),
    "space_x": (("space_x",), 1.0),
    "space_y": (("space_y",), 1.0),
    "space_z": (("space_z",), 1.0),
    "roi_x": (("roi_x",), 96),
    "roi_y": (("roi_y",), 96),
    "roi_z": (("roi_z",), 96),
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--val_dir", default=None, help="root that the datalist's relative paths are relative to")
    data.add_argument("--json_dir", default=None, help="datalist JSON; its 'validation' list is evaluated")
    data.add_argument("--images", default=None, metavar="DIR", help="segment every NIfTI file in DIR (no labels, no scores)")

    model = parser.add_argument_group("network (defaults: the values saved in the checkpoint)")
    model.add_argument("--log_dir", default=None, help="training run folder holding model.pt; names the output folder")
    model.add_argument("--checkpoint", default=None, help="checkpoint file (default: <log_dir>/model.pt)")
    model.add_argument("--model", "--model_name", dest="model", default=None, choices=MODEL_NAMES,
                       help="network (training's --model_name, accepted here too)")
    model.add_argument("--swin_type", default=None, choices=sorted(SWIN_FEATURE_SIZES), help="Swin-UNETR size")
    model.add_argument("--feature_size", default=None, type=int, help="Swin-UNETR feature size (overrides --swin_type)")
    model.add_argument("--num_classes", default=None, type=int, help="output classes incl. background (3)")

    prep = parser.add_argument_group("preprocessing (must match training; defaults: the checkpoint's values)")
    prep.add_argument("--organ", default=None, type=str.lower, choices=labelfree.args.organ_names(),
                      help="organ profile: label convention (multi: FreeTumor 0..6), metric names, default "
                           "intensity window and class count (default: the checkpoint's, else liver)")
    prep.add_argument("--a_min", default=None, type=float, help="HU mapped to 0 (default: the organ's window)")
    prep.add_argument("--a_max", default=None, type=float, help="HU mapped to 1 (default: the organ's window)")
    for axis in "xyz":
        prep.add_argument(f"--space_{axis}", default=None, type=float, help=f"resampled spacing in mm along {axis} (1.0)")
    for axis in "xyz":
        prep.add_argument(f"--roi_{axis}", default=None, type=int, help=f"sliding-window size in voxels along {axis} (96)")

    infer = parser.add_argument_group("inference")
    infer.add_argument("--val_overlap", default=0.5, type=float, help="overlap of neighbouring windows, in [0, 1)")
    infer.add_argument("--sw_batch_size", default=None, type=int,
                       help="windows per forward pass (default: 4 on CUDA, 1 on CPU)")
    infer.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    infer.add_argument("--noamp", action="store_true", help="no mixed precision on CUDA (AMP is on by default there)")
    infer.add_argument("--workers", default=1, type=int, help="processes loading the next scans during inference")

    scoring = parser.add_argument_group("post-processing and scoring")
    scoring.add_argument("--no_postprocess", action="store_true", help="keep the raw argmax (no component filtering)")
    scoring.add_argument("--nsd_tolerance", default=2.0, type=float, help="NSD tolerance in mm (2)")
    scoring.add_argument("--save_dir", default="outs", help="output root (default: outs)")
    roi_inference.add_roi_arguments(parser)
    return parser


class UsageError(ValueError):
    """The command line cannot be satisfied (flags, paths)."""


def check_args(args: argparse.Namespace) -> None:
    """Reject values that would only fail later, or silently do something else."""
    if not 0.0 <= args.val_overlap < 1.0:
        raise UsageError(f"--val_overlap must be in [0, 1), got {args.val_overlap}")
    if args.sw_batch_size is not None and args.sw_batch_size < 1:
        raise UsageError(f"--sw_batch_size must be at least 1, got {args.sw_batch_size}")
    if args.nsd_tolerance < 0:
        raise UsageError(f"--nsd_tolerance must be >= 0 mm, got {args.nsd_tolerance}")
    if args.workers < 0:
        raise UsageError(f"--workers must be >= 0, got {args.workers}")


def resolve_checkpoint_path(args: argparse.Namespace) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    if args.log_dir:
        return Path(args.log_dir) / "model.pt"
    raise UsageError("give --log_dir (holding model.pt) or --checkpoint")


def resolve_settings(args: argparse.Namespace, saved_args: dict | None) -> dict[str, str]:
    """Fill unset training settings in ``args``: checkpoint value, else the default.

    Returns:
        Setting name -> where its value came from (``"flag"``, ``"checkpoint"``, ``"default"``).
    """
    saved_args = saved_args or {}
    sources = {}
    for name, (saved_names, fallback) in TRAINING_SETTINGS.items():
        if getattr(args, name) is not None:
            sources[name] = "flag"
            continue
        saved = next((saved_args[k] for k in saved_names if saved_args.get(k) is not None), None)
        setattr(args, name, saved if saved is not None else fallback)
        sources[name] = "checkpoint" if saved is not None else "default"
    profile = organ_profile(args.organ)
    if sources["num_classes"] == "default":  # the organ's label convention: 3 classes, multi-organ 7
        args.num_classes = profile.num_classes
        sources["num_classes"] = f"organ {profile.name}"
    for name, value in zip(("a_min", "a_max"), profile.window):
        if getattr(args, name) is None:
            setattr(args, name, float(value))
            sources[name] = f"organ {profile.name}"
    return sources


def organ_profile(name: str):
    """The organ profile (label values, class names, window); a clear error for unknown organs."""
    try:
        return labelfree.args.organ_profile(name)
    except (KeyError, ValueError) as e:
        raise UsageError(f"--organ {name}: {e}") from e


def label_pairs(profile) -> tuple[tuple[str, int, str, int], ...]:
    """``(organ name, organ label, tumor name, tumor label)`` of each organ of the profile's label convention."""
    pairs = getattr(profile, "label_pairs", None)
    if pairs is not None:
        return tuple(pairs)
    names = profile.class_names
    return ((names[profile.organ_label], profile.organ_label, names[profile.tumor_label], profile.tumor_label),)


def collect_cases(args: argparse.Namespace) -> list[dict]:
    """Cases to evaluate: ``{"image", "name"[, "label"]}`` with absolute paths, checked to exist.

    Raises:
        UsageError / DatalistError: no input given, a missing or unreadable file (all
            listed), two cases with the same name, or a label whose grid differs from its image.
    """
    if args.images and args.json_dir:
        raise UsageError("give either --json_dir (datalist) or --images DIR, not both")
    if args.images:
        folder = Path(args.images)
        if not folder.is_dir():
            raise UsageError(f"--images {folder}: not a folder")
        items = [{"image": str(p.absolute())} for p in list_nifti_files(folder, "*.nii*")]
        if not items:
            raise UsageError(f"--images {folder}: no .nii / .nii.gz files found")
    elif args.json_dir:
        items = load_datalist(args.json_dir, "validation", args.val_dir)
        if not items:
            raise DatalistError(f"datalist {args.json_dir} has an empty 'validation' list")
    else:
        raise UsageError("give --json_dir (a datalist) or --images DIR")
    check_datalist_files(items, what=f"validation list of {args.json_dir or args.images}")

    names: dict[str, str] = {}
    problems = []
    for item in items:
        item["name"] = nifti_stem(Path(item["image"]).name)
        if item["name"] in names:
            problems.append(f"two cases named {item['name']}: {names[item['name']]} and {item['image']}")
        names[item["name"]] = item["image"]
        if item.get("label"):
            problems += _grid_problems(item["image"], item["label"])
        else:
            item.pop("label", None)
    if problems:
        raise DatalistError(f"{len(problems)} problem(s) with the cases:\n  " + "\n  ".join(problems))
    return items


def _grid_problems(image_path: str, label_path: str) -> list[str]:
    image, label = nib.load(image_path), nib.load(label_path)
    if image.shape[:3] != label.shape[:3]:
        return [f"label {label_path} has shape {label.shape}, its image {image_path} {image.shape}"]
    if not np.allclose(image.affine, label.affine, atol=1e-2):
        tqdm.write(
            f"warning: label {label_path} and image {image_path} have different affines; "
            "scoring on the voxel grid, with the label's spacing"
        )
    return []


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along the three array axes (column norms of the affine; oblique-safe)."""
    return tuple(float(s) for s in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def score_case(pred: np.ndarray, label_path: str, profile, tolerance_mm: float) -> dict:
    """Dice, NSD and lesion counts of one prediction against its label file (at the label's spacing)."""
    label_nii = nib.load(label_path)
    label = as_integer_labels(np.asanyarray(label_nii.dataobj), what=f"label {label_path}")
    if label.ndim == 4 and label.shape[3] == 1:
        label = label[..., 0]
    return score_label_pairs(pred, label, voxel_spacing(label_nii.affine), label_pairs(profile), tolerance_mm)


def build_network(args: argparse.Namespace) -> torch.nn.Module:
    return build_model(
        args.model,
        in_channels=1,
        out_channels=args.num_classes,
        roi_size=(args.roi_x, args.roi_y, args.roi_z),
        swin_type=args.swin_type,
        feature_size=args.feature_size,
    )


def output_dir(args: argparse.Namespace, checkpoint_path: Path) -> Path:
    run_name = Path(args.log_dir).name if args.log_dir else checkpoint_path.parent.name
    return Path(args.save_dir) / run_name / str(args.val_overlap)


def evaluate(
    predictor: Predictor,
    transforms,
    cases: list[dict],
    profile,
    out_dir: Path,
    postprocess: bool = True,
    tolerance_mm: float = 2.0,
    workers: int = 0,
) -> list[dict]:
    """Segment, save and score every case; return the metric rows of the labelled ones."""
    pairs = tuple((organ_label, tumor_label) for _, organ_label, _, tumor_label in label_pairs(profile))
    loader = DataLoader(Dataset(cases, transform=transforms), batch_size=1, num_workers=workers)
    rows = []
    progress = tqdm(loader, total=len(cases), desc="cases", unit="case", dynamic_ncols=True)
    for case, batch in zip(cases, progress):
        progress.set_postfix_str(case["name"])
        pred = predictor.predict_batch(batch)[0]
        image_nii = nib.load(case["image"])
        if postprocess:
            pred = postprocess_labels(pred, voxel_spacing(image_nii.affine), pairs, DEFAULT_TUMOR_MARGIN_MM)
        report.save_prediction(pred, image_nii, out_dir / "pred" / f"{case['name']}.nii.gz")
        if "label" in case:
            rows.append({"name": case["name"], **score_case(pred, case["label"], profile, tolerance_mm)})
    return rows


def main(args: argparse.Namespace) -> dict | None:
    """Run the evaluation; return the summary (``None`` when no case has a label)."""
    check_args(args)
    checkpoint_path = resolve_checkpoint_path(args)
    cases = collect_cases(args)  # every input problem surfaces before the network loads
    checkpoint = load_checkpoint(checkpoint_path)
    saved_args = checkpoint.get("args") if isinstance(checkpoint.get("args"), dict) else None
    sources = resolve_settings(args, saved_args)
    profile = organ_profile(args.organ)
    device = select_device(args.device)

    try:
        model = build_network(args)
    except (ValueError, ImportError) as e:  # a patch size the network cannot take, a missing package
        raise UsageError(str(e)) from e
    flags = {"--model": args.model, "--num_classes": args.num_classes, "--swin_type": args.swin_type,
             "--feature_size": args.feature_size}
    load_model(model, checkpoint_path, flags, checkpoint)

    space = (args.space_x, args.space_y, args.space_z)
    roi = (args.roi_x, args.roi_y, args.roi_z)
    transforms = get_transforms("infer", a_min=args.a_min, a_max=args.a_max, space=space)
    predictor = Predictor(model, transforms, roi, args.val_overlap,
                          roi_inference.resolve_sw_batch_size(args.sw_batch_size, device), device, amp=not args.noamp,
                          roi_mode=args.roi_mode, body_threshold=roi_inference.body_threshold(args.a_min, args.a_max))
    out_dir = output_dir(args, checkpoint_path)
    n_labelled = sum("label" in c for c in cases)
    print(
        f"{len(cases)} case(s), {n_labelled} with labels | {args.model} from {checkpoint_path} on {device}"
        f"{' (AMP)' if predictor.amp else ''} | window {args.a_min:g}..{args.a_max:g} HU, spacing {space} mm, "
        f"roi {roi}, overlap {args.val_overlap} | settings from the checkpoint: "
        f"{', '.join(k for k, v in sources.items() if v == 'checkpoint') or 'none'} | output {out_dir}"
    )

    start = time.perf_counter()
    rows = evaluate(predictor, transforms, cases, profile, out_dir, not args.no_postprocess, args.nsd_tolerance,
                    args.workers)
    elapsed = time.perf_counter() - start
    print(f"{len(cases)} prediction(s) written to {out_dir / 'pred'} in {elapsed:.1f} s")
    if not rows:
        return None

    columns = report.pair_metric_columns(label_pairs(profile))
    score_columns = report.score_columns_of(label_pairs(profile))
    summary = report.summarize(rows, score_columns)
    if len(label_pairs(profile)) > 1:  # lesion detection of each tumor label on its own
        summary["lesion_detection_by_tumor"] = {
            tumor: report.summarize(
                [{k[len(tumor) + 1:]: v for k, v in r.items() if k.startswith(f"{tumor}_")} for r in rows], []
            )["lesion_detection"]
            for _, _, tumor, _ in label_pairs(profile)
        }
    summary["settings"] = {
        "checkpoint": str(checkpoint_path), "model": args.model, "swin_type": args.swin_type,
        "feature_size": args.feature_size, "num_classes": args.num_classes, "organ": args.organ,
        "a_min": args.a_min, "a_max": args.a_max, "space_mm": list(space), "roi": list(roi),
        "val_overlap": args.val_overlap, "roi_mode": args.roi_mode, "nsd_tolerance_mm": args.nsd_tolerance,
        "postprocess": not args.no_postprocess, "tumor_margin_mm": DEFAULT_TUMOR_MARGIN_MM,
        "cases_predicted": len(cases), "seconds": elapsed,
    }
    report.write_metrics_csv(rows, columns, out_dir / "metrics.csv")
    report.write_summary_json(summary, out_dir / "summary.json")
    print(report.format_table(rows, summary, score_columns))
    print(f"metrics: {out_dir / 'metrics.csv'}, summary: {out_dir / 'summary.json'}")
    return summary


def cli(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        main(args)
    except (UsageError, DatalistError, CheckpointError, LabelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
