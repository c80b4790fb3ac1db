"""Convert the labels of public CT datasets into the labels the datalists train on.

Synthetic tumors are painted into healthy organs, so a healthy training case needs a label
with 0 background / 1 organ (liver, or lung for chest CT). Every dataset labels differently;
this script writes converted labels to ``DATA_PATH/label/`` under the original project's
file names, so its datalists (``datafolds/healthy.json``) work unchanged::

    python transfer_label.py --data_path /data/liver

Source layout (relative to --data_path; names of the original project, checked against its
datalists; each dataset folder is optional):

  01_Multi-Atlas_Labeling/label/labelNNNN.nii.gz   BTCV multi-organ, liver = 6, values 0-13
      -> label/multi-atlas-labelNNNN.nii.gz        (image 01_Multi-Atlas_Labeling/img/imgNNNN.nii.gz)
  02_TCIA_Pancreas-CT/multiorgan_label/labelNNNN.nii.gz   multi-organ, liver = 6 (BTCV numbering assumed)
      -> label/tcia-labelNNNN.nii.gz               (image 02_TCIA_Pancreas-CT/img/PANCREAS_NNNN.nii.gz)
  03_CHAOS/ct/liver_label/N_segmentation.nii.gz   binary liver masks (0/1, or 0/255)
      -> label/chaos-N_segmentation.nii.gz         (image 03_CHAOS/ct/img/N_image.nii.gz)
  04_LiTS/label/liver_N.nii.gz                     0/1 liver/2 tumor
      -> label/lits-liver_N.nii.gz for TUMOR-FREE cases only (image 04_LiTS/img/liver_N.nii.gz);
         tumor-free is read from the data (no voxel of value 2), and compared with the
         original's list (32, 34, 38, 41, 47, 89, 91, 105, 106, 114, 115). Tumor cases are not
         converted: they stay the validation cases, with their own labels.
  Task03_Liver/labelsTr/liver_N.nii.gz             MSD Task03 Liver, 0/1/2, same rule as LiTS
      -> label/msd-liver_N.nii.gz                  (image Task03_Liver/imagesTr/liver_N.nii.gz)
  05_Chest/img/NAME.nii.gz [+ 05_Chest/label/NAME.nii.gz]   healthy chest CT [+ lung label]
      -> label/chest-NAME.nii.gz, 0/1 lung: lung = label values --lung_label; without a label
         file the lung is extracted from the CT (APPROXIMATE: HU < -400 inside the body,
         outside air removed, two largest components, holes filled)
  06_LNDb/img/NAME.nii.gz + 06_LNDb/label/NAME.nii.gz       chest CT with nodule annotations
      -> label/lndb-NAME.nii.gz, 0/1 lung/2 nodule: nodule = --nodule_label, lung =
         --lung_label, extracted from the CT (approximate) when the label holds no lung
  generic: any other folder, relabelled with --map SRC:DST (see --dataset generic below).

Public datasets in the layouts they are distributed in (images and labels in any format that
labelfree.io.readers reads; outputs are NIfTI on the image's voxel grid with its RAS affine):

  LNDb/data/LNDb-NNNN.mhd (+ .raw) + LNDb/masks/LNDb-NNNN_radR.mhd   (--dataset lndb_mhd)
      -> label/lndb-LNDb-NNNN.nii.gz, 0/1 lung/2 nodule. LNDb masks hold one nodule id per
         voxel, one file per radiologist (R = 1..3). Merge rule: a voxel is nodule when at
         least --lndb_agreement radiologists (default 1: any of them) marked it; the lung is
         extracted from the CT (approximate, as for 05_Chest). A mask on another grid than its
         CT is reported and left out.
  Task06_Lung/labelsTr/lung_N.nii.gz + imagesTr/lung_N.nii.gz      (--dataset msd_lung)
      -> label/msd06-lung_N.nii.gz: 0/1 lung extracted from the CT, 2 tumor (MSD value 1)
  kits23/dataset/case_NNNNN/{imaging,segmentation}.nii.gz          (--dataset kits)
      -> label/kits-case_NNNNN.nii.gz: 1 kidney (KiTS 1, and cysts 3: benign, not the tumor
         class), 2 tumor (KiTS 2). Every KiTS case has a tumor: these are validation cases.
  TotalSegmentator/labelsTr/NAME.nii.gz (label map of the "total" task, e.g. the output of
  TotalSegmentator --ml) + TotalSegmentator/imagesTr/NAME.nii.gz
      --dataset totalseg_liver (5 -> 1), totalseg_pancreas (7 -> 1), totalseg_kidney (2, 3 -> 1),
      totalseg_lung (lobes 10-14 -> 1), totalseg_multi (FreeTumor: liver 5 -> 1, pancreas
      7 -> 3, kidneys 2, 3 -> 5) -> label/ts-<preset>-NAME.nii.gz

Outputs are uint8 with the source label's affine and header, written atomically; sources are
only read. Existing outputs are skipped (--overwrite redoes them). A case whose organ is
missing or empty is NOT written (it would be a healthy case without organ) and is reported.
``label/manifest.json`` records, for every output, its image and source, so that
``python -m datafolds.make_datafolds`` can pair labels with images (also for generic
datasets), and remembers the cases that produced no output so a re-run does not read them
again. The final report lists every case with a problem (organ missing or empty, unexpected
label values, missing image, image/label geometry mismatch, unreadable file).

Exit status: 0 when every source could be read (cases not written on purpose, e.g. an
empty organ or a tumor case, are reported; the data checker ``scripts/check_data.py`` is the
gate before training); 1 when any source or image was unreadable or a broken link (what
could be converted is still written, and the report lists each one); 2 on a usage error or
when a dataset named with --dataset is missing.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from labelfree.io.atomic import atomic_path, save_nifti_atomic, write_json_atomic
from labelfree.data.labels import (
    CONVERTED_LABEL_DIR,
    IMAGE_DRIVEN,
    LAYOUTS,
    MANIFEST_NAME,
    TOTALSEG_MAPS,
    DatasetLayout,
    as_integer_labels,
    extract_lung_mask,
    label_value_counts,
    list_nifti_files,
    map_label_values,
    parse_label_map,
    read_manifest,
    tumor_values,
)
from labelfree.io.formats import ReaderError, case_name, image_format, natural_key
from labelfree.io.output_dir import check_output_dir
from labelfree.io.readers import compare_grids, read_geometry, read_volume, same_grid
from labelfree.runtime.cli_errors import exits_on

# Tumor-free LiTS cases listed by the original project; compared with what the data say.
ORIGINAL_LITS_TUMOR_FREE = (32, 34, 38, 41, 47, 89, 91, 105, 106, 114, 115)
LIVER_SOURCE_VALUE = 6  # BTCV numbering: 1 spleen, 2/3 kidneys, 6 liver, 11 pancreas, ...
BTCV_VALUES = frozenset(range(14))  # 13 organs + background
LITS_VALUES = frozenset({0, 1, 2})
MULTI_ORGAN_DATASETS = ("btcv", "tcia", "generic")
# What converting a damaged or odd case raises: every read goes through labelfree.io.readers,
# which names the file in a ReaderError (truncated gzip, not a NIfTI, not 3D); non-integer
# labels (LabelError, a ValueError); the file system (OSError: a folder that cannot be listed).
READ_ERRORS = (OSError, ReaderError, ValueError)
#: TotalSegmentator "total" task: 117 classes + background.
TOTALSEG_VALUES = frozenset(range(118))
KITS_VALUES = frozenset({0, 1, 2, 3})


@dataclass
class Conversion:
    """What a converter made of one case.

    Attributes:
        label: (H, W, D) uint8 converted label, or ``None`` when nothing is written.
        reason: why nothing is written (``label`` is ``None``).
        tumor_case: nothing is written because the case has a tumor (a validation case).
        problems: issues the user must look at (reported at the end).
        info: neutral remarks (e.g. "lung extracted from the CT").
    """

    label: np.ndarray | None
    reason: str = ""
    problems: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    tumor_case: bool = False


@dataclass
class CaseOutcome:
    """One line of the final report."""

    dataset: str
    source: str
    output: str | None
    status: str  # written | would write | exists | not written | unreadable
    reason: str = ""
    problems: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    tumor_case: bool = False


@dataclass
class Settings:
    """Conversion options shared by all datasets of a run."""

    label_map: dict[int, int] | None
    lung_labels: tuple[int, ...]
    nodule_label: int
    lndb_agreement: int = 1

    def key(self, dataset: str) -> str:
        """The part of the settings that changes the result for ``dataset`` (cache key)."""
        if dataset in MULTI_ORGAN_DATASETS:
            mapping = self.label_map or {LIVER_SOURCE_VALUE: 1}
            return "map=" + ",".join(f"{s}:{d}" for s, d in sorted(mapping.items()))
        if dataset in ("chest", "lndb"):
            return f"lung={','.join(map(str, self.lung_labels))};nodule={self.nodule_label}"
        if dataset == "lndb_mhd":
            return f"agreement={self.lndb_agreement}"
        return ""


def get_args_parser() -> argparse.ArgumentParser:
    dataset_lines = "\n".join(
        f"  {name:10s} labels {layout.label_dir}, images {layout.image_dir}\n  {'':10s} {layout.description}"
        for name, layout in LAYOUTS.items()
    )
    notes = textwrap.fill(
        "Outputs: uint8 labels with the source's affine and header in DATA_PATH/label/, written atomically; "
        "sources are only read; existing outputs are skipped; a case whose organ is missing or empty is "
        "reported, not written; label/manifest.json pairs each output with its image for "
        "datafolds/make_datafolds.py. Chest CT without a lung label: the lung is extracted from the CT, "
        "APPROXIMATELY (HU < -400 inside the body, outside air removed, the two largest components kept, "
        "holes filled).", width=100)
    parser = argparse.ArgumentParser(
        description="Convert public datasets' labels into 0/1 organ labels (and 0/1/2 for chest nodule "
        "cases) in DATA_PATH/label/, under the original project's file names.",
        epilog=f"Datasets (folder names relative to --data_path):\n{dataset_lines}\n"
        "  generic    any other folder: --src_dir, --image_dir, --prefix and --map are required\n\n"
        f"{notes}\n\n"
        "Example: python transfer_label.py --data_path data --dataset generic --src_dir 07_AMOS/labelsTr "
        "--image_dir 07_AMOS/imagesTr --prefix amos- --map 6:1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data_path", required=True, type=str, help="data root holding the dataset folders")
    parser.add_argument(
        "--dataset", action="append", choices=[*LAYOUTS, "generic"], default=None,
        help="convert only this dataset (repeatable). Without it, every dataset folder present is converted "
        "and the missing ones are listed; a dataset named here must exist",
    )
    parser.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    parser.add_argument("--dry_run", action="store_true", help="read and report, write nothing")

    relabel = parser.add_argument_group("relabelling")
    relabel.add_argument(
        "--map", action="append", default=None, metavar="SRC:DST",
        help="label value mapping (repeatable, e.g. --map 6:1 --map 11:3); unmapped values become 0. "
        "Required for generic; replaces the default 6:1 of btcv and tcia",
    )
    relabel.add_argument(
        "--lung_label", type=int, action="append", default=None, metavar="V",
        help="value(s) of the lung in chest/LNDb source labels (repeatable; default 1)",
    )
    relabel.add_argument("--nodule_label", type=int, default=2, help="value of nodules in LNDb source labels")
    relabel.add_argument("--lndb_agreement", type=int, default=1, metavar="N",
                         help="lndb_mhd: a voxel is nodule when at least N radiologists' masks mark it (default 1)")

    generic = parser.add_argument_group("generic dataset (--dataset generic)")
    generic.add_argument("--src_dir", type=str, help="label folder, relative to --data_path")
    generic.add_argument("--image_dir", type=str, help="image folder, relative to --data_path")
    generic.add_argument("--prefix", type=str, help="prefix of the outputs in label/, e.g. amos-")
    generic.add_argument("--pattern", type=str, default=None, help="glob of the label files (default *.nii.gz)")
    generic.add_argument(
        "--image_rename", type=str, default=None, metavar="OLD:NEW",
        help="image file name = label file name with OLD replaced by NEW once (default: same name)",
    )
    generic.add_argument(
        "--organ", choices=("liver", "lung"), default=None,
        help="organ of the converted labels (default liver), used by make_datafolds --organ to pick them",
    )
    return parser


@exits_on(ValueError)
def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    root = Path(args.data_path)
    if not root.is_dir():
        raise ValueError(f"--data_path {root} is not a directory")
    settings = Settings(
        label_map=parse_label_map(args.map) if args.map else None,
        lung_labels=tuple(args.lung_label or (1,)),
        nodule_label=args.nodule_label,
        lndb_agreement=args.lndb_agreement,
    )
    if args.lndb_agreement < 1:
        raise ValueError(f"--lndb_agreement must be at least 1, got {args.lndb_agreement}")
    layouts = select_layouts(root, args)
    if not layouts:
        raise ValueError(f"no dataset folder found in {root} (expected any of: "
                         f"{', '.join(layout.folder for layout in LAYOUTS.values())})")
    if not args.dry_run:  # writable: told before any label is read
        check_output_dir(root / CONVERTED_LABEL_DIR)

    manifest = read_manifest(root, warn=lambda msg: print(f"warning: {msg}; it will be rebuilt", file=sys.stderr))
    outcomes: list[CaseOutcome] = []
    for layout in layouts:
        outcomes.extend(convert_dataset(root, layout, settings, manifest, args.overwrite, args.dry_run))
    if not args.dry_run:
        write_json_atomic(root / CONVERTED_LABEL_DIR / MANIFEST_NAME, manifest)
    print(format_report(outcomes, args.dry_run))
    unreadable = [o for o in outcomes if o.status == "unreadable"]
    if unreadable:
        print(f"\nexit status 1: {len(unreadable)} source(s) could not be read (listed above); the others were "
              f"{'checked' if args.dry_run else 'converted'}", file=sys.stderr)
        return 1
    return 0


def select_layouts(root: Path, args: argparse.Namespace) -> list[DatasetLayout]:
    """Datasets to convert: the ones named (which must exist) or every one present.

    Raises:
        ValueError: a named dataset is missing, generic options are incomplete, or --map is
            given without a dataset it applies to.
    """
    generic_flags = {"--src_dir": args.src_dir, "--image_dir": args.image_dir, "--prefix": args.prefix,
                     "--pattern": args.pattern, "--image_rename": args.image_rename, "--organ": args.organ}
    given = [flag for flag, value in generic_flags.items() if value is not None]
    if given and "generic" not in (args.dataset or ()):
        raise ValueError(f"{', '.join(given)} only apply to --dataset generic")
    if args.dataset:
        names = list(dict.fromkeys(args.dataset))
        layouts = []
        for name in names:
            layout = generic_layout(args) if name == "generic" else LAYOUTS[name]
            if not (root / layout.source_dir).is_dir():
                raise ValueError(f"dataset {name}: folder {root / layout.source_dir} not found")
            layouts.append(layout)
    else:
        layouts = [layout for layout in LAYOUTS.values() if (root / layout.source_dir).is_dir()]
        missing = [f"{layout.name} ({layout.source_dir})" for layout in LAYOUTS.values() if layout not in layouts]
        if missing:
            print(f"not found in {root}, skipped: {', '.join(missing)}")
    if args.map and not any(layout.name in MULTI_ORGAN_DATASETS for layout in layouts):
        raise ValueError(f"--map applies to {', '.join(MULTI_ORGAN_DATASETS)}; none of them is converted")
    return layouts


def generic_layout(args: argparse.Namespace) -> DatasetLayout:
    missing = [flag for flag, value in (("--src_dir", args.src_dir), ("--image_dir", args.image_dir),
                                        ("--prefix", args.prefix), ("--map", args.map)) if not value]
    if missing:
        raise ValueError(f"--dataset generic needs {', '.join(missing)}")
    rename = None
    if args.image_rename:
        if ":" not in args.image_rename:
            raise ValueError(f"--image_rename {args.image_rename!r}: expected OLD:NEW")
        old, new = args.image_rename.split(":", 1)
        rename = (old, new)
    prefix = args.prefix
    known = {layout.prefix for layout in LAYOUTS.values()}
    if prefix in known:
        raise ValueError(f"--prefix {prefix!r} is used by a built-in dataset; choose another one")
    return DatasetLayout(
        "generic", args.src_dir, args.src_dir, args.image_dir, prefix, args.organ or "liver", rename,
        f"labels in {args.src_dir} relabelled with --map", pattern=args.pattern or "*.nii.gz",
    )


# --------------------------------------------------------------------------- conversion


def convert_dataset(
    root: Path, layout: DatasetLayout, settings: Settings, manifest: dict, overwrite: bool, dry_run: bool
) -> list[CaseOutcome]:
    """Convert every case of one dataset; return one outcome per case."""
    from tqdm import tqdm

    out_dir = root / CONVERTED_LABEL_DIR
    cases = list_cases(root, layout)
    if not cases:
        print(f"{layout.name}: no {layout.pattern} file in {root / layout.source_dir}")
    # A broken link is not a file, so the listing above leaves it out: report it instead.
    outcomes = [CaseOutcome(layout.name, relative(link, root), None, "unreadable", "",
                            [f"broken link: {link} -> {os.readlink(link)}"])
                for link in broken_links(root / layout.source_dir, layout.pattern)]
    settings_key = settings.key(layout.name)
    for source_name, source, image in tqdm(cases, desc=layout.name, unit="case"):
        out_name = layout.converted_name(nifti_name(source_name))
        source_rel = relative(source, root)
        inputs = [p for p in (source, image, *extra_inputs(layout, image)) if p is not None and p.is_file()]
        entry = {"dataset": layout.name, "organ": layout.organ, "image": relative(image, root), "source": source_rel}

        if (out_dir / out_name).exists() and not overwrite:
            # Outputs of the original script (or copied by hand) have no manifest entry yet.
            recorded = manifest["outputs"].setdefault(out_name, {**entry, "has_tumor": None})
            outcomes.append(CaseOutcome(layout.name, source_rel, out_name, "exists", "",
                                        list(recorded.get("problems", [])), list(recorded.get("info", []))))
            continue
        cached = manifest["not_written"].get(source_rel)
        if (not overwrite and cached and cached.get("settings") == settings_key
                and cached.get("fingerprint") == fingerprint(inputs, root)):
            outcomes.append(CaseOutcome(layout.name, source_rel, None, "not written", cached["reason"],
                                        list(cached["problems"]), list(cached["info"]), cached["tumor_case"]))
            continue

        if image is not None and image.is_symlink() and not image.exists():
            outcomes.append(CaseOutcome(layout.name, source_rel, None, "unreadable", "",
                                        [f"image is a broken link: {image} -> {os.readlink(image)}"]))
            continue
        try:
            conversion, source_img = convert_case(layout, source, image, settings)
        except READ_ERRORS as e:
            outcomes.append(CaseOutcome(layout.name, source_rel, None, "unreadable", "",
                                        [f"cannot read {source_rel}: {type(e).__name__}: {e}"]))
            continue
        notes = {"problems": conversion.problems, "info": conversion.info}
        if conversion.label is None:
            outcomes.append(CaseOutcome(layout.name, source_rel, None, "not written", conversion.reason,
                                        conversion.problems, conversion.info, conversion.tumor_case))
            if not dry_run:
                manifest["not_written"][source_rel] = {
                    **entry, **notes, "reason": conversion.reason, "tumor_case": conversion.tumor_case,
                    "settings": settings_key, "fingerprint": fingerprint(inputs, root),
                }
            continue
        if not dry_run:
            save_label_like(conversion.label, source_img, out_dir / out_name)
            has_tumor = bool(np.isin(conversion.label, tumor_values()).any())
            manifest["outputs"][out_name] = {**entry, **notes, "has_tumor": has_tumor}
            manifest["not_written"].pop(source_rel, None)
        outcomes.append(CaseOutcome(layout.name, source_rel, out_name, "would write" if dry_run else "written",
                                    "", conversion.problems, conversion.info))
    return outcomes


def broken_links(folder: Path, pattern: str) -> list[Path]:
    """Symbolic links in ``folder`` matching ``pattern`` whose target does not exist."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(pattern) if p.is_symlink() and not p.exists() and not p.name.startswith("."))


