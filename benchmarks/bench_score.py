"""Benchmark of ``labelfree-score``'s worker pool: where does a pool of processes start to pay?

Writes ``--counts`` synthetic cases (label and prediction NIfTI: an ellipsoid liver with
tumors, a shifted prediction) per ``--shapes`` entry, then times
``labelfree.evaluation.scoring.score_cases`` on them in one process and in a pool of
``--workers`` spawned processes (the pool forced on with ``pool_min_voxels=0``), taking
turns within every round. It prints the median of ``--runs`` runs of each, their ratio
(one process / pool: above 1 the pool pays) and the total label voxels of each set, and at
the end the smallest total at which the pool paid: the break-even that
``scoring.POOL_MIN_VOXELS`` encodes.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_score.py
    python benchmarks/bench_score.py --shapes 128x128x64 256x256x100 --counts 2 4 8 --workers 2 --runs 3
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from labelfree.evaluation.scoring import POOL_MIN_VOXELS, score_cases
from labelfree.runtime.timing import median_seconds_each

LIVER_PAIRS = (("liver", 1, "tumor", 2),)
SPACING_MM = (0.8, 0.8, 2.5)


def synthetic_pair(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference and predicted (H, W, D) uint8 label maps: liver 1 filling ~40% of the scan, tumors 2."""
    rng = np.random.default_rng(seed)
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    centre = np.asarray(shape) / 2

    def ellipsoid(c, radii):
        return sum(((g - ci) / r) ** 2 for g, ci, r in zip(grid, c, radii)) <= 1.0

    radii = np.asarray(shape) * 0.35
    ref = np.zeros(shape, np.uint8)
    ref[ellipsoid(centre, radii)] = 1
    pred = np.zeros(shape, np.uint8)
    pred[ellipsoid(centre + 1.5, radii * 0.97)] = 1
    for _ in range(4):
        c = centre + rng.uniform(-0.5, 0.5, 3) * radii
        r = np.asarray(shape) * rng.uniform(0.02, 0.06)
        ref[ellipsoid(c, r)] = 2
        pred[ellipsoid(c + rng.normal(0, 1.0, 3), r * 0.9)] = 2
    return ref, pred


def write_cases(folder: Path, shape: tuple[int, int, int], count: int) -> list[dict]:
    affine = np.diag([*SPACING_MM, 1.0])
    (folder / "pred").mkdir(parents=True)
    cases = []
    for i in range(count):
        ref, pred = synthetic_pair(shape, seed=i)
        label = folder / f"case{i}_label.nii.gz"
        nib.save(nib.Nifti1Image(ref, affine), str(label))
        nib.save(nib.Nifti1Image(pred, affine), str(folder / "pred" / f"case{i}.nii.gz"))
        cases.append({"name": f"case{i}", "label": str(label)})
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["96x96x48", "192x192x80", "256x256x100"],
                        help="case sizes HxWxD in voxels")
    parser.add_argument("--counts", nargs="+", type=int, default=[2, 4, 8], help="cases per set")
    parser.add_argument("--workers", type=int, default=2, help="pool size")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each (median)")
    args = parser.parse_args()

    print(f"score_cases, 1 process vs a pool of {args.workers} (spawn); median of {args.runs} runs, "
          f"1 warm-up; POOL_MIN_VOXELS now {POOL_MIN_VOXELS:,}")
    print(f"{'shape':>12} {'cases':>5} {'voxels':>12} {'1 proc s':>9} {'pool s':>8} {'1proc/pool':>10}")
    paid = []
    with tempfile.TemporaryDirectory(prefix="bench_score_") as tmp:
        for text in args.shapes:
            shape = tuple(int(n) for n in text.lower().split("x"))
            for count in args.counts:
                folder = Path(tmp) / f"{text}_{count}"
                cases = write_cases(folder, shape, count)
                t = median_seconds_each({
                    "one": lambda: score_cases(cases, folder / "pred", LIVER_PAIRS, workers=1, progress=False),
                    "pool": lambda: score_cases(cases, folder / "pred", LIVER_PAIRS, workers=args.workers,
                                                progress=False, pool_min_voxels=0),
                }, args.runs)
                voxels = count * int(np.prod(shape))
                ratio = t["one"] / t["pool"]
                print(f"{text:>12} {count:>5} {voxels:>12,} {t['one']:>9.2f} {t['pool']:>8.2f} {ratio:>10.2f}")
                if ratio > 1.0:
                    paid.append(voxels)
    if paid:
        print(f"the pool paid from {min(paid):,} label voxels in all (smallest set where 1 proc / pool > 1)")
    else:
        print("the pool never paid on these sets")


if __name__ == "__main__":
    main()
