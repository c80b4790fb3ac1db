"""Check every case of a datalist before training.

    python scripts/check_data.py --json_dir datafolds/healthy.json --train_dir data/phantom --val_dir data/phantom

Reads every image and label completely (a truncated .nii.gz is only found when its data are
decompressed) and checks: files exist and load, are 3D, the image holds no NaN or infinite
value, image and label shapes and affines match (1e-3 mm), label values are allowed, the
organ is not empty. main.py and validation.py run the same checks before they start. Prints a table (case, shape,
spacing, label values, organ voxels and volume, status), every problem, a warning for scans
listed twice or in both training and validation (a leak in a training list, deliberate in an
evaluation list), and a summary.

Exit status: 0 when every case is fine, 1 when any problem is found (or the datalist cannot
be read), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from labelfree.data.checks import SPLITS, check_datalist, declared_labels, format_problems, format_table
from labelfree.data.datalist import DatalistError
from labelfree.io.atomic import write_json_atomic
from labelfree.io.output_dir import check_output_file
from labelfree.runtime.cli_errors import exits_on

DEFAULT_ALLOWED = (0, 1, 2)


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Check every image/label of a datalist: files load, 3D, no NaN/inf in the image, geometry "
        "matches, label values allowed, organ not empty. Exit status 1 when any problem is found.",
    )
    parser.add_argument("--json_dir", required=True, type=str, help="datalist JSON (the name of main.py's flag)")
    parser.add_argument("--train_dir", type=str, default=None,
                        help="base of the training paths (as main.py; default: the current directory)")
    parser.add_argument("--val_dir", type=str, default=None,
                        help="base of the validation paths (as main.py; default: the current directory)")
    parser.add_argument("--split", choices=(*SPLITS, "both"), default="both", help="which list(s) to check")
    parser.add_argument("--allowed_labels", type=int_list, default=None,
                        help="comma-separated allowed label values (default: the keys of the datalist's "
                        "\"labels\" header, else 0,1,2)")
    parser.add_argument("--organ_label", type=int_list, default=[1],
                        help="organ label value(s), comma-separated; the organ must not be empty (default 1)")
    parser.add_argument("--workers", type=int, default=1, help="files read in parallel (threads)")
    parser.add_argument("--report", type=str, default=None, help="also write the results as JSON to this file")
    return parser


# An unreadable datalist is "a problem found" here (exit status 1, as documented), not a usage error.
@exits_on(DatalistError, code=1)
def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.report:
        check_output_file(args.report, "--report")  # writable: told before the cases are checked
    splits = SPLITS if args.split == "both" else (args.split,)
    allowed = args.allowed_labels or declared_labels(args.json_dir) or DEFAULT_ALLOWED
    print(f"allowed label values: {','.join(map(str, allowed))}; organ label: "
          f"{','.join(map(str, args.organ_label))}")
    results, warnings = check_datalist(
        args.json_dir, args.train_dir, args.val_dir, splits=splits, allowed_labels=allowed,
        organ_labels=args.organ_label, workers=max(1, args.workers), progress=True,
    )

    print(format_table(results))
    problems_text = format_problems(results)
    if problems_text:
        print("\nproblems:\n" + problems_text)
    for line in warnings:
        print(f"warning: {line}")
    bad = [r for r in results if not r.ok]
    organ_ml = [r.organ_ml for r in results if r.organ_ml]
    summary = f"\n{len(results)} case(s) checked ({', '.join(splits)}): {len(results) - len(bad)} ok, {len(bad)} with problems"
    if warnings:
        summary += f", {len(warnings)} warning(s)"
    if organ_ml:
        summary += f"; organ volume {min(organ_ml):.1f}-{max(organ_ml):.1f} mL"
    print(summary)
    if args.report:
        write_json_atomic(args.report, {
            "datalist": str(args.json_dir), "ok": not bad,
            "cases": [r.to_dict() for r in results], "warnings": warnings,
        })
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