def list_cases(root: Path, layout: DatasetLayout) -> list[tuple[str, Path, Path | None]]:
    """(source name, source file, image file) of every case of a dataset.

    Label-driven datasets list their label files; the chest datasets list their images
    because a healthy chest CT may come without a lung label (the source is then the image).
    """
    if layout.name == "kits":  # one folder per case
        folders = sorted((d for d in (root / layout.label_dir).glob(layout.pattern) if d.is_dir()),
                         key=lambda d: natural_key(d.name))
        return [(f"{d.name}.nii.gz", d / "segmentation.nii.gz", d / "imaging.nii.gz") for d in folders
                if (d / "segmentation.nii.gz").is_file()]
    if layout.source_dir == layout.image_dir:
        cases = []
        for image in list_nifti_files(root / layout.image_dir, layout.pattern):
            label = root / layout.label_dir / image.name
            cases.append((image.name, label if label.is_file() else image, image))
        return cases
    return [(p.name, p, root / layout.image_path(p.name))
            for p in list_nifti_files(root / layout.label_dir, layout.pattern)]


def convert_case(layout: DatasetLayout, source: Path, image: Path | None, settings: Settings):
    """Read one case and convert it with the rule of its dataset.

    Returns:
        (Conversion, the ``labelfree.io.readers.Volume`` whose grid (and NIfTI header) the output keeps).
    """
    is_image_only = layout.name in IMAGE_DRIVEN and source == image
    source_volume = read_volume(source)
    problems: list[str] = []
    if layout.name == "lndb_mhd":
        label, problems = count_reader_masks(lndb_masks(source), source_volume)
    else:
        label = None if is_image_only else as_integer_labels(source_volume.array, str(source))
    geometry_problems = check_image_geometry(source_volume, image) if not is_image_only else []

    def load_image_hu() -> np.ndarray:
        # HU (NIfTI scaling, DICOM rescale applied); read only when needed.
        return source_volume.array if source == image else read_volume(image).array

    converter = CONVERTERS[layout.name]
    conversion = converter(label, load_image_hu, settings, source.name)
    conversion.problems = geometry_problems + problems + conversion.problems
    return conversion, source_volume


