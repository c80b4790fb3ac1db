"""The paper's comparison at phantom scale: real-tumor vs synthetic-tumor vs mixed training.

The arms train the same UNet with the same seed, flags and number of optimizer steps,
and are scored on the SAME held-out phantom tumor cases:

* ``real``: trained on annotated phantom tumor cases (``04_LiTS``), no synthesis
  (the original's ``real_k`` folds);
* ``synthetic``: trained on healthy phantoms with tumors painted on the fly (``--syn``;
  the original's ``healthy.json``): not one annotated tumor;
* ``mixed``: healthy + annotated tumor cases with ``--syn`` (the original's ``mix_k``;
  synthesis only paints scans that hold no tumor yet);
* ``synthetic_no_rim``: the synthetic arm with the original's clipping of tumors at the
  liver surface (``--syn_rim_mm 0``): the ``synthetic`` and ``mixed`` arms keep
  ``--syn_rim_mm`` (3 mm) of liver between a tumor and the surface, and this arm measures
  what that changes;
* ``growth``: the synthetic arm with the growth model (``--synthesis growth``: tumors grown
  by the cellular automaton, Pixel2Cancer's rules) instead of the ellipsoids; same healthy
  cases, same budget, same held-out cases.
* ``handcrafted_qc``: the synthetic arm with FreeTumor's quality control (``--syn_qc``): the
  ``real`` arm's model is the frozen segmentor that keeps or reverts each synthetic crop;
* ``gan``: the synthetic arm with the ellipsoids repainted by a generator (``--synthesis gan``,
  FreeTumor's learned synthesis), trained first by ``syn_train.py`` on the real arm's tumor
  cases (never the held-out ones) with the real arm's model as its frozen segmentor;
* ``gan_qc``: ``gan`` with the quality control of ``handcrafted_qc``.
* ``synthetic_realistic``, ``growth_realistic``, ``gan_realistic``: the ``synthetic``, ``growth``
  and ``gan`` arms with ``--syn_preset realistic`` (the organ profile's realistic values:
  sharper edges, a label that ends where the visible lesion ends, real lesions' contrast);
  same healthy cases, budget and held-out cases as the original arm they repeat.
* ``diffusion``: the synthetic arm with the ellipsoids repainted by a diffusion model
  (``--synthesis diffusion``), trained first by ``syn_train.py --model diffusion`` on the real
  arm's tumor cases (never the held-out ones; no segmentor).

The tumor cases are split once: the first ``--n_real_train`` train the real and mixed
arms, the rest are the held-out validation set of every arm (never trained on). Arms
differ in their number of training cases, so each gets ``--steps`` optimizer steps in
all (epochs = steps / steps per epoch, warm-up scaled alike); training validates only
after the last epoch, so ``model.pt`` is the final model (no selection on the test cases).

Steps, each a subprocess with the project's own CLIs (printed before it runs):
``scripts/make_phantom_data.py`` (unless the root exists) -> ``main.py`` per arm (arms in the
order above: ``real`` first, its model is the segmentor of the QC and generator arms; before the
first generator arm, ``syn_train.py``) ->
``validation.py`` per arm -> ``scripts/make_report.py`` (table + plots + overlays) ->
``python -m tumor_synthesis.preview`` (montage of the synthetic tumor types).
Training passes ``--resume``, so a rerun continues interrupted arms and skips finished ones;
an arm's evaluation is kept when its ``metrics.csv`` is newer than its ``model.pt``. The report
holds every arm evaluated under ``--out`` so far, so arms run by separate calls add up.

    python scripts/run_experiment.py --data_root data/exp_phantom --out runs/experiment --results results

The steps run the clone's entry points (``main.py``, ``validation.py``, ``syn_train.py``,
``scripts/``) from the clone's root, :data:`REPO`.
"""

from __future__ import annotations

import argparse
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

from labelfree.evaluation.figures import shrink_png
from labelfree.io.checkpoint import CHECKPOINT_BEST
from labelfree.training.trainer import read_scalars
from labelfree.data.datalist import read_datalist_json
from labelfree.io.atomic import OutputWriteError, write_json_atomic
from labelfree.io.output_dir import check_output_dir
from labelfree.runtime.cli_errors import exits_on

