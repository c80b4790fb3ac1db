"""Build the original-style datalists from a data root.

Run ``transfer_label.py`` first, then::

    python -m datafolds.make_datafolds --data_root /data/liver --k 5 --seed 0
    python datafolds/make_datafolds.py --data_root /data/chest --organ lung

``--organ liver`` writes to ``--out_dir`` (default ``DATA_ROOT/datafolds``):

* ``healthy.json``: training = every healthy case (converted labels in ``label/``:
  BTCV, TCIA, CHAOS, tumor-free LiTS/MSD, generic datasets), validation = every real tumor
  case (LiTS ``04_LiTS``, or MSD ``Task03_Liver`` with ``--real_dataset msd_liver``);
* ``real_0.json .. real_{k-1}.json``: k folds of the real tumor cases, split by patient
  (``--patient_regex``), tumor-free cases of the real dataset always in training;
* ``mix_0.json ..``: healthy + the training part of ``real_i``; validation of ``real_i``.

``--organ lung`` writes ``chest.json``: training = healthy chest CTs (``label/chest-*``, or
``05_Chest/label/NAME`` where no converted label exists), validation = chest CTs with
nodules (``label/lndb-*``, or ``06_LNDb/label/NAME``).

Paths are relative to the data root (pass it as ``--train_dir`` and ``--val_dir``). Cases are
paired with their images through ``label/manifest.json`` (written by transfer_label.py) or,
for labels converted by the original project's script, through the file-name rules of
:data:`labelfree.data.labels.LAYOUTS`. A real case never converted by transfer_label.py is read once
to tell tumor cases from tumor-free ones. Cases whose image is missing are left out and
listed. Existing datalists with different content are only replaced with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from labelfree.data.folds import (
    decathlon_datalist,
    healthy_lists,
    mix_fold_lists,
    patient_of_image,
    real_fold_lists,
    shared_patients,
    sort_cases,
    split_by_patient,
)
from labelfree.io.atomic import write_json_atomic
from labelfree.io.output_dir import check_output_dir
from labelfree.io.readers import UnreadableError, read_volume
from labelfree.data.labels import (
    CONVERTED_LABEL_DIR,
    LAYOUTS,
    as_integer_labels,
    label_value_counts,
    layout_of_converted,
    list_nifti_files,
    read_manifest,
)
from labelfree.runtime.cli_errors import exits_on


@dataclass
class Discovery:
    """Cases found below a data root, and what was left out (one line each)."""

    healthy: list[dict]
    tumor: list[dict]
    tumor_free_real: list[dict]
    left_out: list[str]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Build datalists (healthy, real_i, mix_i for the liver; chest for the lung) from a data "
        "root prepared with transfer_label.py. Paths in the lists are relative to the data root.",
    )
    parser.add_argument("--data_root", required=True, type=str, help="data root (later --train_dir/--val_dir)")
    parser.add_argument("--out_dir", type=str, default=None, help="where to write the JSON files "
                        "(default: DATA_ROOT/datafolds)")
    parser.add_argument("--organ", choices=("liver", "lung"), default="liver",
                        help="liver: healthy/real_i/mix_i; lung: chest.json (05_Chest healthy, 06_LNDb nodules)")
    parser.add_argument("--k", type=int, default=5,
                        help="number of real-tumor folds (real_i, mix_i; liver only); 0 writes healthy.json only")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the patient shuffle (same seed, same folds; liver only)")
    parser.add_argument(
        "--patient_regex", type=str, default=None,
        help="regular expression on the image file name whose first group is the patient id (e.g. "
        "'^(case_\\d+)'); default: the file name without extension (one scan per patient). Used for the "
        "folds and for the healthy/tumor patient-overlap warning",
    )
    parser.add_argument("--real_dataset", choices=("lits", "msd_liver"), default=None,
                        help="real tumor cases: 04_LiTS or Task03_Liver (the same scans; never both). "
                        "Default: lits when 04_LiTS/label exists, else msd_liver")
    parser.add_argument("--overwrite", action="store_true", help="replace existing datalists whose content differs")
    return parser


@exits_on(ValueError)
def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    root = Path(args.data_root)
    if not root.is_dir():
        raise ValueError(f"--data_root {root} is not a directory")
    out_dir = Path(args.out_dir) if args.out_dir else root / "datafolds"
    check_output_dir(out_dir, "--out_dir" if args.out_dir else None)  # writable: told before any label is read
    patient_of = patient_of_image(args.patient_regex)
    if args.organ == "liver":
        found = discover_liver(root, args.real_dataset)
        datalists = build_liver_datalists(found, args.k, args.seed, patient_of, args.patient_regex)
    else:
        found = discover_lung(root)
        datalists = build_lung_datalists(found)

    print(f"{root}: {len(found.healthy)} healthy case(s), {len(found.tumor)} tumor case(s)"
          + (f", {len(found.tumor_free_real)} tumor-free real case(s)" if found.tumor_free_real else ""))
    if found.left_out:
        print("left out:")
        for line in found.left_out:
            print(f"  - {line}")
    # Healthy scans come from other datasets, whose names the regex need not match.
    leaks = shared_patients(found.healthy, found.tumor, patient_of_image(args.patient_regex, strict=False))
    if leaks:
        print(f"warning: patient(s) {sorted(leaks)} have healthy and tumor scans: they are in training and "
              "validation of healthy.json/chest.json")
    if not found.tumor:
        print("warning: no tumor case found: the validation lists are empty")
    return write_datalists(datalists, out_dir, args.overwrite)


# --------------------------------------------------------------------------- discovery


def discover_liver(root: Path, real_dataset: str | None) -> Discovery:
    """Healthy liver cases (converted labels) and the real tumor cases of LiTS or MSD."""
    manifest = read_manifest(root, warn=lambda msg: print(f"warning: {msg}", file=sys.stderr))
    healthy, left_out = converted_cases(root, "liver", manifest)
    if real_dataset is None:
        real_dataset = "lits" if (root / LAYOUTS["lits"].label_dir).is_dir() else "msd_liver"
    elif not (root / LAYOUTS[real_dataset].label_dir).is_dir():
        raise ValueError(f"--real_dataset {real_dataset}: folder {root / LAYOUTS[real_dataset].label_dir} not found")
    layout = LAYOUTS[real_dataset]
    tumor, tumor_free = [], []
    if (root / layout.label_dir).is_dir():
        tumor, tumor_free, more_left_out = real_cases(root, layout, manifest)
        left_out += more_left_out
    return Discovery(healthy, tumor, tumor_free, left_out)


def discover_lung(root: Path) -> Discovery:
    """Healthy chest cases and nodule cases; converted labels first, the dataset's own labels else."""
    manifest = read_manifest(root, warn=lambda msg: print(f"warning: {msg}", file=sys.stderr))
    converted, left_out = converted_cases(root, "lung", manifest)
    healthy, nodules = [], []
    for case in converted:
        (nodules if case.pop("has_tumor") else healthy).append(case)
    covered = {c["image"] for c in converted}
    # Roots whose chest labels are already 0/1 (lung) and 0/1/2 (lung/nodule), like the
    # phantom root, need no conversion: their own label folders are used.
    for name, target in (("chest", healthy), ("lndb", nodules)):
        layout = LAYOUTS[name]
        for image in list_nifti_files(root / layout.image_dir):
            image_rel = f"{layout.image_dir}/{image.name}"
            if image_rel in covered:
                continue
            label = root / layout.label_dir / image.name
            if label.is_file():
                target.append({"image": image_rel, "label": f"{layout.label_dir}/{image.name}"})
            else:
                left_out.append(f"{image_rel}: no label (run transfer_label.py --dataset {name})")
    return Discovery(sort_cases(healthy), sort_cases(nodules), [], left_out)