def nifti_name(source_name: str) -> str:
    """Output file name of a source: NIfTI names are kept, other formats become ``<case>.nii.gz``."""
    return source_name if image_format(source_name) == "nifti" else f"{case_name(source_name)}.nii.gz"


def lndb_masks(image: Path) -> list[Path]:
    """``LNDb/masks/LNDb-NNNN_radR.mhd`` of the CT ``LNDb/data/LNDb-NNNN.mhd``, by reader number."""
    masks = (image.parent.parent / "masks").glob(f"{case_name(image.name)}_rad*.mhd")
    return sorted(masks, key=lambda p: natural_key(p.name))


def extra_inputs(layout: DatasetLayout, image: Path | None) -> list[Path]:
    """Inputs besides the source and the image (they invalidate a cached outcome too)."""
    if layout.name == "lndb_mhd" and image is not None:
        return lndb_masks(image)
    return []


def count_reader_masks(masks: Sequence[Path], image) -> tuple[np.ndarray | None, list[str]]:
    """Per voxel, how many radiologists' masks mark a nodule (any id > 0) there, on the CT's grid.

    Returns:
        (uint8 counts, or ``None`` without any usable mask; problems: masks on another grid,
        unreadable masks).
    """
    counts, problems = None, []
    for mask_path in masks:
        try:
            mask = read_volume(mask_path)
        except ReaderError as e:
            problems.append(f"mask unreadable, left out: {e}")
            continue
        if not same_grid(mask, image):
            problems.append(f"mask {mask_path.name} is not on the CT's voxel grid: left out")
            continue
        marked = (np.asarray(mask.array) > 0).astype(np.uint8)
        counts = marked if counts is None else counts + marked
    return counts, problems