#: Arms that repeat an original arm (the name before ``_realistic``) with ``--syn_preset realistic``.
REALISTIC_ARMS = ("synthetic_realistic", "growth_realistic", "gan_realistic")
ARMS = ("real", "synthetic", "mixed", "synthetic_no_rim", "growth", "handcrafted_qc", "gan", "gan_qc",
        "diffusion") + REALISTIC_ARMS
#: Arms that paint synthetic tumors.
SYN_ARMS = ("synthetic", "mixed", "synthetic_no_rim", "growth", "handcrafted_qc", "gan", "gan_qc",
            "diffusion") + REALISTIC_ARMS
#: Arms whose synthetic crops the real arm's model checks (FreeTumor's quality control).
QC_ARMS = ("handcrafted_qc", "gan_qc")
#: Arms whose tumors the trained generator repaints.
GAN_ARMS = ("gan", "gan_qc", "gan_realistic")
#: The clone whose entry points the steps run (labelfree/apps/experiment.py -> the repository root).
REPO = Path(__file__).resolve().parents[2]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = parser.add_argument_group("data")
    data.add_argument("--data_root", default="data/exp_phantom",
                      help="phantom root (generated with the counts below when it does not exist)")
    data.add_argument("--n_healthy", type=int, default=8, help="healthy phantoms (synthetic and mixed arms)")
    data.add_argument("--n_tumor", type=int, default=8, help="phantom tumor cases in all")
    data.add_argument("--n_real_train", type=int, default=4,
                      help="tumor cases the real and mixed arms train on; the others are the held-out set")
    data.add_argument("--data_seed", type=int, default=0, help="seed of the phantom generator")

    train = parser.add_argument_group("training (identical for every arm)")
    train.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="arms to run")
    train.add_argument("--steps", type=int, default=1500, help="optimizer steps per arm")
    train.add_argument("--syn_rim_mm", type=float, default=3.0,
                       help="liver kept between a synthetic tumor and the liver surface (mm) in the synthetic and "
                            "mixed arms (synthetic_no_rim: 0, the original)")
    train.add_argument("--warmup_fraction", type=float, default=1 / 15, help="share of the epochs spent warming up")
    train.add_argument("--batch_size", type=int, default=2)
    train.add_argument("--optim_lr", type=float, default=1e-3)
    train.add_argument("--space", type=float, default=2.0, help="resampled isotropic voxel size in mm")
    train.add_argument("--roi", type=int, default=64, help="cubic patch size in voxels")
    train.add_argument("--workers", type=int, default=1)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--val_overlap", type=float, default=0.5, help="sliding-window overlap of the evaluation")
    train.add_argument("--generator_epochs", type=int, default=150,
                       help="syn_train.py epochs of the generator (one epoch: the healthy cases once, batch "
                            "--batch_size)")
    train.add_argument("--diffusion_epochs", type=int, default=12,
                       help="syn_train.py --model diffusion epochs of 50 steps of batch 4 (the diffusion arm)")
    train.add_argument("--diffusion_roi", type=int, default=32,
                       help="training crop (voxels) of the diffusion model: it paints windows of this size")
    train.add_argument("--syn_steps", type=int, default=10, help="sampling steps of the diffusion arm")

    out = parser.add_argument_group("output")
    out.add_argument("--out", default="runs/experiment", help="runs, datalists and predictions")
    out.add_argument("--results", default="results", help="table, plots and overlays (committed)")
    out.add_argument("--report_name", default="experiment",
                     help="file stem of the report under --results (experiment.md, its plots)")
    out.add_argument("--title", default="Real vs synthetic vs mixed tumor training (phantom scale)",
                     help="heading of the report")
    out.add_argument("--max_overlays", type=int, default=None,
                     help="overlay PNGs of at most this many held-out cases per arm (default: all)")
    out.add_argument("--dry_run", action="store_true", help="print the commands without running them")
    return parser


def run(command: list[str], dry_run: bool) -> None:
    print("+ " + shlex.join(command), flush=True)
    if dry_run:
        return
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO)
    print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def ensure_data(args: argparse.Namespace) -> None:
    root = Path(args.data_root)
    if (root / "phantom_info.json").is_file():
        print(f"phantom root {root} exists: using it")
        return
    run([sys.executable, "scripts/make_phantom_data.py", "--out", str(root), "--n_healthy", str(args.n_healthy),
         "--n_tumor", str(args.n_tumor), "--n_chest_healthy", "0", "--n_chest_nodule", "0",
         "--n_pancreas_tumor", "0", "--n_kidney_tumor", "0", "--seed", str(args.data_seed)], args.dry_run)


