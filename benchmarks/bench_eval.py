"""Benchmark of the evaluation: metric time per case and sliding-window inference time per case.

Metrics: on a synthetic 512 x 512 x 120 scan (0.8 x 0.8 x 2.5 mm, a 1.5 L ellipsoid liver with
tumors of 3-25 mm radius, a shifted prediction that misses some tumors and adds false
positives) it times what validation.py computes per case (organ and tumor Dice + NSD, lesion
detection), the post-processing, and two baselines measured in the same run:

* ``edt``: one ``scipy.ndimage.distance_transform_edt`` on the organ's bounding box (the
  irreducible cost of one surface-distance computation);
* ``original``: the original project's way, ``surface_distance`` on the full-size masks for
  organ and tumor plus Dice on full arrays (no lesion detection).

Inference: the full per-case path of validation.py (infer pipeline, Gaussian-blended sliding
window with the original UNet, Invertd back to the input grid) on a synthetic scan, against
one forward pass of a single window; ``--device cuda`` runs it with AMP (``--noamp`` for fp32).

ROI-restricted inference (``--roi``): time per case of the sliding window with ``--roi_mode``
none / body / organ (``labelfree.inference.roi``) at ``--roi_overlap`` (0.75, the original
evaluation command) on the validation cases of a datalist and on a phantom of
``--big_shape`` (512 x 512 x 120 at 0.8 x 0.8 x 2.5 mm, generated on the fly), with a trained
``--checkpoint`` (its network, window, spacing and patch size); the fraction of windows
skipped, the largest probability difference to the full window inside the ROI, and Dice
after the usual post-processing. Without a checkpoint a random UNet is timed (the organ pass
then finds noise and the Dice figures mean nothing).

Usage::

    python benchmarks/bench_eval.py                      # CPU, metrics + inference
    python benchmarks/bench_eval.py --skip_metrics --skip_inference --roi --checkpoint runs/x/model.pt \
        --json_dir data/phantom/datafolds/healthy.json --data_root data/phantom --roi_cases 2
    python benchmarks/bench_eval.py --skip_inference --runs 7
    python benchmarks/bench_eval.py --device cuda --infer_shape 512 512 120 --infer_spacing 0.8 0.8 2.5

Every figure is the median of ``--runs`` runs (after one warm-up run).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

import surface_distance
import torch
from scipy import ndimage

from labelfree.evaluation.metrics import region_mask

from labelfree.masks import bounding_box
from labelfree.inference.postprocess import postprocess_labels
from labelfree.evaluation.scoring import score_prediction
from labelfree.runtime.timing import median_seconds_each

REGIONS = {"liver": (1, 2), "tumor": (2,)}


def synthetic_case(shape=(512, 512, 120), spacing=(0.8, 0.8, 2.5), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reference and predicted (H, W, D) label maps (0 background, 1 liver, 2 tumor)."""
    rng = np.random.default_rng(seed)  # jitter of the predicted tumors
    spacing = np.asarray(spacing)
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    mm = [g * s for g, s in zip(grid, spacing)]
    center = np.asarray(shape) * spacing / 2

    def ellipsoid(c, radii):
        return sum(((m - ci) / r) ** 2 for m, ci, r in zip(mm, c, radii)) <= 1.0

    liver_radii = np.array([100.0, 75.0, 48.0])  # 4/3 pi abc = 1.5 L
    ref = np.zeros(shape, np.uint8)
    ref[ellipsoid(center, liver_radii)] = 1
    pred = np.zeros(shape, np.uint8)
    pred[ellipsoid(center + [1.6, -0.8, 2.5], liver_radii * [1.02, 0.98, 1.0])] = 1
    # (radius, centre offset from the liver centre) in mm: 3-25 mm tumors that do not touch.
    tumors = [(3.0, (10, 10, -25)), (4.0, (-20, 0, 25)), (6.0, (0, -55, 10)), (8.0, (70, -10, -5)),
              (12.0, (-10, 35, -10)), (16.0, (45, 25, 5)), (20.0, (20, -30, 0)), (25.0, (-50, 0, 0))]
    for i, (r, offset) in enumerate(tumors):
        c = center + np.asarray(offset, dtype=float)
        ref[ellipsoid(c, [r, r, r])] = 2
        if i % 4 != 0:  # the 3 mm and the 12 mm tumors are missed
            pred[ellipsoid(c + rng.normal(0, 1.0, 3), [r * 0.9, r * 1.1, r])] = 2
    for offset in ((30, 10, 20), (-40, -40, -15), (60, 40, -20)):  # false-positive tumors
        pred[ellipsoid(center + np.asarray(offset, dtype=float), [4.0, 4.0, 4.0])] = 2
    return ref, pred