def check_image_geometry(label_volume, image: Path | None) -> list[str]:
    """Problems between a label and its image (NIfTI: from the headers only, fast).

    Both affines are RAS (``labelfree.io.readers``), so an ``.nrrd`` label of a DICOM image
    compares like two NIfTI files.
    """
    if image is None or not (image.is_file() or image.is_dir()):
        return [f"image missing: {image}"]
    try:
        image_geometry = read_geometry(image)
    except ReaderError as e:
        return [f"image unreadable: {e}"]
    comparison = compare_grids(image_geometry, label_volume)
    problems = []
    if not comparison.same_shape:
        problems.append(f"shape mismatch: image {comparison.shape_a} vs label {comparison.shape_b}")
    if not comparison.same_affine:
        problems.append(f"affine mismatch with the image (max difference {comparison.affine_difference_mm:.4g} mm)")
    return problems


def convert_multi_organ(label, load_image_hu, settings: Settings, name: str, expected=BTCV_VALUES) -> Conversion:
    """BTCV, TCIA and generic: relabel through the value map (default liver 6 -> 1)."""
    mapping = settings.label_map or {LIVER_SOURCE_VALUE: 1}
    counts = label_value_counts(label)
    problems = []
    if expected is not None:
        unexpected = sorted(set(counts) - set(expected))
        if unexpected:
            problems.append(f"unexpected label values {unexpected}")
    absent = [src for src in mapping if mapping[src] != 0 and counts.get(src, 0) == 0]
    converted = map_label_values(label, mapping)
    if not converted.any():
        return Conversion(None, "organ missing",
                          problems + [f"organ missing: no voxel of source value(s) {sorted(mapping)}"])
    if absent:
        problems.append(f"source value(s) {absent} absent (mapped organs missing)")
    return Conversion(converted, problems=problems)


