"""Generate the procedural phantom CT data root (the default data of the demo and the tests).

Example:
    python scripts/make_phantom_data.py --out data/phantom --n_healthy 8 --n_tumor 4 --seed 0

Writes the original project's folder layout (01_Multi-Atlas_Labeling, label, 04_LiTS,
05_Chest, 06_LNDb) plus pancreas and kidney tumour cases (07_Pancreas, 08_Kidney) and
multi-organ labels (FreeTumor convention), decathlon datalists under <out>/datafolds
(healthy, real_K, mix_K, lits, chest, pancreas, kidney, multiorgan), phantom_info.json and
PNG previews; then ``--train_dir <out> --val_dir <out> --json_dir datafolds/healthy.json``
works (``datafolds/pancreas.json`` etc. for the other organs).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from labelfree.io.output_dir import check_output_dir
from labelfree.phantom.case import DEFAULT_SPACING
from labelfree.phantom.geometry import SUPPORTED_ORIENTATIONS
from labelfree.runtime.cli_errors import exits_on


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="data/phantom", help="output data root")
    counts = parser.add_argument_group("cases")
    counts.add_argument("--n_healthy", type=int, default=8, help="healthy abdomen cases (01_Multi-Atlas_Labeling)")
    counts.add_argument("--n_tumor", type=int, default=4, help="abdomen cases with liver tumours (04_LiTS)")
    counts.add_argument("--n_chest_healthy", type=int, default=2, help="healthy chest cases (05_Chest)")
    counts.add_argument("--n_chest_nodule", type=int, default=2, help="chest cases with lung nodules (06_LNDb)")
    counts.add_argument("--n_pancreas_tumor", type=int, default=2,
                        help="abdomen cases with pancreatic tumours (07_Pancreas)")
    counts.add_argument("--n_kidney_tumor", type=int, default=2,
                        help="abdomen cases with kidney tumours and cysts, some exophytic (08_Kidney)")
    geometry = parser.add_argument_group("geometry")
    geometry.add_argument("--spacing", type=float, nargs=3, default=list(DEFAULT_SPACING), metavar=("SX", "SY", "SZ"),
                          help="voxel size in mm")
    geometry.add_argument("--orientation", default="RAS", choices=SUPPORTED_ORIENTATIONS, type=str.upper,
                          help="voxel order of the NIfTI arrays")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0, help="master seed (each case derives its own)")
    run.add_argument("--overwrite", action="store_true", help="replace the phantom data of a non-empty --out")
    run.add_argument("--no_previews", action="store_true", help="do not write previews/<case>.png")
    run.add_argument("--workers", type=int, default=2, help="parallel processes (the output does not depend on it)")
    return parser


def print_summary(info: dict, root: Path) -> None:
    """Print one line per case and the totals."""
    from labelfree.phantom.dataset import GROUPS

    lesion_groups = {g.name for g in GROUPS if g.lesions}
    print(f"\nphantom data root: {root}  (seed {info['seed']}, spacing {info['spacing_mm']} mm, {info['orientation']})")
    for case in info["cases"]:
        organ = case["organ"]
        volume = case[f"{organ}_volume_ml"]
        volume = f"{organ} {volume / 1000:.2f} L" if volume >= 1000 else f"{organ} {volume:.0f} mL"
        lesions = f", {case['n_lesions']} lesion(s)" if case["group"] in lesion_groups else ""
        print(f"  {case['name']:<13} {case['group']:<14} {'x'.join(map(str, case['shape']))}  {volume}{lesions}  "
              f"{case['bytes'] / 2**20:.1f} MiB")
    print(f"{len(info['cases'])} cases, {info['total_bytes'] / 2**20:.1f} MiB, {info['generation_seconds']:.1f} s; "
          f"datalists: {', '.join(info['datalists']) or 'none (a datalist needs both of its lists non-empty)'}")


@exits_on(FileExistsError, NotADirectoryError, ValueError)
def main(args: argparse.Namespace) -> int:
    from labelfree.phantom import make_phantom_dataset

    root = check_output_dir(args.out, "--out")  # writable: told before any case is generated
    info = make_phantom_dataset(
        root, n_healthy=args.n_healthy, n_tumor=args.n_tumor, n_chest_healthy=args.n_chest_healthy,
        n_chest_nodule=args.n_chest_nodule, n_pancreas_tumor=args.n_pancreas_tumor,
        n_kidney_tumor=args.n_kidney_tumor, seed=args.seed, spacing=tuple(args.spacing),
        orientation=args.orientation, overwrite=args.overwrite, previews=not args.no_previews,
        workers=min(args.workers, os.cpu_count() or 1),
    )
    print_summary(info, root)
    return 0


def cli(argv: list[str] | None = None) -> int:
    """Console-script entry point (``labelfree-phantom``)."""
    return main(get_args_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