def metrics_per_case(pred, ref, spacing) -> dict:
    """What validation.py computes per case."""
    return score_prediction(pred, ref, spacing, organ_label=1, tumor_label=2, tolerance_mm=2.0)


def original_metrics(pred, ref, spacing) -> dict:
    """The original project's per-case metrics: full-size arrays, surface_distance directly."""
    scores = {}
    for name, values in REGIONS.items():
        p, r = region_mask(pred, values), region_mask(ref, values)
        scores[f"{name}_dice"] = 2.0 * np.sum(p & r) / (np.sum(p) + np.sum(r))
        distances = surface_distance.compute_surface_distances(r, p, spacing)
        scores[f"{name}_nsd"] = surface_distance.compute_surface_dice_at_tolerance(distances, 2.0)
    return scores


def bench_metrics(runs: int) -> None:
    shape, spacing = (512, 512, 120), (0.8, 0.8, 2.5)
    ref, pred = synthetic_case(shape, spacing)
    organ_box = bounding_box(ref > 0)
    organ_crop = ref[organ_box] > 0
    liver_ml = np.count_nonzero(ref > 0) * np.prod(spacing) / 1000
    ours = metrics_per_case(pred, ref, spacing)
    theirs = original_metrics(pred, ref, spacing)
    for key, value in theirs.items():  # same numbers, or the comparison is meaningless
        if not np.isclose(ours[key], value, atol=1e-12):
            raise AssertionError(f"{key}: ours {ours[key]} vs original {value}")

    t = median_seconds_each({
        "edt": lambda: ndimage.distance_transform_edt(~organ_crop, sampling=spacing),
        "ours": lambda: metrics_per_case(pred, ref, spacing),
        "original": lambda: original_metrics(pred, ref, spacing),
        "post": lambda: postprocess_labels(pred, spacing),
    }, runs)
    t_edt, t_ours, t_original, t_post = t["edt"], t["ours"], t["original"], t["post"]
    print(f"metrics on a {'x'.join(map(str, shape))} scan at {spacing} mm, liver {liver_ml:.0f} mL, "
          f"{ours['lesions']} tumors ({ours['detected']} detected, {ours['false_positives']} false positives); "
          f"median of {runs} runs")
    print(f"  baseline: distance_transform_edt on the organ box {tuple(organ_crop.shape)}: {t_edt:.3f} s")
    print(f"  per-case metrics (Dice+NSD organ & tumor + lesion detection): {t_ours:.3f} s "
          f"= {t_ours / t_edt:.2f} x the EDT baseline")
    print(f"  original-style metrics (full-size surface_distance, no lesions): {t_original:.3f} s "
          f"= {t_original / t_edt:.2f} x the EDT baseline; ours is {t_original / t_ours:.2f} x faster")
    print(f"  post-processing (largest organ component + 30 mm tumor margin): {t_post:.3f} s "
          f"= {t_post / t_edt:.2f} x the EDT baseline")
    print(f"  scores: liver Dice {ours['liver_dice']:.4f} NSD {ours['liver_nsd']:.4f}, "
          f"tumor Dice {ours['tumor_dice']:.4f} NSD {ours['tumor_nsd']:.4f}")


