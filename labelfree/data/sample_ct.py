"""Real CT with labels, fetched through pip, as a data root with datalists.

Two public packages ship real CT scans with labels (they are test data of those packages):

* ``totalsegmentator==2.18.0``, source distribution, ``tests/reference_files/``: an
  abdomen-pelvis CT (``example_ct.nii.gz``, 3 mm) with its TotalSegmentator label map
  (``example_seg_fast_force_split.nii.gz``), and a DICOM series (``example_ct_dicom/``, 20
  slices of 512 x 512) with ``example_seg_dicom.nii.gz``;
* ``slicerio==1.4.0``, wheel, ``slicerio/data/``: a chest CT (``CTChest4.nrrd``) with a 3D
  Slicer segmentation (``Segmentation.seg.nrrd``: right lung 5, left lung 6).

``python scripts/fetch_sample_ct.py --out data/real`` downloads both with ``pip download``
into a cache (``--cache``, default ``$LABELFREE_CACHE`` or ``~/.cache/labelfree``; a second
run downloads nothing), and writes::

    data/real/
      totalsegmentator/example_ct.nii.gz       the CT as shipped (NIfTI)
      totalsegmentator/example_ct_dicom/       the DICOM series as shipped
      slicer/CTChest4.nrrd                     the chest CT as shipped (NRRD)
      label/{liver,pancreas,kidney}/example_ct.nii.gz   0/1 organ labels from the TotalSegmentator map
      label/liver/example_ct_dicom.nii.gz      0/1 liver on the DICOM series' voxel grid
      label/lung/CTChest4.nii.gz               0/1 lungs (Slicer segments 5 and 6), NRRD's grid
      datafolds/{liver,pancreas,kidney,lung}.json   datalists (the same cases in both lists)

Labels are NIfTI on their image's exact voxel grid with the image's RAS affine (from
``labelfree.io.readers``), so a DICOM or NRRD image pairs with a NIfTI label. The DICOM label
map shipped by TotalSegmentator lies on another voxel order (one in-plane axis flipped); it
is mapped onto the series' grid through world coordinates, exactly (no interpolation).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from labelfree.io.atomic import save_nifti_atomic, write_json_atomic
from labelfree.io.output_dir import check_output_dir
from labelfree.io.readers import label_on_grid, read_geometry, read_volume
from labelfree.runtime.cli_errors import exits_on

TOTALSEG = ("totalsegmentator", "2.18.0")
SLICERIO = ("slicerio", "1.4.0")
TOTALSEG_FILES = "tests/reference_files/"
#: TotalSegmentator "total" classes (``totalsegmentator/map_to_binary.py``) of each organ profile.
TOTALSEG_ORGANS = {"liver": (5,), "pancreas": (7,), "kidney": (2, 3)}
#: Segment label values of ``Segmentation.seg.nrrd`` (header ``SegmentN_LabelValue``): right lung 5, left lung 6.
SLICER_LUNG = (5, 6)


class FetchError(RuntimeError):
    """The packages cannot be downloaded (no network, no pip) or do not hold the expected files."""


def default_cache() -> Path:
    return Path(os.environ.get("LABELFREE_CACHE") or Path.home() / ".cache" / "labelfree")


def pip_download(name: str, version: str, cache: Path, sdist: bool) -> Path:
    """The package file in ``cache``, downloaded with ``pip download`` unless already there."""
    pattern = f"{name}-{version}.tar.gz" if sdist else f"{name}-{version}-*.whl"
    found = sorted(cache.glob(pattern))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               "-d", str(cache), f"{name}=={version}"]
    if sdist:
        # The CTs live in the source distribution only (the wheel leaves the tests out). pip
        # prepares an sdist's metadata even to download it; with the installed setuptools that
        # takes seconds, in an isolated build environment minutes (its build requirements are
        # downloaded first): try the fast way first.
        attempts = [[*command[:5], "--no-binary", ":all:", "--no-build-isolation", *command[5:]],
                    [*command[:5], "--no-binary", ":all:", *command[5:]]]
    else:
        attempts = [[*command[:5], "--only-binary", ":all:", *command[5:]]]
    for attempt in attempts:
        result = subprocess.run(attempt, capture_output=True, text=True)
        found = sorted(cache.glob(pattern))
        if result.returncode == 0 and found:
            break
    if result.returncode != 0 or not found:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise FetchError(f"pip download {name}=={version} failed (exit {result.returncode}): " + " | ".join(tail))
    return found[0]


def extract(cache: Path) -> Path:
    """Unpack the files of interest into ``cache/extracted`` (once); return that folder."""
    target = cache / "extracted"
    done = target / ".complete"
    if done.is_file():
        return target
    sdist = pip_download(*TOTALSEG, cache, sdist=True)
    wheel = pip_download(*SLICERIO, cache, sdist=False)
    if target.exists():
        shutil.rmtree(target)
    (target / "totalsegmentator").mkdir(parents=True)
    (target / "slicer").mkdir(parents=True)
    prefix = f"{TOTALSEG[0]}-{TOTALSEG[1]}/{TOTALSEG_FILES}"
    wanted = ("example_ct.nii.gz", "example_seg_fast_force_split.nii.gz", "example_seg_dicom.nii.gz",
              "example_ct_dicom/")
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            rel = member.name[len(prefix):] if member.name.startswith(prefix) else None
            if rel and member.isfile() and rel.startswith(wanted):
                out = target / "totalsegmentator" / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tar.extractfile(member).read())
    with zipfile.ZipFile(wheel) as whl:
        for name in ("CTChest4.nrrd", "Segmentation.seg.nrrd"):
            (target / "slicer" / name).write_bytes(whl.read(f"slicerio/data/{name}"))
    missing = [p for p in ("totalsegmentator/example_ct.nii.gz", "totalsegmentator/example_ct_dicom",
                           "slicer/CTChest4.nrrd") if not (target / p).exists()]
    if missing:
        raise FetchError(f"the packages do not hold {missing} (changed layout?)")
    done.write_text("ok\n")
    return target


def organ_label(values: np.ndarray, organ_values) -> np.ndarray:
    """0/1 uint8: 1 where the label map holds one of ``organ_values``."""
    return np.isin(values, organ_values).astype(np.uint8)


def build_root(source: Path, out: Path) -> dict[str, Path]:
    """Write the data root (see the module docstring); return organ -> datalist path."""
    ts, slicer = source / "totalsegmentator", source / "slicer"
    images = out / "totalsegmentator"
    images.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ts / "example_ct.nii.gz", images / "example_ct.nii.gz")
    if (images / "example_ct_dicom").exists():
        shutil.rmtree(images / "example_ct_dicom")
    shutil.copytree(ts / "example_ct_dicom", images / "example_ct_dicom")
    (out / "slicer").mkdir(parents=True, exist_ok=True)
    shutil.copy2(slicer / "CTChest4.nrrd", out / "slicer" / "CTChest4.nrrd")

    entries: dict[str, list[dict]] = {organ: [] for organ in (*TOTALSEG_ORGANS, "lung")}
    ct = read_geometry(images / "example_ct.nii.gz")
    seg = read_volume(ts / "example_seg_fast_force_split.nii.gz")
    for organ, values in TOTALSEG_ORGANS.items():
        label = label_on_grid(organ_label(seg.array, values), seg.affine, ct.shape, ct.affine)
        path = save_nifti_atomic(label, ct.affine, out / "label" / organ / "example_ct.nii.gz", dtype=np.uint8)
        entries[organ].append({"image": "totalsegmentator/example_ct.nii.gz", "label": str(path.relative_to(out))})

    series = read_geometry(images / "example_ct_dicom")
    seg = read_volume(ts / "example_seg_dicom.nii.gz")
    label = label_on_grid(organ_label(seg.array, TOTALSEG_ORGANS["liver"]), seg.affine, series.shape, series.affine)
    path = save_nifti_atomic(label, series.affine, out / "label" / "liver" / "example_ct_dicom.nii.gz", dtype=np.uint8)
    entries["liver"].append({"image": "totalsegmentator/example_ct_dicom", "label": str(path.relative_to(out))})

    chest = read_geometry(out / "slicer" / "CTChest4.nrrd")
    seg = read_volume(slicer / "Segmentation.seg.nrrd")
    label = label_on_grid(organ_label(seg.array, SLICER_LUNG), seg.affine, chest.shape, chest.affine)
    path = save_nifti_atomic(label, chest.affine, out / "label" / "lung" / "CTChest4.nii.gz", dtype=np.uint8)
    entries["lung"].append({"image": "slicer/CTChest4.nrrd", "label": str(path.relative_to(out))})

    datalists = {}
    for organ, items in entries.items():
        datalists[organ] = write_json_atomic(out / "datafolds" / f"{organ}.json", {
            "description": f"real CT from pip packages ({TOTALSEG[0]} {TOTALSEG[1]} sdist, "
                           f"{SLICERIO[0]} {SLICERIO[1]} wheel): {organ}",
            "labels": {"0": "background", "1": organ},
            "training": items, "validation": items,
        })
    return datalists


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", default="data/real", help="data root to write (default data/real)")
    parser.add_argument("--cache", default=None,
                        help="download cache (default $LABELFREE_CACHE or ~/.cache/labelfree)")
    return parser


@exits_on(FetchError, code=3)
def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    cache = Path(args.cache) if args.cache else default_cache()
    check_output_dir(args.out, "--out")  # both writable: told before the download
    check_output_dir(cache, "--cache" if args.cache else "download cache")
    source = extract(cache)
    datalists = build_root(source, Path(args.out))
    for organ, path in datalists.items():
        print(f"{organ}: {path} ({len(json.loads(Path(path).read_text())['validation'])} case(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