def build_datalists(args: argparse.Namespace, folder: Path) -> dict[str, Path]:
    """One datalist per arm; all share the same held-out ``validation`` list.

    Healthy cases come from the root's ``datafolds/healthy.json`` training list, tumor
    cases from ``datafolds/lits.json`` (in file order).
    """
    root = Path(args.data_root)
    healthy = read_datalist_json(root / "datafolds" / "healthy.json")["training"]
    lits = read_datalist_json(root / "datafolds" / "lits.json")
    tumor_cases = lits["training"]
    if not 0 < args.n_real_train < len(tumor_cases):
        raise SystemExit(f"error: --n_real_train must leave held-out cases: {len(tumor_cases)} tumor cases in "
                         f"{root}, --n_real_train {args.n_real_train}")
    real_train, held_out = tumor_cases[: args.n_real_train], tumor_cases[args.n_real_train:]
    training = {"real": real_train, "synthetic": healthy, "mixed": healthy + real_train, "synthetic_no_rim": healthy,
                "growth": healthy, "handcrafted_qc": healthy, "gan": healthy, "gan_qc": healthy, "diffusion": healthy,
                **{arm: healthy for arm in REALISTIC_ARMS}}
    paths = {}
    for arm, items in training.items():
        datalist = {
            "description": f"phantom experiment, arm {arm}: held-out tumor cases {len(held_out)}",
            "labels": lits.get("labels", {"0": "background", "1": "liver", "2": "tumor"}),
            "numTraining": len(items),
            "numValid": len(held_out),
            "training": items,
            "validation": held_out,
        }
        paths[arm] = write_json_atomic(folder / f"{arm}.json", datalist)
    return paths


def segmentor_path(args: argparse.Namespace) -> Path:
    """The real arm's final model: the frozen segmentor of the QC and generator arms."""
    return Path(args.out) / "real" / CHECKPOINT_BEST


def generator_path(args: argparse.Namespace) -> Path:
    return Path(args.out) / "generator" / "generator.pt"


def diffusion_path(args: argparse.Namespace) -> Path:
    return Path(args.out) / "diffusion_model" / "diffusion.pt"


def diffusion_command(args: argparse.Namespace, datalists: dict[str, Path]) -> list[str]:
    """syn_train.py --model diffusion on the real arm's tumor cases."""
    space, roi = str(args.space), str(args.diffusion_roi)
    return [sys.executable, "syn_train.py", "--model", "diffusion", "--train_dir", args.data_root, "--json_dir",
            str(datalists["real"]), "--space_x", space, "--space_y", space, "--space_z", space, "--roi_x", roi,
            "--roi_y", roi, "--roi_z", roi, "--batch_size=4", "--steps_per_epoch=50",
            f"--max_epochs={args.diffusion_epochs}", f"--syn_steps={args.syn_steps}", f"--workers={args.workers}",
            f"--seed={args.seed}", "--noamp", "--device=auto", "--logdir", str(diffusion_path(args).parent), "--resume"]


def generator_command(args: argparse.Namespace, datalists: dict[str, Path]) -> list[str]:
    """syn_train.py on the real arm's tumor cases and the healthy cases, with the real arm's model."""
    space, roi = str(args.space), str(args.roi)
    return [sys.executable, "syn_train.py", "--train_dir", args.data_root, "--json_dir", str(datalists["real"]),
            "--healthy_json", str(datalists["synthetic"]), "--segmentor", str(segmentor_path(args)),
            "--space_x", space, "--space_y", space, "--space_z", space, "--roi_x", roi, "--roi_y", roi, "--roi_z", roi,
            f"--batch_size={args.batch_size}", f"--max_epochs={args.generator_epochs}", f"--workers={args.workers}",
            f"--seed={args.seed}", "--noamp", "--device=auto", "--logdir", str(generator_path(args).parent),
            "--resume"]