def bench_inference(runs: int, device_name: str, amp: bool, shape, spacing, overlap: float, sw_batch_size: int) -> None:
    import nibabel as nib
    from monai.data import DataLoader, Dataset

    from labelfree.runtime.distributed import resolve_device
    from labelfree.inference.predictor import Predictor
    from labelfree.networks import build_model
    from labelfree.data.transforms import get_transforms

    device = resolve_device(device_name)
    roi = (96, 96, 96)
    model = build_model("unet", out_channels=3, roi_size=roi).to(device).eval()
    transforms = get_transforms("infer", a_min=-21, a_max=189, space=(1.0, 1.0, 1.0))
    predictor = Predictor(model, transforms, roi, overlap, sw_batch_size, device, amp=amp)
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    rng = np.random.default_rng(0)
    image = rng.normal(60, 40, shape).astype(np.int16)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scan.nii.gz"
        nib.save(nib.Nifti1Image(image, np.diag([*spacing, 1.0])), str(path))
        batch = next(iter(DataLoader(Dataset([{"image": str(path)}], transforms), batch_size=1)))
        resampled = tuple(batch["image"].shape[2:])
        window = torch.rand((1, 1, *roi), device=device)

        def one_window():
            with torch.no_grad(), torch.amp.autocast(device.type, enabled=predictor.amp):
                model(window)

        probabilities = predictor.probabilities(batch["image"])
        t = median_seconds_each({
            "window": one_window,
            "sw": lambda: predictor.probabilities(batch["image"]),
            "back": lambda: predictor.labels_on_input_grid(batch, probabilities),
        }, runs, sync)
        t_window, t_sw, t_back = t["window"], t["sw"], t["back"]

    steps = [max(int(np.ceil((s - r) / (r * (1 - overlap)))), 0) + 1 for s, r in zip(resampled, roi)]
    n_windows = int(np.prod(steps))
    print(f"inference on {device}{' with AMP' if predictor.amp else ''}: scan {shape} at {tuple(spacing)} mm -> "
          f"{resampled} at 1 mm, UNet, roi {roi}, overlap {overlap}, {n_windows} windows, "
          f"sw_batch_size {sw_batch_size}; median of {runs} runs")
    print(f"  baseline: one {roi} forward pass: {t_window:.3f} s")
    print(f"  sliding window (Gaussian blending, softmax): {t_sw:.2f} s = {t_sw / t_window:.1f} x one window "
          f"({t_sw / (t_window * n_windows):.2f} x {n_windows} windows)")
    print(f"  back to the input grid (Invertd of the probabilities + argmax): {t_back:.2f} s "
          f"= {t_back / t_window:.1f} x one window")
    print(f"  whole case: {t_sw + t_back:.2f} s")


def _roi_model(checkpoint_path):
    """(model, roi, spacing, window, description) of a checkpoint, or a random original UNet without one."""
    from labelfree.io.checkpoint import extract_state_dict, load_checkpoint
    from labelfree.networks import build_model

    if checkpoint_path is None:
        torch.manual_seed(0)
        roi = (96, 96, 96)
        return build_model("unet", out_channels=3, roi_size=roi), roi, (1.0, 1.0, 1.0), (-21.0, 189.0), "random UNet"
    checkpoint = load_checkpoint(checkpoint_path)
    saved = checkpoint.get("args") or {}
    roi = tuple(int(saved.get(f"roi_{a}", 96)) for a in "xyz")
    space = tuple(float(saved.get(f"space_{a}", 1.0)) for a in "xyz")
    window = (float(saved.get("a_min", -21.0)), float(saved.get("a_max", 189.0)))
    model = build_model(saved.get("model_name", "unet"), out_channels=int(saved.get("num_classes", 3)),
                        roi_size=roi, swin_type=saved.get("swin_type", "tiny"))
    model.load_state_dict(extract_state_dict(checkpoint, checkpoint_path))
    return model, roi, space, window, f"{saved.get('model_name', 'unet')} from {checkpoint_path}"


def _big_phantom(folder: Path, shape, spacing) -> dict:
    """A phantom abdomen with liver tumors, ``shape`` voxels at ``spacing`` mm (air around the body)."""
    import nibabel as nib

    from labelfree.phantom import generate_case

    fov = tuple(n * s for n, s in zip(shape, spacing))
    case = generate_case("abdomen", seed=100, lesions=True, spacing=tuple(spacing), fov_mm=fov)
    affine = np.diag([*spacing, 1.0])
    paths = {"image": str(folder / "big.nii.gz"), "label": str(folder / "big_label.nii.gz"), "name": "big"}
    nib.save(nib.Nifti1Image(case.image.astype(np.int16), affine), paths["image"])
    nib.save(nib.Nifti1Image(case.label.astype(np.uint8), affine), paths["label"])
    return paths


