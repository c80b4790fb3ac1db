"""Score a folder of predictions against a datalist's labels, without a model or a GPU.

The scoring step of ``validation.py`` on its own (as nnU-Net's ``evaluate_folder``)::

    labelfree-score --pred_dir outs/synt.no_pretrain.unet0/0.75/pred \\
        --json_dir datafolds/healthy.json --val_dir data/phantom --workers 2

reads ``<pred_dir>/<case>.nii.gz`` for every labelled case of the datalist's ``validation``
list, scores it against its label (Dice, NSD, lesion detection; :mod:`labelfree.evaluation.scoring`)
in a pool of ``--workers`` processes and writes ``metrics.csv`` and ``summary.json`` next to
``pred/`` (or into ``--out``): the same files, to the last digit, that ``validation.py``
wrote for the same predictions. The organ and NSD tolerance default to what that
``validation.py`` run recorded in the folder's ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from labelfree.data.datalist import DatalistError
from labelfree.evaluation import report
from labelfree.evaluation.scoring import score_cases
from labelfree.data.labels import LabelError
from labelfree.config.settings import DEFAULTS, RunSettings, SettingsError
from labelfree.runtime.cli_errors import exits_on


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--pred_dir", required=True, help="folder of <case>.nii.gz predictions (validation.py's pred/)")
    parser.add_argument("--json_dir", required=True, help="datalist JSON; its 'validation' list is scored")
    parser.add_argument("--val_dir", default=None, help="root that the datalist's relative paths are relative to")
    parser.add_argument("--organ", default=None, type=str.lower, choices=labelfree_organs(),
                        help="label convention (default: the organ validation.py recorded in the folder's "
                             f"summary.json, else {DEFAULTS['organ']})")
    parser.add_argument("--nsd_tolerance", default=None, type=float,
                        help="NSD tolerance in mm (default: the recorded one, else 2)")
    parser.add_argument("--workers", default=1, type=int, help="scoring processes")
    parser.add_argument("--out", default=None, help="where metrics.csv and summary.json go (default: pred_dir/..)")
    return parser


def labelfree_organs() -> list[str]:
    from labelfree.config.flags import organ_names

    return organ_names()


def recorded_settings(out_dir: Path) -> dict:
    """The ``settings`` an earlier ``validation.py`` run wrote into ``out_dir/summary.json`` ({} if none)."""
    path = out_dir / "summary.json"
    try:
        return dict(json.loads(path.read_text()).get("settings") or {})
    except (OSError, ValueError, AttributeError):
        return {}


@exits_on(DatalistError, LabelError, SettingsError, ValueError)
def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    pred_dir = Path(args.pred_dir)
    out_dir = Path(args.out) if args.out else pred_dir.parent
    if not pred_dir.is_dir():
        raise DatalistError(f"--pred_dir {pred_dir}: not a folder")
    if args.workers < 0:
        raise DatalistError(f"--workers must be >= 0, got {args.workers}")
    recorded = recorded_settings(pred_dir.parent)
    organ = args.organ or recorded.get("organ") or DEFAULTS["organ"]
    tolerance = args.nsd_tolerance if args.nsd_tolerance is not None else recorded.get("nsd_tolerance_mm", 2.0)
    label_pairs = RunSettings.create(organ=organ).label_pairs
    from labelfree.cli.validate import collect_cases

    cases = [c for c in collect_cases(argparse.Namespace(images=None, json_dir=args.json_dir,
                                                         val_dir=args.val_dir)) if c.get("label")]
    if not cases:
        raise DatalistError(f"datalist {args.json_dir}: no validation case has a label to score against")
    missing = [c["name"] for c in cases if not (pred_dir / f"{c['name']}.nii.gz").is_file()]
    if missing:
        raise DatalistError(f"{len(missing)} case(s) of {args.json_dir} have no prediction in {pred_dir}: "
                            + ", ".join(missing))
    start = time.perf_counter()
    rows = score_cases(cases, pred_dir, label_pairs, tolerance, args.workers)
    elapsed = time.perf_counter() - start
    settings = {**recorded, "organ": organ, "nsd_tolerance_mm": tolerance}
    report.write_scores(rows, label_pairs, out_dir, settings)
    print(f"{len(rows)} case(s) scored in {elapsed:.1f} s with {max(args.workers, 1)} worker(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
