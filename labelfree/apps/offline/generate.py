"""Offline synthetic-tumor datasets: paint N copies of every healthy case once, write them to disk.

Example (phantom liver cases -> an nnU-Net v2 raw dataset and a MONAI datalist)::

    labelfree-synthesize --json_dir data/phantom/datafolds/healthy.json --train_dir data/phantom \\
        --out data/synthetic --copies 4 --seed 0 --nnunet_dataset Dataset501_LiverSyn --workers 2

Writes, in ``--out`` (or in ``--out/DatasetNNN_Name`` with ``--nnunet_dataset``, so that one
``--out`` folder can be ``nnUNet_raw`` for several datasets):

* ``imagesTr/<case>_synKK_0000.nii.gz`` and ``labelsTr/<case>_synKK.nii.gz``: copy KK of each
  healthy case, in the input's geometry (same grid, affine and image dtype), the tumors
  labelled in the organ's convention (liver: 0 background, 1 liver, 2 tumor);
  ``--include_source`` adds the unchanged source cases as ``<case>_src`` (cases that
  already hold a tumor are never painted: with ``--include_source`` they are copied as they
  are, so real-tumor cases can be mixed in);
* ``records/<name>.json``: one record per sample (source files, seed, drawn tumor type,
  lesions); a record is written after its image and label, so a run that is interrupted
  and started again with the same arguments skips every finished sample;
* ``dataset.json`` (with ``--nnunet_dataset``): the nnU-Net v2 dataset description
  (channel names, labels, numTraining, file ending) plus a ``labelfree_synthesis`` entry
  that the on-the-fly trainer (:mod:`labelfree.apps.nnunet`) reads;
* ``datalist.json``: MONAI decathlon datalist, ``training`` = the written pairs relative to
  that folder (``--train_dir`` of ``main.py``), ``validation`` = the source datalist's
  validation list with absolute paths;
* ``lesions.json``: every lesion (sample, case, centre in voxels and mm, volume, equivalent
  radius, tumor type, seed);
* ``offline_config.json``: the run's settings and source cases; a run with other settings
  into the same folder is refused instead of mixing two datasets.

``--synthesis gan`` / ``diffusion`` paint as ``main.py`` and the realism tool do: the ellipsoid
engine draws the tumors, the trained model of ``--syn_generator`` (``syn_train.py``'s
generator.pt / diffusion.pt) repaints them, inside the organ only. The model is read and
checked before anything is written: its organ, window and voxel size must be the run's, and
the cases are painted at their own voxel size, so they must have the one it was trained at.

The paper (Hu et al., CVPR 2023) found tumors generated offline once clearly worse than
tumors drawn afresh on the fly (tumor Dice 43.5 vs 52.9): use this for frameworks that
cannot synthesise during training, and the on-the-fly paths (``main.py --syn``, or the
nnU-Net trainer of :mod:`labelfree.apps.nnunet`) for the best result.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from labelfree.apps.offline.case import OfflineError, Settings, process_case
from labelfree.io.atomic import write_json_atomic
from labelfree.io.output_dir import check_output_dir
from labelfree.runtime.cli_errors import exits_on

CONFIG_NAME = "offline_config.json"
NNUNET_DATASET_PATTERN = re.compile(r"^Dataset\d{3}_[A-Za-z0-9_\-]+$")
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def get_args_parser() -> argparse.ArgumentParser:
    from labelfree.config.flags import HelpFormatter, organ_names

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    data = parser.add_argument_group("input")
    data.add_argument("--json_dir", required=True, help="datalist JSON of the healthy cases (MONAI decathlon format)")
    data.add_argument("--train_dir", default=None, help="root that the datalist's paths are relative to")
    data.add_argument("--split", default="training", help="list of the datalist holding the healthy cases")
    syn = parser.add_argument_group("synthesis")
    syn.add_argument("--organ", default="liver", choices=organ_names(), help="organ profile of the synthesis")
    syn.add_argument("--synthesis", default="ellipsoid",
                     help="synthesis model of the engine (passed to TumorGenerated when not the default); gan / "
                          "diffusion: the ellipsoids repainted by --syn_generator, as main.py --synthesis gan / "
                          "diffusion does")
    syn.add_argument("--syn_generator", default=None, metavar="PATH",
                     help="with --synthesis gan or diffusion: the generator.pt / diffusion.pt of syn_train.py (its "
                          "organ, window and spacing must be this run's: the cases are painted at their own voxel "
                          "size, which must be the one it was trained at)")
    syn.add_argument("--syn_steps", type=int, default=None,
                     help="with --synthesis diffusion: sampling steps (default: the model file's)")
    syn.add_argument("--tumor_prob", type=float, nargs="+", default=None,
                     help="probability of each tumor type of the organ profile (liver: tiny small medium large "
                          "mix); default: the profile's")
    syn.add_argument("--syn_rim_mm", type=float, default=None,
                     help="organ tissue (mm) kept between a tumor and the organ surface; default: the profile's")
    syn.add_argument("--copies", type=int, default=4, help="synthetic copies of every healthy case")
    syn.add_argument("--seed", type=int, default=0, help="master seed (each copy derives its own from its case name)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", required=True,
                     help="output folder (re-running with the same arguments resumes); with --nnunet_dataset the "
                          "nnUNet_raw folder")
    out.add_argument("--include_source", action="store_true",
                     help="also write every source case unchanged (<case>_src); with --copies 0 this converts a "
                          "datalist into an nnU-Net dataset for the on-the-fly trainer")
    out.add_argument("--nnunet_dataset", default=None, metavar="DatasetNNN_Name",
                     help="write the pairs as the nnU-Net v2 raw dataset <out>/DatasetNNN_Name (with dataset.json); "
                          "then nnUNet_raw=<out>")
    run = parser.add_argument_group("run")
    run.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                     help="processes painting cases in parallel (the output does not depend on it)")
    run.add_argument("--device", default="cpu",
                     help="device the trained model of --synthesis gan / diffusion paints on: cpu, cuda, cuda:N")
    run.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def resolve_settings(args: argparse.Namespace) -> Settings:
    """The run's :class:`Settings` from the flags, checked (clear errors for bad values)."""
    from tumor_synthesis.organs import MultiOrganProfile, get_organ_profile

    if args.copies < 0:
        raise OfflineError(f"--copies must be >= 0, got {args.copies}")
    if args.copies == 0 and not args.include_source:
        raise OfflineError("nothing to write: --copies 0 without --include_source")
    profile = get_organ_profile(args.organ)
    if isinstance(profile, MultiOrganProfile):
        if args.tumor_prob is not None:
            raise OfflineError(f"--organ {args.organ} draws each organ's tumor types from its own profile: "
                               "--tumor_prob is not accepted")
        types, prob = (), ()
    else:
        types = tuple(profile.tumor_types)
        prob = tuple(profile.type_probabilities) if args.tumor_prob is None else tuple(args.tumor_prob)
        if len(prob) != len(types) or min(prob) < 0 or abs(sum(prob) - 1.0) > 1e-6:
            raise OfflineError(f"--tumor_prob needs {len(types)} non-negative probabilities summing to 1 for the "
                               f"types {list(types)}, got {list(prob)}")
        total = sum(prob)
        prob = tuple(p / total for p in prob)
    if args.syn_rim_mm is not None and not args.syn_rim_mm >= 0:
        raise OfflineError(f"--syn_rim_mm must be >= 0 mm, got {args.syn_rim_mm}")
    generator, steps = learned_model(args, profile)
    settings = Settings(organ=profile.name, synthesis=str(args.synthesis), tumor_types=types, tumor_prob=prob,
                    seed=int(args.seed), copies=int(args.copies), include_source=bool(args.include_source),
                    surface_rim_mm=args.syn_rim_mm, generator=generator, steps=steps)
    check_synthesis_model(settings)
    return settings