def convert_generic(label, load_image_hu, settings: Settings, name: str) -> Conversion:
    # The values of an arbitrary dataset are unknown: only non-integer values (LabelError) are flagged.
    return convert_multi_organ(label, load_image_hu, settings, name, expected=None)


def convert_binary_mask(label, load_image_hu, settings: Settings, name: str) -> Conversion:
    """CHAOS: binary liver masks, stored as 0/1 or 0/255."""
    counts = label_value_counts(label)
    problems, info = [], []
    values = set(counts)
    if values <= {0, 255} and 255 in values:
        info.append("mask stored as 0/255, written as 0/1")
    elif not values <= {0, 1}:
        problems.append(f"unexpected label values {sorted(values - {0})} (expected 0/1); every non-zero voxel "
                        "taken as liver")
    mask = (label != 0).astype(np.uint8)
    if not mask.any():
        return Conversion(None, "organ empty", problems + ["organ empty: the liver mask has no voxel"], info)
    return Conversion(mask, problems=problems, info=info)


def convert_tumor_free(label, load_image_hu, settings: Settings, name: str, original_list=()) -> Conversion:
    """LiTS / MSD Task03: a tumor-free case (no voxel of value 2) becomes a healthy 0/1 label."""
    counts = label_value_counts(label)
    problems, info = [], []
    unexpected = sorted(set(counts) - LITS_VALUES)
    if unexpected:
        problems.append(f"unexpected label values {unexpected} (expected 0/1/2)")
    case_number = lits_case_number(name)
    listed = case_number is not None and case_number in original_list
    tumor = counts.get(2, 0)
    if tumor:
        if listed:
            problems.append(f"listed tumor-free by the original project but has {tumor} tumor voxels; "
                            "kept as a tumor case")
        return Conversion(None, f"tumor case ({tumor} tumor voxels): stays a validation case", problems, info,
                          tumor_case=True)
    if counts.get(1, 0) == 0:
        return Conversion(None, "organ empty", problems + ["organ empty: no liver voxel (value 1)"], info)
    if original_list and not listed:
        info.append("tumor-free (found in the data; not in the original project's list)")
    return Conversion((label == 1).astype(np.uint8), problems=problems, info=info)