def train_command(args: argparse.Namespace, arm: str, datalist: Path, n_train: int, logdir: Path) -> list[str]:
    if arm in REALISTIC_ARMS:  # the original arm's command, with the organ profile's realistic preset
        original = arm.removesuffix("_realistic")
        return train_command(args, original, datalist, n_train, logdir) + ["--syn_preset", "realistic"]
    steps_per_epoch = math.ceil(n_train / args.batch_size)
    epochs = max(1, round(args.steps / steps_per_epoch))
    warmup = max(1, round(args.warmup_fraction * epochs))
    space, roi = str(args.space), str(args.roi)
    command = [
        sys.executable, "main.py", f"--optim_lr={args.optim_lr}", f"--batch_size={args.batch_size}",
        "--lrschedule=warmup_cosine", f"--warmup_epochs={warmup}", "--optim_name=adamw", "--model_name=unet",
        f"--val_every={epochs}", f"--max_epochs={epochs}", "--save_checkpoint", f"--workers={args.workers}",
        "--noamp", f"--val_overlap={args.val_overlap}", "--space_x", space, "--space_y", space, "--space_z", space,
        "--roi_x", roi, "--roi_y", roi, "--roi_z", roi, f"--seed={args.seed}", "--device=auto", "--resume",
        f"--logdir={logdir}", "--train_dir", args.data_root, "--val_dir", args.data_root,
        "--json_dir", str(datalist),
    ]
    if arm not in SYN_ARMS:
        return command
    if arm == "growth":  # the growth model has no surface rim: the organ edge stops it
        return command + ["--syn", "--synthesis", "growth"]
    command += ["--syn", f"--syn_rim_mm={0.0 if arm == 'synthetic_no_rim' else args.syn_rim_mm}"]
    if arm in GAN_ARMS:
        command += ["--synthesis", "gan", "--syn_generator", str(generator_path(args))]
    if arm == "diffusion":
        command += ["--synthesis", "diffusion", "--syn_generator", str(diffusion_path(args)),
                    f"--syn_steps={args.syn_steps}"]
    if arm in QC_ARMS:
        command += ["--syn_qc", str(segmentor_path(args))]
    return command


def qc_acceptance(logdir: Path) -> tuple[int, int]:
    """(crops kept, crops checked) over a QC arm's whole run, from its TensorBoard scalars."""
    scalars = read_scalars(logdir)
    checked = dict(scalars.get("qc/checked_crops", []))
    rates = dict(scalars.get("qc/acceptance_rate", []))
    n_checked = sum(checked.values())
    n_kept = sum(rates[e] * n for e, n in checked.items() if n > 0 and e in rates)
    return int(round(n_kept)), int(round(n_checked))


def is_newer(path: Path, than: Path) -> bool:
    """Whether ``path`` exists and was written after ``than`` (which must exist too)."""
    return path.is_file() and than.is_file() and path.stat().st_mtime > than.stat().st_mtime