def learned_model(args: argparse.Namespace, profile) -> tuple[str | None, int | None]:
    """The checked ``--syn_generator`` (absolute path) and sampling steps of ``--synthesis gan`` / ``diffusion``.

    Reads the model file (its kind, safety, organ and window; its voxel size is checked against
    the cases by :func:`check_painter_spacing`). The flags are paired by ``main.py``'s rule
    (:func:`labelfree.config.synthesis.check_learned_flags`); the file checks are the realism tool's.

    Returns:
        ``(path, steps)``: steps ``--syn_steps`` or the model file's default for the diffusion
        model, None for the generator; ``(None, None)`` for the engine's own models.
    """
    from labelfree.apps.offline.case import painter_state
    from labelfree.config.synthesis import LEARNED_SYNTHESIS, check_learned_flags
    from labelfree.training.generator import crop_mismatches

    try:
        check_learned_flags(args.synthesis, args.syn_generator, args.syn_steps)
    except ValueError as e:
        raise OfflineError(str(e)) from None
    if args.synthesis not in LEARNED_SYNTHESIS:
        return None, None
    path = str(Path(args.syn_generator).resolve())
    config = painter_state(path, args.synthesis).config
    problems = crop_mismatches(config, profile.name, profile.window, config.spacing)  # the spacing: per case
    if problems:
        raise OfflineError(f"--syn_generator {path} was trained for other crops: " + "; ".join(problems))
    return path, ((args.syn_steps or config.steps) if args.synthesis == "diffusion" else None)


