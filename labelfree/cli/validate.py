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

from monai.data import DataLoader, Dataset
from tqdm import tqdm

import labelfree.config.flags
from labelfree.io.checkpoint import CHECKPOINT_BEST, CheckpointError, load_checkpoint
from labelfree.inference import roi as roi_inference
from labelfree.data.datalist import DatalistError
from labelfree.runtime.cli_errors import exits_on
from labelfree.runtime.distributed import resolve_device
from labelfree.evaluation import report
from labelfree.evaluation.cases import evaluation_cases
from labelfree.inference.predictor import Predictor, load_model
from labelfree.inference.postprocess import DEFAULT_TUMOR_MARGIN_MM, postprocess_labels
from labelfree.evaluation.scoring import (add_convention_arguments, check_written_prediction, resolve_conventions,
                                          score_cases, voxel_spacing)
from labelfree.data.labels import LabelError
from labelfree.networks import MODEL_NAMES, SWIN_FEATURE_SIZES
from labelfree.config.settings import RunSettings, SettingsError
from labelfree.io.formats import ReaderError
from labelfree.io.output_dir import check_output_dir
from labelfree.io.readers import read_geometry
from labelfree.data.transforms import get_transforms
from labelfree.data import preflight
from labelfree.evaluation import outputs

def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--val_dir", default=None, help="root that the datalist's relative paths are relative to")
    data.add_argument("--json_dir", default=None, help="datalist JSON; its 'validation' list is evaluated")
    data.add_argument("--images", default=None, metavar="DIR",
                      help="segment every scan in DIR: NIfTI, NRRD, MetaImage files and DICOM sub-folders "
                           "(no labels, no scores)")

    model = parser.add_argument_group("network (defaults: the values saved in the checkpoint)")
    model.add_argument("--log_dir", default=None, help="training run folder holding model.pt; names the output folder")
    model.add_argument("--checkpoint", default=None, help="checkpoint file (default: <log_dir>/model.pt)")
    model.add_argument("--model", "--model_name", dest="model", default=None, choices=MODEL_NAMES,
                       help="network (training's --model_name, accepted here too)")
    model.add_argument("--swin_type", default=None, choices=sorted(SWIN_FEATURE_SIZES), help="Swin-UNETR size")
    model.add_argument("--feature_size", default=None, type=int, help="Swin-UNETR feature size (overrides --swin_type)")
    model.add_argument("--num_classes", default=None, type=int, help="output classes incl. background (3)")

    prep = parser.add_argument_group("preprocessing (must match training; defaults: the checkpoint's values)")
    prep.add_argument("--organ", default=None, type=str.lower, choices=labelfree.config.flags.organ_names(),
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
    infer.add_argument("--workers", default=1, type=int,
                       help="processes loading the next scans during inference, and scoring the predictions")

    scoring = parser.add_argument_group("post-processing and scoring")
    scoring.add_argument("--no_postprocess", action="store_true", help="keep the raw argmax (no component filtering)")
    scoring.add_argument("--nsd_tolerance", default=2.0, type=float, help="NSD tolerance in mm (2)")
    add_convention_arguments(scoring)  # --organ_region, --empty_mask_score
    scoring.add_argument("--save_dir", default="outs", help="output root (default: outs)")
    scoring.add_argument("--no_report", action="store_true",
                         help="do not write report/index.html (summary, sortable case table and a slice browser per "
                              "case; opens from disk, no server)")

    bad = parser.add_argument_group("bad input and earlier results")
    bad.add_argument("--skip_bad_cases", action="store_true",
                     help="leave out the cases that fail the check before inference (one warning each) instead of "
                          "stopping; they are neither predicted nor scored")
    bad.add_argument("--overwrite", action="store_true",
                     help="the output folder may hold an earlier evaluation: delete its predictions, metrics.csv and "
                          "summary.json first (without it such a folder is refused)")

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
        return Path(args.log_dir) / CHECKPOINT_BEST
    raise UsageError("give --log_dir (holding model.pt) or --checkpoint")


#: validation.py's setting flags (``None`` when not given; the checkpoint's value is used then).
SETTING_FLAGS = ("model", "swin_type", "feature_size", "num_classes", "organ", "a_min", "a_max",
                 "space_x", "space_y", "space_z", "roi_x", "roi_y", "roi_z")


def resolve_settings(args: argparse.Namespace, checkpoint: dict | None,
                     path: Path | None = None) -> tuple[RunSettings, dict[str, str]]:
    """The run settings: the checkpoint's, with the flags given on top (a note for each override).

    Returns:
        The settings and where each came from (``"flag"``, ``"checkpoint"``, ``"default"``).

    Raises:
        UsageError: a flag contradicts the trained network or its label convention.
    """
    try:
        settings, sources, notes = RunSettings.for_evaluation({k: getattr(args, k) for k in SETTING_FLAGS}, checkpoint,
                                                              path)
    except SettingsError as e:
        raise UsageError(str(e)) from None
    for note in notes:
        print(note)
    return settings, sources


def collect_cases(args: argparse.Namespace) -> list[dict]:
    """Cases to evaluate (``--json_dir``/``--val_dir`` or ``--images``): :func:`labelfree.evaluation.cases.evaluation_cases`."""
    return evaluation_cases(args.json_dir, args.val_dir, args.images)




def output_dir(args: argparse.Namespace, checkpoint_path: Path) -> Path:
    run_name = Path(args.log_dir).name if args.log_dir else checkpoint_path.parent.name
    return Path(args.save_dir) / run_name / str(args.val_overlap)


def evaluate(
    predictor: Predictor,
    transforms,
    cases: list[dict],
    label_pairs,
    out_dir: Path,
    postprocess: bool = True,
    tolerance_mm: float = 2.0,
    workers: int = 0,
) -> list[dict]:
    """Segment and save every case, then score the saved predictions; the rows of the labelled cases."""
    predict_cases(predictor, transforms, cases, label_pairs, out_dir, postprocess, workers)
    return score_cases(cases, out_dir / "pred", label_pairs, tolerance_mm, workers)


def predict_cases(predictor: Predictor, transforms, cases: list[dict], label_pairs, out_dir: Path,
                  postprocess: bool = True, workers: int = 0) -> None:
    """Segment every case and write ``<out_dir>/pred/<name>.nii.gz`` on the input's grid (post-processed)."""
    pairs = tuple((organ_label, tumor_label) for _, organ_label, _, tumor_label in label_pairs)
    loader = DataLoader(Dataset(cases, transform=transforms), batch_size=1, num_workers=workers)
    progress = tqdm(loader, total=len(cases), desc="cases", unit="case", dynamic_ncols=True)
    for case, batch in zip(cases, progress):
        progress.set_postfix_str(case["name"])
        pred = predictor.predict_batch(batch)[0]
        image_nii = read_geometry(case["image"])  # any format: shape and RAS affine of the input grid
        if postprocess:
            pred = postprocess_labels(pred, voxel_spacing(image_nii.affine), pairs, DEFAULT_TUMOR_MARGIN_MM)
        written = report.save_prediction(pred, image_nii, out_dir / "pred" / f"{case['name']}.nii.gz")
        check_written_prediction(written, image_nii, case["image"])  # read back: on the input's grid


def main(args: argparse.Namespace) -> dict | None:
    """Run the evaluation; return the summary (``None`` when no case has a label)."""
    check_args(args)
    checkpoint_path = resolve_checkpoint_path(args)
    out_dir = output_dir(args, checkpoint_path)
    check_output_dir(out_dir / outputs.PRED_DIR, "--save_dir")  # writable: told before any scan is read
    cases = collect_cases(args)  # every input problem surfaces before the network loads
    checkpoint = load_checkpoint(checkpoint_path)
    settings, sources = resolve_settings(args, checkpoint, checkpoint_path)
    # Every case's header and content (NaN, label values of the organ convention), before any prediction.
    cases = preflight.screen_evaluation_cases(cases, settings.organ, settings.num_classes, args.skip_bad_cases,
                                              args.workers)
    occupied = outputs.occupied_message(out_dir)
    if occupied and not args.overwrite:
        raise UsageError(occupied)
    try:
        device = resolve_device(args.device)
        model = settings.build_model()
    except (ValueError, ImportError) as e:  # no such GPU, a patch size the network cannot take, a missing package
        raise UsageError(str(e)) from e
    load_model(model, checkpoint_path, settings.flat(), checkpoint)

    transforms = get_transforms("infer", **settings.preprocessing())
    predictor = Predictor(model, transforms, settings.roi, args.val_overlap,
                          roi_inference.resolve_sw_batch_size(args.sw_batch_size, device), device, amp=not args.noamp,
                          roi_mode=args.roi_mode, body_threshold=roi_inference.body_threshold(*settings.window))
    if occupied:
        print(f"--overwrite: {outputs.clear_earlier_results(out_dir)} file(s) of the earlier evaluation in {out_dir} deleted")
    n_labelled = sum("label" in c for c in cases)
    print(
        f"{len(cases)} case(s), {n_labelled} with labels | {settings.model.name} from {checkpoint_path} on {device}"
        f"{' (AMP)' if predictor.amp else ''} | window {settings.window[0]:g}..{settings.window[1]:g} HU, "
        f"spacing {settings.spacing} mm, roi {settings.roi}, overlap {args.val_overlap} | settings from the "
        f"checkpoint: {', '.join(k for k, v in sources.items() if v == 'checkpoint') or 'none'} | output {out_dir}"
    )

    start = time.perf_counter()
    predict_cases(predictor, transforms, cases, settings.label_pairs, out_dir, not args.no_postprocess, args.workers)
    elapsed = time.perf_counter() - start
    print(f"{len(cases)} prediction(s) written to {out_dir / 'pred'} in {elapsed:.1f} s")
    if not n_labelled:
        return None
    conventions = resolve_conventions(args.organ_region, args.empty_mask_score)
    rows = score_cases(cases, out_dir / "pred", settings.label_pairs, args.nsd_tolerance, args.workers, **conventions)
    run_settings = {
        "checkpoint": str(checkpoint_path), "model": settings.model.name, "swin_type": settings.model.swin_type,
        "feature_size": settings.model.feature_size, "num_classes": settings.num_classes, "organ": settings.organ,
        "a_min": settings.window[0], "a_max": settings.window[1], "space_mm": list(settings.spacing),
        "roi": list(settings.roi), "val_overlap": args.val_overlap, "roi_mode": args.roi_mode, "nsd_tolerance_mm": args.nsd_tolerance,
        "postprocess": not args.no_postprocess, "tumor_margin_mm": DEFAULT_TUMOR_MARGIN_MM,
        "cases_predicted": len(cases), "seconds": elapsed, **conventions,
    }
    summary = report.write_scores(rows, settings.label_pairs, out_dir, run_settings)
    if not args.no_report:
        from labelfree.evaluation.html_report import write_evaluation_report

        page = write_evaluation_report(out_dir, rows, summary, settings.label_pairs, cases, settings.window)
        print(f"report (open in a browser): {page}")
    return summary


@exits_on(UsageError, DatalistError, CheckpointError, LabelError, ReaderError, ValueError)
def cli(argv: list[str] | None = None) -> int:
    main(get_args_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
