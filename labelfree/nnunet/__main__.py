"""``python -m labelfree.nnunet``: how nnU-Net finds this project's trainers, and a plans helper.

    export nnUNet_extTrainer=$(python -m labelfree.nnunet --trainer_dir)
    python -m labelfree.nnunet --widen_window $nnUNet_preprocessed/Dataset501_X/nnUNetPlans.json --lower_hu -100
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def trainer_dir() -> Path:
    """The folder to list in ``nnUNet_extTrainer``."""
    return Path(__file__).resolve().parent / "trainers"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelfree.nnunet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainer_dir", action="store_true",
                        help="print the folder for nnUNet_extTrainer (appended to its current value)")
    parser.add_argument("--widen_window", metavar="PLANS_JSON", default=None,
                        help="lower the CT window of a plans file (run between planning and preprocessing)")
    parser.add_argument("--lower_hu", type=float, default=None, help="new lower edge (HU) for --widen_window")
    args = parser.parse_args(argv)
    if args.widen_window:
        from labelfree.nnunet.normalization import NnunetSetupError, widen_ct_window

        if args.lower_hu is None:
            parser.error("--widen_window needs --lower_hu")
        try:
            result = widen_ct_window(args.widen_window, args.lower_hu)
        except NnunetSetupError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{result['file']}: CT window lower edge {result['old_lower']:g} -> {result['new_lower']:g} HU")
    if args.trainer_dir or not args.widen_window:
        current = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
        print(os.pathsep.join(current + [str(trainer_dir())] if str(trainer_dir()) not in current else current))
    return 0


if __name__ == "__main__":
    sys.exit(main())