def check_painter_spacing(settings: Settings, cases: list[dict]) -> None:
    """Refuse cases whose voxel size is not the one the ``--syn_generator`` was trained at.

    A copy is painted at its file's own spacing (never resampled), in RAS axis order, the order
    of the model's ``--space_x/y/z``. Only headers are read; a case whose header is unreadable
    is left to fail, with its own message, when it is painted.
    """
    from labelfree.apps.offline.case import painter_state, ras_spacing
    from labelfree.io.formats import ReaderError
    from labelfree.io.readers import read_header
    from labelfree.training.generator import crop_mismatches

    config = painter_state(settings.generator, settings.synthesis).config
    refused = []
    for case in cases:
        try:
            affine = read_header(case["image"]).affine
        except ReaderError:
            continue
        # NIfTI keeps float32 voxel sizes (0.8 mm reads 0.800000012) and the comparison's tolerance is 1e-9.
        spacing = tuple(round(s, 6) for s in ras_spacing(affine))
        problems = crop_mismatches(config, config.organ, config.window, spacing)
        if problems:
            refused.append((case["name"], problems))
    if refused:
        name, problems = refused[0]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise OfflineError(f"--syn_generator {settings.generator} was trained for other crops than case {name}{more}: "
                           + "; ".join(problems) + "; cases are painted at their own voxel size: resample them to the "
                           "model's first")


def painter_device(args: argparse.Namespace, settings: Settings) -> str:
    """``--device``, checked: where the trained model paints (refused for the engine's own models)."""
    if settings.generator is None:
        if args.device != "cpu":
            raise OfflineError(f"--device {args.device} is where the trained model paints: it needs --synthesis gan "
                               "or diffusion")
        return "cpu"
    from labelfree.runtime.distributed import resolve_device

    try:
        return str(resolve_device(args.device))
    except ValueError as e:
        raise OfflineError(str(e)) from None


def check_synthesis_model(settings: Settings) -> None:
    """Build the run's transform once here, so that an unknown ``--synthesis`` fails before any worker starts."""
    from labelfree.apps.offline.case import build_transform

    try:
        build_transform(settings, settings.tumor_types[0] if settings.tumor_types else None, (1.0, 1.0, 1.0))
    except (TypeError, ValueError) as e:
        raise OfflineError(f"--synthesis {settings.synthesis!r} is not a synthesis model of this engine ({e})") from e


def case_name(image_path: str) -> str:
    """Case name of an image file: its file name without ``.nii.gz`` / ``.nii``."""
    name = Path(image_path).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    raise OfflineError(f"{image_path}: images must be NIfTI files (.nii.gz or .nii)")