@exits_on(OutputWriteError)
def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    out, results = Path(args.out), Path(args.results)
    if not args.dry_run:  # both writable: told before the first command runs
        check_output_dir(out, "--out")
        check_output_dir(results, "--results")
    ensure_data(args)
    if args.dry_run and not (Path(args.data_root) / "phantom_info.json").is_file():
        print("(dry run: no data root yet, the remaining commands need it)")
        return 0
    datalists = build_datalists(args, out / "datalists")
    arms = [arm for arm in ARMS if arm in args.arms]  # the real arm's model first: later arms use it
    needs_segmentor = [arm for arm in arms if arm in QC_ARMS + GAN_ARMS]
    if needs_segmentor and "real" not in arms and not segmentor_path(args).is_file() and not args.dry_run:
        raise SystemExit(f"error: the arms {needs_segmentor} use the real arm's model {segmentor_path(args)}: "
                         "add the real arm (--arms real ...)")
    for arm in arms:
        if arm in GAN_ARMS:  # resumes (or finds finished) the generator run
            run(generator_command(args, datalists), args.dry_run)
        if arm == "diffusion":  # resumes (or finds finished) the diffusion model's run
            run(diffusion_command(args, datalists), args.dry_run)
        n_train = len(read_datalist_json(datalists[arm])["training"])
        logdir = out / arm
        run(train_command(args, arm, datalists[arm], n_train, logdir), args.dry_run)
        metrics = out / "eval" / arm / str(args.val_overlap) / "metrics.csv"
        if is_newer(metrics, logdir / CHECKPOINT_BEST):
            print(f"{arm}: {metrics} is newer than its model.pt: evaluation kept")
            continue
        run([sys.executable, "validation.py", "--model=unet", f"--val_overlap={args.val_overlap}",
             "--val_dir", args.data_root, "--json_dir", str(datalists[arm]), "--log_dir", str(logdir),
             "--save_dir", str(out / "eval"), "--overwrite"], args.dry_run)  # re-evaluates a retrained arm

    # Every arm evaluated under --out so far, in the order of ARMS.
    arm_dirs = {arm: out / "eval" / arm / str(args.val_overlap) for arm in ARMS
                if (out / "eval" / arm / str(args.val_overlap) / "metrics.csv").is_file() or arm in arms}
    command = "python scripts/run_experiment.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    notes = [
        f"Phantom root `{args.data_root}` ({args.n_healthy} healthy + {args.n_tumor} tumor phantoms, seed "
        f"{args.data_seed}); held-out set: the last {args.n_tumor - args.n_real_train} tumor cases, identical for "
        f"every arm and never trained on; the real and mixed arms train on the first {args.n_real_train}.",
        f"Every arm: MONAI UNet (original configuration), {args.steps} AdamW steps of batch {args.batch_size} "
        f"(lr {args.optim_lr}, warmup-cosine), {args.roi}^3 patches at {args.space} mm, seed {args.seed}; synthetic "
        f"tumors keep {args.syn_rim_mm:g} mm of liver under the surface (synthetic_no_rim: 0, the original); the final "
        f"model is evaluated (sliding window, overlap {args.val_overlap}, original-geometry predictions, "
        "largest liver component, tumors within 30 mm of it).",
        f"QC arms: `--syn_qc` with the real arm's model (threshold 0.7). Generator arms: `syn_train.py` "
        f"{args.generator_epochs} epochs on the real arm's {args.n_real_train} tumor cases and the healthy cases "
        "(adversarial weight 0.1, segmentor weight 1, the real arm's model as the frozen segmentor), then "
        "`--synthesis gan`; the generator repaints the ellipsoids of the synthetic arm (same rim).",
    ]
    if any(arm in arm_dirs for arm in REALISTIC_ARMS):
        notes.append("Realistic arms (`*_realistic`): their original arm's command with `--syn_preset realistic` "
                     "(the organ profile's realistic values; docs/reference/organ-profiles.md).")
    if "diffusion" in arm_dirs:
        notes.append(f"Diffusion arm: `syn_train.py --model diffusion` {args.diffusion_epochs} epochs of 50 steps "
                     f"(batch 4, {args.diffusion_roi}^3 crops) on the real arm's {args.n_real_train} tumor cases, then "
                     f"`--synthesis diffusion --syn_steps {args.syn_steps}`; it repaints the ellipsoids of the "
                     "synthetic arm (same rim).")
    for arm in QC_ARMS:
        if arm in arm_dirs and (out / arm).is_dir():
            kept, checked = qc_acceptance(out / arm)
            if checked:
                notes.append(f"Quality control of `{arm}`: {kept} of {checked} synthetic training crops kept "
                             f"(acceptance rate {kept / checked:.2f}); the others reverted to their healthy original.")
    report = [sys.executable, "scripts/make_report.py", "--out", str(results), "--name", args.report_name,
              "--title", args.title,
              "--json_dir", str(datalists[arms[0]]), "--val_dir", args.data_root, "--command", command]
    for note in notes:
        report += ["--note", note]
    for arm, folder in arm_dirs.items():
        report += ["--arm", f"{arm}={folder}"]
    if args.max_overlays is not None:
        report += ["--max_overlays", str(args.max_overlays)]
    run(report, args.dry_run)

    healthy = read_datalist_json(datalists["synthetic"])["training"][0]
    root = Path(args.data_root)
    previews = [results / "synthetic_tumors_mix.png", results / "synthetic_tumor_montage.png"]
    run([sys.executable, "-m", "labelfree.apps.preview", "--image", str(root / healthy["image"]),
         "--label", str(root / healthy["label"]), "--type", "mix", "--seed", str(args.seed),
         "--spacing", str(args.space), str(args.space), str(args.space), "--syn_rim_mm", str(args.syn_rim_mm),
         "--out", str(previews[0]), "--montage", str(previews[1])], args.dry_run)
    if not args.dry_run:
        for path in previews:  # committed files: keep each well under 300 KB
            shrink_png(path)
    print(f"done: {results / (args.report_name + '.md')}")
    return 0