def converted_cases(root: Path, organ: str, manifest: dict) -> tuple[list[dict], list[str]]:
    """Cases of the converted labels in ``label/`` that are for ``organ``.

    Returns:
        (cases, left-out lines). Liver cases are healthy (the converted liver labels are
        tumor-free by construction, or marked ``has_tumor`` in the manifest, then left
        out); lung cases carry a ``has_tumor`` key (nodule case or not).
    """
    cases, left_out, unknown = [], [], []
    for path in list_nifti_files(root / CONVERTED_LABEL_DIR):
        label_rel = f"{CONVERTED_LABEL_DIR}/{path.name}"
        record = manifest["outputs"].get(path.name)
        if record is not None:
            image_rel, case_organ, has_tumor = record["image"], record["organ"], record.get("has_tumor")
            dataset = record["dataset"]
        else:
            layout = layout_of_converted(path.name)
            if layout is None:
                unknown.append(path.name)
                continue
            image_rel = layout.image_path(path.name[len(layout.prefix):])
            case_organ, has_tumor, dataset = layout.organ, None, layout.name
        if case_organ != organ:
            continue
        if not (root / image_rel).is_file():
            left_out.append(f"{label_rel}: image {image_rel} missing")
            continue
        if has_tumor is None and dataset == "lndb":
            has_tumor = read_tumor_voxels(path, organ) > 0
        case = {"image": image_rel, "label": label_rel}
        if organ == "lung":
            case["has_tumor"] = bool(has_tumor)
        elif has_tumor:
            left_out.append(f"{label_rel}: holds tumor values; not a healthy case")
            continue
        cases.append(case)
    if unknown:
        # E.g. the phantom root's pancreas-/kidney-/multiorgan- labels: other organs' lists.
        prefixes = sorted({re.match(r"[^\d_]*", name).group(0) or name for name in unknown})
        left_out.append(f"{len(unknown)} label(s) in {CONVERTED_LABEL_DIR}/ of no known dataset and without a "
                        f"manifest entry (names starting {', '.join(prefixes)}): ignored")
    return cases, left_out