def convert_lits(label, load_image_hu, settings: Settings, name: str) -> Conversion:
    return convert_tumor_free(label, load_image_hu, settings, name, ORIGINAL_LITS_TUMOR_FREE)


def lits_case_number(name: str) -> int | None:
    match = re.match(r"liver_(\d+)\.nii(\.gz)?$", name)
    return int(match.group(1)) if match else None


def lung_from_label_or_image(label, load_image_hu, settings: Settings) -> tuple[np.ndarray, list[str]]:
    """Lung mask from the lung values of ``label``, else extracted from the CT (approximate)."""
    if label is not None:
        lung = np.isin(label, settings.lung_labels)
        if lung.any():
            return lung, []
        note = f"no lung value {list(settings.lung_labels)} in the label: "
    else:
        note = "no lung label: "
    lung = extract_lung_mask(load_image_hu())
    return lung, [note + "lung extracted from the CT by threshold (approximate)"]


def convert_chest(label, load_image_hu, settings: Settings, name: str) -> Conversion:
    """Healthy chest CT: 0/1 lung."""
    lung, info = lung_from_label_or_image(label, load_image_hu, settings)
    if not lung.any():
        return Conversion(None, "organ empty", ["organ empty: no lung found"], info)
    return Conversion(lung.astype(np.uint8), info=info)