def original_command_windows(case: dict, window, roi=(96, 96, 96), overlap: float = 0.75) -> dict:
    """Windows of the original evaluation command (1 mm, 96^3, overlap 0.75) with each ROI mode.

    Model-free: the body box is the one ``--roi_mode body`` computes; the organ box is the
    reference organ's box widened by the default margin, i.e. what ``organ`` runs when its
    coarse pass finds the organ (plus that coarse pass).
    """
    from labelfree.inference.roi import (DEFAULT_ORGAN_MARGIN, aligned_crop, body_box, body_threshold,
                                          count_windows, organ_box)
    from labelfree.data.transforms import get_transforms

    data = get_transforms("val", a_min=window[0], a_max=window[1], space=(1.0, 1.0, 1.0))(
        {"image": case["image"], "label": case["label"]})
    shape = tuple(data["image"].shape[1:])
    body = body_box(torch.as_tensor(data["image"]), body_threshold(*window)) or tuple((0, n) for n in shape)
    organ = organ_box((np.asarray(data["label"][0]) > 0).astype(np.uint8), DEFAULT_ORGAN_MARGIN)
    organ = tuple((max(lo, blo), min(hi, bhi)) for (lo, hi), (blo, bhi) in zip(organ, body))

    def crop_windows(box):
        return count_windows([hi - lo for lo, hi in aligned_crop(box, shape, roi, overlap)], roi, overlap)

    coarse = count_windows([hi - lo for lo, hi in body], roi, 0.0)
    return {"shape": shape, "none": count_windows(shape, roi, overlap), "body": crop_windows(body),
            "organ": coarse + crop_windows(organ), "coarse": coarse}