def real_cases(root: Path, layout, manifest: dict) -> tuple[list[dict], list[dict], list[str]]:
    """Split the real dataset's cases into tumor cases and tumor-free ones.

    transfer_label.py's manifest says which case is which; a case it has not seen is read.
    """
    from tqdm import tqdm

    converted = set(manifest["outputs"]) | {p.name for p in list_nifti_files(root / CONVERTED_LABEL_DIR)}
    tumor, tumor_free, left_out, unknown = [], [], [], []
    for label in list_nifti_files(root / layout.label_dir):
        image_rel = layout.image_path(label.name)
        case = {"image": image_rel, "label": f"{layout.label_dir}/{label.name}"}
        if not (root / image_rel).is_file():
            left_out.append(f"{case['label']}: image {image_rel} missing")
            continue
        record = manifest["not_written"].get(case["label"])
        if layout.converted_name(label.name) in converted:
            tumor_free.append(case)
        elif record is not None and record.get("tumor_case"):
            tumor.append(case)
        elif record is not None:
            left_out.append(f"{case['label']}: {record.get('reason', 'not converted')}")
        else:
            unknown.append((label, case))
    # LiTS and MSD Task03 store 1 liver, 2 tumor: the liver profile's convention.
    organ_label, tumor_label = single_organ_labels("liver")
    for label, case in tqdm(unknown, desc=f"reading {layout.name} labels", unit="case", disable=not unknown):
        try:
            counts = label_value_counts(read_label(label))
        except UnreadableError as e:  # a damaged file is reported, not fatal
            left_out.append(f"{case['label']}: unreadable ({e.cause})")
            continue
        except Exception as e:  # not 3D, not integer labels
            left_out.append(f"{case['label']}: unreadable ({type(e).__name__}: {e})")
            continue
        if counts.get(tumor_label, 0):
            tumor.append(case)
        elif counts.get(organ_label, 0):
            tumor_free.append(case)
        else:
            left_out.append(f"{case['label']}: no liver voxel")
    return sort_cases(tumor), sort_cases(tumor_free), left_out