def convert_lndb(label, load_image_hu, settings: Settings, name: str) -> Conversion:
    """Chest CT with nodules: 0/1 lung/2 nodule (nodules take precedence over lung)."""
    if label is None:
        return Conversion(None, "no nodule label", ["no nodule label file for this image"])
    known = {0, settings.nodule_label, *settings.lung_labels}
    counts = label_value_counts(label)
    problems = []
    unexpected = sorted(set(counts) - known)
    if unexpected:
        problems.append(f"unexpected label values {unexpected} (expected {sorted(known)})")
    lung, info = lung_from_label_or_image(label, load_image_hu, settings)
    nodule = label == settings.nodule_label
    if not lung.any():
        return Conversion(None, "organ empty", problems + ["organ empty: no lung found"], info)
    out = lung.astype(np.uint8)
    out[nodule] = 2
    if not nodule.any():
        info.append("no nodule voxel: written as a healthy lung label")
    return Conversion(out, problems=problems, info=info)


def convert_lndb_mhd(label, load_image_hu, settings: Settings, name: str) -> Conversion:
    """LNDb as distributed: ``label`` = per voxel, how many radiologists marked a nodule.

    Nodule (2) where at least ``settings.lndb_agreement`` of them did, in a lung (1) extracted
    from the CT; nodules take precedence over lung.
    """
    if label is None:
        return Conversion(None, "no nodule mask", ["no usable radiologist mask (masks/NAME_radR.mhd) for this CT"])
    nodule = label >= settings.lndb_agreement
    lung = extract_lung_mask(load_image_hu())
    info = [f"up to {int(label.max())} radiologist(s) per voxel; nodule where >= {settings.lndb_agreement}",
            "lung extracted from the CT by threshold (approximate)"]
    if not lung.any():
        return Conversion(None, "organ empty", ["organ empty: no lung found"], info)
    out = lung.astype(np.uint8)
    out[nodule] = 2
    if not nodule.any():
        info.append("no nodule voxel: written as a healthy lung label")
    return Conversion(out, info=info)


def convert_msd_lung(label, load_image_hu, settings: Settings, name: str) -> Conversion:
    """MSD Task06 Lung: 0/1 tumor only; lung (1) extracted from the CT, tumor -> 2."""
    counts = label_value_counts(label)
    problems = []
    unexpected = sorted(set(counts) - {0, 1})
    if unexpected:
        problems.append(f"unexpected label values {unexpected} (expected 0/1 tumor)")
    lung = extract_lung_mask(load_image_hu())
    info = ["lung extracted from the CT by threshold (approximate)"]
    if not lung.any():
        return Conversion(None, "organ empty", problems + ["organ empty: no lung found"], info)
    out = lung.astype(np.uint8)
    out[label == 1] = 2
    return Conversion(out, problems=problems, info=info)


