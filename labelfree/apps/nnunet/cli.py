"""``labelfree-nnunet``: make nnU-Net find this project's trainers, and widen a plans file's CT window.

    labelfree-nnunet install            # once per environment: nnUNetv2_train ... -tr nnUNetTrainerSynTumor
    labelfree-nnunet uninstall
    labelfree-nnunet trainer-dir        # for export nnUNet_extTrainer=... (CUDA torch installs)
    labelfree-nnunet widen-window $nnUNet_preprocessed/Dataset501_X/nnUNetPlans.json --lower_hu -100
"""

from __future__ import annotations

import argparse
import os
import sys
from labelfree.runtime.cli_errors import exits_on


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labelfree-nnunet", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="write labelfree_trainers.py into nnunetv2/training/nnUNetTrainer")
    sub.add_parser("uninstall", help="remove it again")
    sub.add_parser("trainer-dir", help="print nnUNet_extTrainer with this project's trainer folder appended")
    widen = sub.add_parser("widen-window", help="lower the CT window of a plans file (between planning and "
                                                "preprocessing), so tumors darker than the organ keep their texture")
    widen.add_argument("plans", help="nnUNetPlans.json")
    widen.add_argument("--lower_hu", type=float, required=True, help="new lower edge of the window (HU)")
    return parser


@exits_on(FileNotFoundError, ImportError, ValueError)
def main(argv: list[str] | None = None) -> int:
    from labelfree.apps.nnunet.install import install_trainers, trainer_dir, uninstall_trainers

    args = get_args_parser().parse_args(argv)
    if args.command == "install":
        print(f"wrote {install_trainers()}: nnUNetv2_train ... -tr nnUNetTrainerSynTumor")
    elif args.command == "uninstall":
        path = uninstall_trainers()
        print(f"removed {path}" if path else "nothing to remove")
    elif args.command == "trainer-dir":
        current = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
        folder = str(trainer_dir())
        print(os.pathsep.join(current if folder in current else current + [folder]))
    else:
        from labelfree.apps.nnunet.normalization import widen_ct_window

        result = widen_ct_window(args.plans, args.lower_hu)
        print(f"{result['file']}: CT window lower edge {result['old_lower']:g} -> {result['new_lower']:g} HU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