def read_label(path: Path) -> np.ndarray:
    """A label map as integers (any scan format, through ``labelfree.io.readers``)."""
    return as_integer_labels(read_volume(path).array, str(path))


def single_organ_labels(organ: str) -> tuple[int, int]:
    """(organ label, tumor label) of ``organ``'s single-organ convention (its organ profile)."""
    from tumor_synthesis.organs import get_organ_profile

    profile = get_organ_profile(organ)
    return profile.organ_label, profile.tumor_label


def read_tumor_voxels(path: Path, organ: str) -> int:
    """Voxels of ``organ``'s tumor label in the label map ``path``."""
    return label_value_counts(read_label(path)).get(single_organ_labels(organ)[1], 0)


# --------------------------------------------------------------------------- datalists


def build_liver_datalists(
    found: Discovery, k: int, seed: int, patient_of, patient_regex: str | None
) -> dict[str, dict]:
    """``{file name: decathlon dict}`` for healthy, real_i and mix_i."""
    if not found.healthy:
        raise ValueError("no healthy case found in label/ (run transfer_label.py first)")
    out = {
        "healthy.json": decathlon_datalist(
            healthy_lists(found.healthy, found.tumor), name="healthy", organ="liver",
            description="healthy scans (synthetic tumors in training); validation: every real tumor case",
        )
    }
    if not found.tumor or k == 0:
        return out
    try:
        folds = split_by_patient(found.tumor, k, np.random.default_rng(seed), patient_of)
    except ValueError as e:
        raise ValueError(f"real-tumor folds: {e} (--k 0 writes healthy.json only)") from e
    reals = real_fold_lists(folds, found.tumor_free_real)
    mixes = mix_fold_lists(found.healthy, reals)
    extra = {"seed": seed, "k": k, "patient_regex": patient_regex}
    for i, (real, mix) in enumerate(zip(reals, mixes)):
        out[f"real_{i}.json"] = decathlon_datalist(
            real, name=f"real_{i}", organ="liver", fold=i, **extra,
            description=f"real tumors, fold {i} of {k} by patient",
        )
        out[f"mix_{i}.json"] = decathlon_datalist(
            mix, name=f"mix_{i}", organ="liver", fold=i, **extra,
            description=f"healthy scans + real tumors of real_{i} training; validation of real_{i}",
        )
    return out


def build_lung_datalists(found: Discovery) -> dict[str, dict]:
    if not found.healthy:
        raise ValueError("no healthy chest case found (05_Chest, or label/chest-* from transfer_label.py)")
    return {
        "chest.json": decathlon_datalist(
            healthy_lists(found.healthy, found.tumor), name="chest", organ="lung",
            description="healthy chest CT (synthetic lesions in training); validation: chest CT with nodules",
        )
    }


def write_datalists(datalists: dict[str, dict], out_dir: Path, overwrite: bool) -> int:
    """Write every list atomically; refuse (exit 1, nothing written) to replace edited files."""
    unchanged, conflicts = set(), []
    for name, data in datalists.items():
        path = out_dir / name
        if path.is_file():
            try:
                same = json.loads(path.read_text()) == data
            except (OSError, json.JSONDecodeError):
                same = False
            if same:
                unchanged.add(name)
            elif not overwrite:
                conflicts.append(str(path))
    if conflicts:
        print("error: these datalists exist with a different content (--overwrite replaces them):\n  "
              + "\n  ".join(conflicts), file=sys.stderr)
        return 1
    for name, data in datalists.items():
        counts = f"{data['numTraining']} training, {data['numValidation']} validation"
        if name in unchanged:
            print(f"unchanged {out_dir / name}: {counts}")
            continue
        write_json_atomic(out_dir / name, data)
        print(f"wrote {out_dir / name}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
