"""Score a folder of predictions against a datalist's labels, without a model or a GPU.

The scoring step of ``validation.py`` on its own (as nnU-Net's ``evaluate_folder``)::

    labelfree-score --pred_dir outs/synt.no_pretrain.unet0/0.75/pred \\
        --json_dir datafolds/healthy.json --val_dir data/phantom --workers 2

reads ``<pred_dir>/<case>.nii.gz`` for every labelled case of the datalist's ``validation``
list, scores it against its label (Dice, NSD, lesion detection; :mod:`labelfree.evaluation.scoring`)
in a pool of ``--workers`` processes and writes ``metrics.csv`` and ``summary.json`` next to
``pred/`` (or into ``--out``): the same files, to the last digit, that ``validation.py``
wrote for the same predictions. The organ, the NSD tolerance and the metric conventions
(``--organ_region``, ``--empty_mask_score``) default to what that ``validation.py`` run
recorded in the folder's ``summary.json``.

Every prediction's grid is compared with its label's in world coordinates before anything
is scored: one saved in another axis order or orientation (LPS against a RAS label) is
re-indexed onto the label's grid and scored correctly; any other difference (a shift,
another voxel size or shape) is refused, naming both files and the difference.

It imports neither torch nor MONAI (numpy, scipy, nibabel, SimpleITK, surface-distance), and
starts ``--workers`` processes only when the cases are large enough for a pool to pay.
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
from labelfree.evaluation.cases import evaluation_cases
from labelfree.evaluation.scoring import (
    add_convention_arguments,
    check_prediction_grids,
    resolve_conventions,
    score_cases,
    scoring_processes,
)
from labelfree.io.output_dir import check_output_dir
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
    add_convention_arguments(parser, recorded=True)
    parser.add_argument("--workers", default=1, type=int,
                        help="scoring processes at most (one when the cases are too small for a pool to pay)")
    parser.add_argument("--out", default=None, help="where metrics.csv and summary.json go (default: pred_dir/..)")
    parser.add_argument("--no_report", action="store_true",
                        help="do not write report/index.html beside metrics.csv (summary, sortable case table and a "
                             "slice browser per case; opens from disk, no server)")
    return parser


def labelfree_organs() -> list[str]:
    # tumor_synthesis.organs itself rather than labelfree.config.flags.organ_names: flags
    # imports the networks (torch), which this tool does not need.
    from tumor_synthesis.organs import available_organs

    return list(available_organs())


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
    check_output_dir(out_dir, "--out" if args.out else None)  # writable: told before any scan is read
    recorded = recorded_settings(pred_dir.parent)
    organ = args.organ or recorded.get("organ") or DEFAULTS["organ"]
    tolerance = args.nsd_tolerance if args.nsd_tolerance is not None else recorded.get("nsd_tolerance_mm", 2.0)
    run_settings = RunSettings.create(organ=organ)
    label_pairs = run_settings.label_pairs
    conventions = resolve_conventions(args.organ_region, args.empty_mask_score, recorded)
    cases = [c for c in evaluation_cases(args.json_dir, args.val_dir) if c.get("label")]
    if not cases:
        raise DatalistError(f"datalist {args.json_dir}: no validation case has a label to score against")
    missing = [c["name"] for c in cases if not (pred_dir / f"{c['name']}.nii.gz").is_file()]
    if missing:
        raise DatalistError(f"{len(missing)} case(s) of {args.json_dir} have no prediction in {pred_dir}: "
                            + ", ".join(missing))
    # Every grid from the headers, before any scoring: all refusals at once.
    reoriented = check_prediction_grids([(str(pred_dir / f"{c['name']}.nii.gz"), c["label"]) for c in cases])
    if reoriented:
        print(f"{len(reoriented)} prediction(s) saved in another axis order or orientation than their label, "
              f"re-indexed onto the label's grid: " + ", ".join(cases[i]["name"] for i in reoriented))
    processes = scoring_processes(cases, args.workers)
    start = time.perf_counter()
    rows = score_cases(cases, pred_dir, label_pairs, tolerance, processes, **conventions)
    elapsed = time.perf_counter() - start
    settings = {**recorded, "organ": organ, "nsd_tolerance_mm": tolerance, **conventions}
    summary = report.write_scores(rows, label_pairs, out_dir, settings)
    if not args.no_report:
        from labelfree.evaluation.html_report import write_evaluation_report

        # The window validation.py ran with (recorded), else the organ's.
        window = (recorded.get("a_min", run_settings.window[0]), recorded.get("a_max", run_settings.window[1]))
        page = write_evaluation_report(out_dir, rows, summary, label_pairs, cases, window, pred_dir)
        print(f"report (open in a browser): {page}")
    print(f"{len(rows)} case(s) scored in {elapsed:.1f} s with {processes} process(es)"
          + (f" (--workers {args.workers}: too little work for a pool to pay)" if processes < args.workers else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