def source_cases(json_dir: str, train_dir: str | None, split: str) -> list[dict]:
    """The datalist's cases as ``{"name", "image", "label"}`` (absolute paths), names unique."""
    from labelfree.data.datalist import DatalistError, load_datalist

    try:
        entries = load_datalist(json_dir, split, train_dir)
    except DatalistError as e:
        raise OfflineError(str(e)) from e
    cases, seen = [], {}
    for i, entry in enumerate(entries):
        if entry.get("label") is None:
            raise OfflineError(f"datalist {json_dir}: entry {i} of '{split}' has no 'label' (the organ mask is needed)")
        name = case_name(entry["image"])
        if name in seen:
            raise OfflineError(f"datalist {json_dir}: two images are named {name!r} ({seen[name]} and "
                               f"{entry['image']}); output names come from image file names")
        seen[name] = entry["image"]
        cases.append({"name": name, "image": entry["image"], "label": entry["label"]})
    if not cases:
        raise OfflineError(f"datalist {json_dir}: '{split}' is empty")
    return cases


def check_config(out: Path, config: dict) -> None:
    """Refuse to resume into ``out`` when it was written with other settings or cases."""
    path = out / CONFIG_NAME
    if path.is_file():
        import json

        previous = json.loads(path.read_text())
        if previous != config:
            changed = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
            raise OfflineError(f"{out} holds a dataset generated with other settings (differing: {', '.join(changed)}); "
                               "use a new --out, or the same arguments to resume")
    else:
        write_json_atomic(path, config)


def run(args: argparse.Namespace) -> dict:
    """Generate (or resume) the dataset; returns a summary (counts, seconds, paths)."""
    from labelfree.apps.offline.case import painter, painter_state

    # A model file rewritten since an earlier run in this process (a notebook, the tests) is read afresh.
    painter_state.cache_clear()
    painter.cache_clear()
    settings = resolve_settings(args)
    device = painter_device(args, settings)
    check_output_dir(args.out, "--out")  # writable: told before any scan is read
    cases = source_cases(args.json_dir, args.train_dir, args.split)
    if settings.generator is not None:
        check_painter_spacing(settings, cases)
    out = Path(args.out)
    if args.nnunet_dataset is not None and not NNUNET_DATASET_PATTERN.match(args.nnunet_dataset):
        raise OfflineError(f"--nnunet_dataset must look like Dataset501_Name (three digits), got {args.nnunet_dataset!r}")
    root = out / args.nnunet_dataset if args.nnunet_dataset else out
    config = {"settings": settings.record(), "cases": cases, "nnunet_dataset": args.nnunet_dataset}
    root.mkdir(parents=True, exist_ok=True)
    check_config(root, _jsonable(config))

    t0 = time.perf_counter()
    jobs = [{"root": str(root), **case, "settings": settings.record(), "device": device} for case in cases]
    records, errors = _run_jobs(jobs, max(1, int(args.workers)), not args.no_progress)
    seconds = time.perf_counter() - t0
    records = sorted(records, key=lambda r: r["name"])
    _write_indexes(root, records, settings, args)
    synthetic = [r for r in records if r["kind"] == "synthetic"]
    painted = {r["case"] for r in synthetic}
    return {"root": str(root), "samples": len(records), "errors": errors, "seconds": round(seconds, 1),
            "lesions": sum(len(r["lesions"]) for r in synthetic),
            "without_lesions": sorted(r["name"] for r in synthetic if not r["lesions"]),
            "not_painted": sorted(c["name"] for c in cases if settings.copies and c["name"] not in painted
                                  and c["name"] not in errors)}


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj))


