"""Cost of the pre-flight check (labelfree.data.preflight) against the caching it precedes.

On phantom abdomen CT (``labelfree.phantom.make_phantom_dataset``, default spacing, 8
healthy + 4 tumor cases: 340 x 260 x 72 voxels), times

1. the pre-flight check of every case of ``healthy.json`` (header pass + content pass: each
   file decompressed once, NaN, label values, empty organ), in-process and with
   ``--workers`` worker processes;
2. baseline, same run: building the training cache of ``main.py`` for the same training
   cases (LoadImaged .. Spacingd to ``--space`` mm, ``--workers`` threads).

Every figure is the median of ``--repeats`` runs; the ratio is the pre-flight's share.

    python benchmarks/bench_preflight.py                   # about 3-5 minutes on 2 cores
    python benchmarks/bench_preflight.py --data_root data/phantom
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from labelfree.runtime.timing import median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_root", default=None, help="phantom root (default: a fresh one in a temp folder)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes / cache threads")
    parser.add_argument("--space", type=float, default=1.0, help="cache resampling, mm")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from labelfree.data.loaders import build_train_dataset
    from labelfree.data.datalist import load_datalist
    from labelfree.data.preflight import label_convention, screen
    from labelfree.data.transforms import get_transforms

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data_root) if args.data_root else Path(tmp)
        if not (root / "phantom_info.json").is_file():
            from labelfree.phantom import make_phantom_dataset

            make_phantom_dataset(root, seed=0, previews=False, progress=False, n_healthy=8, n_tumor=4,
                                 n_chest_healthy=0, n_chest_nodule=0, n_pancreas_tumor=0, n_kidney_tumor=0)
        datalist = root / "datafolds" / "healthy.json"
        lists = {split: load_datalist(datalist, split, root) for split in ("training", "validation")}
        convention = label_convention("liver", 3)
        serial = median_seconds(lambda: screen(lists, convention, workers=0), args.repeats, warmup=0)
        parallel = median_seconds(lambda: screen(lists, convention, workers=args.workers), args.repeats,
                                  warmup=0)
        transform = get_transforms("train", a_min=-21, a_max=189, space=(args.space,) * 3, roi_size=(96, 96, 96),
                                   syn=True, organ="liver")
        cache = median_seconds(lambda: build_train_dataset(lists["training"], transform, 500, 1.0, args.workers,
                                                           progress=False), args.repeats, warmup=0)
    n = sum(len(items) for items in lists.values())
    print(f"{n} cases ({len(lists['training'])} training), median of {args.repeats}:")
    print(f"  pre-flight, in-process        {serial:7.2f} s  ({serial / cache:.2f} x the cache)")
    print(f"  pre-flight, {args.workers} worker processes {parallel:7.2f} s  ({parallel / cache:.2f} x the cache)")
    print(f"  baseline: caching the training cases at {args.space:g} mm, {args.workers} threads  {cache:7.2f} s")


if __name__ == "__main__":
    main()
