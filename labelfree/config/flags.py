"""Command-line argument groups shared by ``main.py`` and ``validation.py``.

Flag names, meanings and defaults follow the original project, so existing shell scripts
run unchanged. Each ``add_*`` function adds one group to a parser.
"""

from __future__ import annotations

import argparse

from labelfree.networks import MODEL_NAMES, SWIN_FEATURE_SIZES
from labelfree.config.settings import DEFAULTS


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" only where there is a default worth showing (not None / off)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if (action.default is None or action.default is False or action.default is argparse.SUPPRESS
                or isinstance(action.default, ConventionDefault)):  # its help says what it defaults to
            return action.help or ""
        return super()._get_help_string(action)


class ConventionDefault(int):
    """Default class count that the organ's label convention replaces when the flag is not given.

    It is 3 (the original's default, and every single-organ convention); ``--organ multi``
    turns it into 7. An ``int`` subclass so that the parsed value still reads as 3.
    """


def organ_names() -> list[str]:
    """Organs with a synthesis profile (``tumor_synthesis.organs``)."""
    from tumor_synthesis.organs import available_organs

    return list(available_organs())


def organ_profile(name: str):
    """The ``tumor_synthesis.organs`` profile of ``name`` (window, labels, class names)."""
    from tumor_synthesis.organs import get_organ_profile

    return get_organ_profile(name)


def add_syn_preset_argument(group: argparse._ArgumentGroup) -> None:
    """``--syn_preset``: the synthesis preset of ``TumorGenerated`` (``tumor_synthesis.organs.PRESETS``)."""
    from tumor_synthesis.organs import PRESETS

    group.add_argument("--syn_preset", default="original", choices=PRESETS,
                       help="with --syn (or a synthesis measurement): original, the published method bit for bit; "
                            "realistic, the organ profile's realistic values (liver: edges as sharp as real lesions', "
                            "a label that ends where the visible lesion ends, real hypodense lesions' contrast; the "
                            "gan paints inside its label); see docs/reference/organ-profiles.md")


def add_data_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("data")
    group.add_argument("--json_dir", default=None, type=str,
                       help="datalist JSON (MONAI decathlon format: 'training' and 'validation' lists)")
    group.add_argument("--train_dir", default=None, type=str,
                       help="root that the 'training' paths of the datalist are relative to")
    group.add_argument("--val_dir", default=None, type=str,
                       help="root that the 'validation' paths of the datalist are relative to")
    return group


def add_preprocessing_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("preprocessing (shared by training and validation)")
    group.add_argument("--organ", default=DEFAULTS["organ"], type=str.lower, choices=organ_names(),
                       help="target organ: sets the synthesis profile, the label convention, the default "
                            "intensity window and the per-class metric names (profiles in "
                            "tumor_synthesis.organs). liver (window -21..189 HU), lung (nodules; chest "
                            "window -1000..500 HU), pancreas, kidney (-175..250 HU): labels 0 background, "
                            "1 organ, 2 tumor, 3 classes. multi: FreeTumor's multi-organ convention, one "
                            "model for liver, pancreas and kidney: labels 0 background, 1 liver, 2 liver "
                            "tumor, 3 pancreas, 4 pancreas tumor, 5 kidney, 6 kidney tumor (7 classes; "
                            "window -175..250 HU); --syn paints tumors into every organ present")
    group.add_argument("--a_min", default=None, type=float,
                       help="HU mapped to 0 by ScaleIntensityRanged (default: the organ's window, liver -21)")
    group.add_argument("--a_max", default=None, type=float,
                       help="HU mapped to 1 by ScaleIntensityRanged (default: the organ's window, liver 189)")
    group.add_argument("--space_x", default=DEFAULTS["space"], type=float, help="resampled voxel spacing along x in mm")
    group.add_argument("--space_y", default=DEFAULTS["space"], type=float, help="resampled voxel spacing along y in mm")
    group.add_argument("--space_z", default=DEFAULTS["space"], type=float, help="resampled voxel spacing along z in mm")
    group.add_argument("--roi_x", default=DEFAULTS["roi"], type=int, help="patch size along x in voxels (training crop and sliding window)")
    group.add_argument("--roi_y", default=DEFAULTS["roi"], type=int, help="patch size along y in voxels")
    group.add_argument("--roi_z", default=DEFAULTS["roi"], type=int, help="patch size along z in voxels")
    return group


def add_model_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("model")
    group.add_argument("--model_name", default=DEFAULTS["model"], choices=MODEL_NAMES,
                       help="network: the original's MONAI UNet or Swin-UNETR v2")
    group.add_argument("--swin_type", default=DEFAULTS["swin_type"], choices=sorted(SWIN_FEATURE_SIZES),
                       help="Swin-UNETR size: tiny / small / base = feature size 12 / 24 / 48")
    group.add_argument("--in_channels", default=1, type=int,
                       help="input channels; must be 1 (one CT image per case), kept for compatibility")
    group.add_argument("--out_channels", default=ConventionDefault(3), type=int,
                       help="network output channels = classes including background "
                            "(default: the organ's label convention, 3; --organ multi: 7)")
    group.add_argument("--num_classes", default=ConventionDefault(3), type=int,
                       help="classes including background, for the metrics; must equal --out_channels "
                            "(default: the organ's label convention, 3; --organ multi: 7)")
    return group


def add_inference_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("sliding-window inference")
    group.add_argument("--val_overlap", default=0.5, type=float,
                       help="overlap of neighbouring sliding windows, 0..1")
    group.add_argument("--sw_batch_size", default=None, type=int,
                       help="windows per forward pass in sliding-window inference (default: 4 on CUDA, 1 on CPU)")
    return group


def add_device_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("device and precision")
    group.add_argument("--device", default="auto",
                       help="auto (CUDA when a GPU is visible, else CPU), cpu, cuda or cuda:N (one process; "
                            "torchrun gives each process its local GPU)")
    group.add_argument("--noamp", action="store_true",
                       help="disable mixed precision on CUDA (wins over --amp)")
    group.add_argument("--amp", action="store_true",
                       help="mixed precision; already the default on CUDA, so this only documents intent. "
                            "--noamp wins over it; CPU always runs in fp32")
    return group


def resolve_num_classes(args: argparse.Namespace) -> tuple[int, int]:
    """``(out_channels, num_classes)``: each flag where given, else the organ's class count (3; multi 7)."""
    default = organ_profile(args.organ).num_classes
    out_channels = args.out_channels if _given(args.out_channels) else default
    num_classes = args.num_classes if _given(args.num_classes) else default
    return int(out_channels), int(num_classes)


def _given(value) -> bool:
    return value is not None and not isinstance(value, ConventionDefault)