def bench_roi(args) -> None:
    from monai.data import DataLoader, Dataset

    from labelfree.data.datalist import load_datalist
    from labelfree.inference.predictor import Predictor
    from labelfree.inference.roi import ROI_MODES, body_threshold
    from labelfree.data.labels import nifti_stem
    from labelfree.data.transforms import get_transforms
    from labelfree.io.readers import read_volume

    model, roi, space, window, what = _roi_model(args.checkpoint)
    transforms = get_transforms("infer", a_min=window[0], a_max=window[1], space=space)
    predictors = {mode: Predictor(model, transforms, roi, args.roi_overlap, 1, "cpu", roi_mode=mode,
                                  body_threshold=body_threshold(*window)) for mode in ROI_MODES}
    cases = []
    if args.json_dir:
        cases = load_datalist(args.json_dir, "validation", args.data_root)[: args.roi_cases]
        for c in cases:
            c["name"] = nifti_stem(Path(c["image"]).name)
    print(f"ROI-restricted inference on cpu ({torch.get_num_threads()} threads): {what}, roi {roi}, "
          f"{space} mm, overlap {args.roi_overlap}, sw_batch_size 1; median of {args.roi_runs} run(s) per mode, "
          "modes interleaved")
    print("  case | voxels at the network's spacing | mode | windows run / full (skipped) | sliding window s "
          "| x faster than none | max |dprob| in ROI | liver Dice | tumor Dice")
    totals = {mode: 0.0 for mode in ROI_MODES}
    with tempfile.TemporaryDirectory() as tmp:
        if args.big_shape:
            start = time.perf_counter()
            cases.append(_big_phantom(Path(tmp), args.big_shape, args.big_spacing))
            print(f"  (phantom {'x'.join(map(str, args.big_shape))} generated in {time.perf_counter() - start:.0f} s)")
        for case in cases:
            batch = next(iter(DataLoader(Dataset([{"image": case["image"]}], transforms), batch_size=1)))
            label_volume = read_volume(case["label"])
            label = np.asarray(label_volume.array).astype(np.uint8)
            spacing_mm = label_volume.spacing
            probabilities = {}

            def predict(mode):
                probabilities[mode] = predictors[mode].probabilities(batch["image"])

            seconds = median_seconds_each({mode: partial(predict, mode) for mode in predictors}, args.roi_runs,
                                          warmup=0)
            for mode, predictor in predictors.items():
                stats = predictor.inferer.stats[0]
                inside = tuple(slice(lo, hi) for lo, hi in stats.box)
                dprob = float((probabilities[mode] - probabilities["none"])[(..., *inside)].abs().max())
                pred = postprocess_labels(predictor.labels_on_input_grid(batch, probabilities[mode])[0], spacing_mm)
                scores = metrics_per_case(pred, label, spacing_mm)
                t = seconds[mode]
                totals[mode] += t
                speedup = seconds["none"] / t
                print(f"  {case['name']} | {'x'.join(map(str, stats.shape))} | {mode} | {stats.windows_run} / "
                      f"{stats.windows_full} ({100 * stats.fraction_skipped:.0f} %) | {t:.1f} | {speedup:.2f} | "
                      f"{dprob:.1e} | {scores['liver_dice']:.4f} | {scores['tumor_dice']:.4f}"
                      + (f" | fallback: {stats.fallback}" if stats.fallback else ""))
        print("  the original command's geometry (1 mm, 96^3, overlap 0.75), windows per case "
              "(organ: around the reference organ, coarse pass included):")
        for case in cases:
            w = original_command_windows(case, window)
            print(f"    {case['name']} | {'x'.join(map(str, w['shape']))} | none {w['none']} | body {w['body']} "
                  f"({100 * (1 - w['body'] / w['none']):.0f} % skipped) | organ {w['organ']} incl. {w['coarse']} "
                  f"coarse ({100 * (1 - w['organ'] / w['none']):.0f} % skipped, {w['none'] / w['organ']:.2f} x fewer)")
    print("  all cases: " + ", ".join(f"{mode} {totals[mode]:.1f} s ({totals['none'] / totals[mode]:.2f} x)"
                                      for mode in ROI_MODES))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure (median reported)")
    parser.add_argument("--skip_metrics", action="store_true", help="only the inference benchmark")
    parser.add_argument("--skip_inference", action="store_true", help="only the metrics benchmark")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (inference benchmark)")
    parser.add_argument("--noamp", action="store_true", help="fp32 on CUDA (AMP is on by default there)")
    parser.add_argument("--infer_shape", type=int, nargs=3, default=(160, 160, 128), help="inference scan in voxels")
    parser.add_argument("--infer_spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0), help="its spacing in mm")
    parser.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap")
    parser.add_argument("--sw_batch_size", type=int, default=1, help="windows per forward pass")
    roi = parser.add_argument_group("ROI-restricted inference (--roi)")
    roi.add_argument("--roi", action="store_true", help="time --roi_mode none / body / organ per case")
    roi.add_argument("--checkpoint", default=None, help="trained model.pt (default: a random original UNet)")
    roi.add_argument("--json_dir", default=None, help="datalist whose validation cases are timed")
    roi.add_argument("--data_root", default=None, help="root of the datalist's relative paths")
    roi.add_argument("--roi_cases", type=int, default=2, help="validation cases timed (the first N)")
    roi.add_argument("--roi_overlap", type=float, default=0.75, help="sliding-window overlap (0.75, the original)")
    roi.add_argument("--roi_runs", type=int, default=1, help="runs per mode and case (median)")
    roi.add_argument("--big_shape", type=int, nargs=3, default=(512, 512, 120),
                     help="also a phantom of this many voxels (0 0 0: none)")
    roi.add_argument("--big_spacing", type=float, nargs=3, default=(0.8, 0.8, 2.5), help="its spacing in mm")
    args = parser.parse_args(argv)
    if args.big_shape and not all(args.big_shape):
        args.big_shape = None
    torch.set_grad_enabled(False)
    if not args.skip_metrics:
        bench_metrics(args.runs)
    if not args.skip_inference:
        bench_inference(args.runs, args.device, not args.noamp, tuple(args.infer_shape), tuple(args.infer_spacing),
                        args.overlap, args.sw_batch_size)
    if args.roi:
        bench_roi(args)


if __name__ == "__main__":
    main()