def _run_jobs(jobs: list[dict], workers: int, progress: bool) -> tuple[list[dict], dict[str, str]]:
    """Run :func:`process_case` over the jobs; a failing case is reported, the others go on."""
    from tqdm import tqdm

    records, errors = [], {}
    bar = tqdm(total=len(jobs), desc="cases", unit="case", disable=not progress, dynamic_ncols=True)
    try:
        if workers == 1:
            for job in jobs:
                try:
                    records += process_case(job)
                except OfflineError as e:
                    errors[job["name"]] = str(e)
                bar.update()
        else:
            # "spawn": forking a parent that already runs threads (torch) can deadlock.
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(process_case, job): job["name"] for job in jobs}
                for fut in as_completed(futures):
                    try:
                        records += fut.result()
                    except OfflineError as e:
                        errors[futures[fut]] = str(e)
                    bar.update()
    finally:
        bar.close()
    return records, errors


def _write_indexes(root: Path, records: list[dict], settings: Settings, args) -> None:
    """datalist.json, lesions.json and (nnU-Net) dataset.json in ``root``."""
    from labelfree.data.datalist import load_datalist, read_datalist_json

    training = [{"image": r["image"], "label": r["label"]} for r in records]
    validation = []
    if "validation" in read_datalist_json(args.json_dir):
        validation = [{k: v for k, v in e.items() if k in ("image", "label")}
                      for e in load_datalist(args.json_dir, "validation", args.train_dir)]
    from tumor_synthesis.organs import get_organ_profile

    profile = get_organ_profile(settings.organ)
    labels = {str(i): n for i, n in enumerate(profile.class_names)}
    write_json_atomic(root / "datalist.json", {
        "name": args.nnunet_dataset or root.name,
        "description": f"offline synthetic {settings.organ} tumors ({_model_text(settings)}), {settings.copies} "
                       f"copies per healthy case, seed {settings.seed} (labelfree-synthesize)",
        "labels": labels, "modality": {"0": "CT"}, "tensorImageSize": "3D",
        "numTraining": len(training), "numValid": len(validation), "training": training, "validation": validation,
    })
    lesions = [{"sample": r["name"], "case": r["case"], "kind": r["kind"], "seed": r["seed"],
                "tumor_type": r["tumor_type"], **lesion} for r in records for lesion in r["lesions"]]
    write_json_atomic(root / "lesions.json", {"settings": settings.record(), "lesions": lesions})
    if args.nnunet_dataset:
        from labelfree.apps.nnunet.dataset import nnunet_dataset_json

        write_json_atomic(root / "dataset.json", nnunet_dataset_json(
            profile, num_training=len(records), name=args.nnunet_dataset,
            description=f"labelfree-synthesize: {settings.copies} synthetic copies per healthy case"
                        + (" + the source cases" if settings.include_source else ""),
            synthesis=_synthesis_entry(settings)))


def _model_text(settings: Settings) -> str:
    """The synthesis model in words: ``ellipsoid``; ``gan generator.pt``; ``diffusion diffusion.pt, 10 steps``."""
    if settings.generator is None:
        return settings.synthesis
    steps = f", {settings.steps} steps" if settings.steps is not None else ""
    return f"{settings.synthesis} {Path(settings.generator).name}{steps}"


def _synthesis_entry(settings: Settings) -> dict:
    """dataset.json's ``labelfree_synthesis``: organ and model, and the trained model's file and steps."""
    entry = {"organ": settings.organ, "synthesis": settings.synthesis}
    if settings.generator is not None:
        entry["syn_generator"] = settings.generator
    if settings.steps is not None:
        entry["syn_steps"] = settings.steps
    return entry


@exits_on(OfflineError)
def main(argv: list[str] | None = None) -> int:
    """Console-script entry point (``labelfree-synthesize``)."""
    args = get_args_parser().parse_args(argv)
    summary = run(args)
    for name, message in sorted(summary["errors"].items()):
        print(f"error: case {name}: {message}", file=sys.stderr)
    if summary["not_painted"]:
        print(f"not painted (label already holds a tumor): {', '.join(summary['not_painted'])}", file=sys.stderr)
    if summary["without_lesions"]:
        print(f"copies without any tumor (organ absent or too thin): {', '.join(summary['without_lesions'])}",
              file=sys.stderr)
    print(f"{summary['samples']} samples ({summary['lesions']} synthetic lesions) in {summary['root']}, "
          f"{summary['seconds']} s")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