def convert_kits(label, load_image_hu, settings: Settings, name: str) -> Conversion:
    """KiTS: 1 kidney, 2 tumor, 3 cyst -> the kidney profile's 1 kidney (cysts included), 2 tumor."""
    counts = label_value_counts(label)
    problems = []
    unexpected = sorted(set(counts) - KITS_VALUES)
    if unexpected:
        problems.append(f"unexpected label values {unexpected} (expected 0-3)")
    converted = map_label_values(label, {1: 1, 2: 2, 3: 1})
    if not (converted == 1).any():
        return Conversion(None, "organ empty", problems + ["organ empty: no kidney voxel (value 1 or 3)"])
    info = [f"{counts[3]} cyst voxels counted as kidney"] if counts.get(3) else []
    return Conversion(converted, problems=problems, info=info)


def totalseg_converter(preset: str) -> Callable[..., Conversion]:
    """TotalSegmentator label maps relabelled with :data:`labelfree.data.labels.TOTALSEG_MAPS` ``[preset]``."""

    def convert(label, load_image_hu, settings: Settings, name: str) -> Conversion:
        fixed = Settings({**TOTALSEG_MAPS[preset]}, settings.lung_labels, settings.nodule_label)
        return convert_multi_organ(label, load_image_hu, fixed, name, expected=TOTALSEG_VALUES)

    return convert


CONVERTERS: dict[str, Callable[..., Conversion]] = {
    "lndb_mhd": convert_lndb_mhd,
    "msd_lung": convert_msd_lung,
    "kits": convert_kits,
    **{f"totalseg_{preset}": totalseg_converter(preset) for preset in TOTALSEG_MAPS},
    "btcv": convert_multi_organ,
    "tcia": convert_multi_organ,
    "generic": convert_generic,
    "chaos": convert_binary_mask,
    "lits": convert_lits,
    "msd_liver": convert_tumor_free,
    "chest": convert_chest,
    "lndb": convert_lndb,
}


# --------------------------------------------------------------------------- files


def save_label_like(label: np.ndarray, source_img, path: Path) -> None:
    """Save ``label`` as uint8 NIfTI with the affine (and NIfTI header) of ``source_img``, atomically.

    ``labelfree.io.atomic.save_nifti_atomic`` would reset the qform/sform codes; for a NIfTI source
    its header (codes, units, description) is kept, only the data type changes. Other formats
    (``header`` None) get a fresh header carrying the reader's RAS affine.
    """
    import nibabel as nib

    if getattr(source_img, "header", None) is None:
        save_nifti_atomic(label, source_img.affine, path, dtype=np.uint8)
        return
    header = source_img.header.copy()
    header.set_data_dtype(np.uint8)
    img = nib.Nifti1Image(label.astype(np.uint8, copy=False), source_img.affine, header=header)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def fingerprint(paths: Sequence[Path], root: Path) -> list:
    """(path, size, mtime) of the inputs: a changed file invalidates a cached outcome."""
    prints = []
    for p in paths:
        st = os.stat(p)
        prints.append([relative(p, root), st.st_size, st.st_mtime_ns])
    return prints


def relative(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # another drive on Windows
        return str(path)


# --------------------------------------------------------------------------- report


def format_report(outcomes: list[CaseOutcome], dry_run: bool) -> str:
    """Per-dataset counts, then every case with a problem or a remark."""
    lines = ["", "transfer_label report" + (" (dry run: nothing written)" if dry_run else "")]
    datasets = list(dict.fromkeys(o.dataset for o in outcomes))
    for name in datasets:
        mine = [o for o in outcomes if o.dataset == name]
        counts: dict[str, int] = {}
        for o in mine:
            counts[o.status] = counts.get(o.status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in counts.items())
        lines.append(f"  {name}: {len(mine)} case(s): {summary}")
        tumor_cases = sum(1 for o in mine if o.tumor_case)
        if tumor_cases:
            lines.append(f"    {tumor_cases} tumor case(s) left as validation cases")
    if any(o.status == "exists" for o in outcomes):
        lines.append("  existing outputs were skipped (--overwrite redoes them)")
    flagged = [o for o in outcomes if o.problems or o.status == "unreadable"]
    if flagged:
        lines.append(f"\n{len(flagged)} case(s) with problems:")
        for o in flagged:
            written = f" -> {o.output}" if o.output else " (not written)"
            lines.append(f"  [{o.dataset}] {o.source}{written}")
            lines.extend(f"      - {p}" for p in o.problems)
    else:
        lines.append("\nno problem found")
    remarks = [o for o in outcomes if o.info]
    if remarks:
        lines.append(f"\n{len(remarks)} case(s) with remarks:")
        for o in remarks:
            lines.append(f"  [{o.dataset}] {o.source}: " + "; ".join(o.info))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
