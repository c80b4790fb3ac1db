"""A phantom data root in the original project's folder layout, with its datalists.

Layout (paths relative to the root)::

    01_Multi-Atlas_Labeling/img/img0001.nii.gz       healthy abdomen CT (int16 HU)
    01_Multi-Atlas_Labeling/label/label0001.nii.gz   raw BTCV multi-organ label (uint8)
    label/multi-atlas-label0001.nii.gz               converted liver label 0/1
    label/pancreas-label0001.nii.gz                  pancreas label 0/1 of the healthy case
    label/kidney-label0001.nii.gz                    kidney label 0/1 (both kidneys)
    label/multiorgan-label0001.nii.gz                multi-organ label 0/1/3/5 (FreeTumor)
    04_LiTS/img/liver_0.nii.gz, 04_LiTS/label/liver_0.nii.gz     liver tumour cases, label 0/1/2
    07_Pancreas/img/pancreas_0001.nii.gz, 07_Pancreas/label/...  pancreas tumour cases, 0/1/2
    08_Kidney/img/kidney_0001.nii.gz, 08_Kidney/label/...        kidney tumour cases, 0/1/2
    04_LiTS/multiorgan_label/liver_0.nii.gz,                     multi-organ labels (0..6) of the
    07_Pancreas/multiorgan_label/pancreas_0001.nii.gz,           tumour cases, next to their
    08_Kidney/multiorgan_label/kidney_0001.nii.gz                single-organ labels
    05_Chest/img/chest_0001.nii.gz, 05_Chest/label/...            healthy chest, label 0/1 lung
    06_LNDb/img/LNDb-0001.nii.gz, 06_LNDb/label/...               chest with nodules, 0/1/2
    datafolds/healthy.json, real_K.json, mix_K.json, lits.json, chest.json,
              pancreas.json, kidney.json, multiorgan.json
    phantom_info.json                                 generator, seeds, volumes, lesion lists
    previews/<case>.png                               three-view previews

Multi-organ design: the FreeTumor convention (0 background, 1 liver, 2 liver tumour,
3 pancreas, 4 pancreas tumour, 5 kidney, 6 kidney tumour) is written for *every* abdomen case
rather than for a separate set of scans: healthy cases get ``label/multiorgan-labelNNNN``
(values 0/1/3/5) and each liver, pancreas or kidney tumour case gets a
``multiorgan_label/`` file next to its own ``label/`` folder, holding the tumours of its
organ and the healthy other two organs. No image is stored twice, and the single-organ and
multi-organ labels of a case are derived from the same organ and tissue maps
(:mod:`phantom.labels`), so they agree voxel for voxel. ``multiorgan.json`` trains on the
healthy multi-organ labels and validates on all three tumour sets.

Kidney tumours may be exophytic: the part outside the kidney contour is labelled tumour
(as in KiTS), in the kidney label, the multi-organ label and the BTCV organ map (as kidney).

Each case's seed is derived from the master seed and the case's group and index with
``numpy.random.SeedSequence(master, spawn_key=(group, index))``, so a case is the same
whatever the number of other cases.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labelfree.io.atomic import save_nifti_atomic, write_json_atomic

from .case import DEFAULT_SPACING, generate_case
from .labels import MULTIORGAN_LABELS, single_organ_label

#: Version of the generator; bumped whenever the same seed would give different images.
PHANTOM_VERSION = "1.0"

#: Folders and files a data root consists of (removed by ``overwrite=True``; nothing else is).
ROOT_ENTRIES = ("01_Multi-Atlas_Labeling", "04_LiTS", "05_Chest", "06_LNDb", "07_Pancreas", "08_Kidney", "label",
                "datafolds", "previews", "phantom_info.json")


@dataclass(frozen=True)
class CaseGroup:
    """A family of cases: what they are and where their files go."""

    name: str
    key: int  # SeedSequence spawn key, fixed forever so seeds stay stable
    kind: str
    lesions: bool
    organ: str  # task organ of the case's label and host of its lesions


GROUPS = (
    CaseGroup("healthy", 0, "abdomen", False, "liver"),
    CaseGroup("tumor", 1, "abdomen", True, "liver"),
    CaseGroup("chest_healthy", 2, "chest", False, "lung"),
    CaseGroup("chest_nodule", 3, "chest", True, "lung"),
    CaseGroup("pancreas_tumor", 4, "abdomen", True, "pancreas"),
    CaseGroup("kidney_tumor", 5, "abdomen", True, "kidney"),
)
_GROUP = {g.name: g for g in GROUPS}

#: Healthy-case label files derived from the case's multi-organ label, by case_paths key.
_HEALTHY_ORGAN_LABELS = {"pancreas_label": "pancreas", "kidney_label": "kidney"}


def case_seed(master_seed: int, group: str, index: int) -> int:
    """The seed of case ``index`` (0-based) of ``group``, derived from the master seed."""
    ss = np.random.SeedSequence(int(master_seed), spawn_key=(_GROUP[group].key, int(index)))
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def case_paths(group: str, index: int) -> dict:
    """Name and relative file paths of case ``index`` (0-based) of ``group``.

    Keys: ``name``, ``image``, ``label`` (the task label), and where the group has them
    ``organs`` (raw BTCV map), ``pancreas_label``, ``kidney_label`` (healthy 0/1 labels) and
    ``multiorgan_label`` (FreeTumor 0..6).
    """
    if group == "healthy":
        n = f"{index + 1:04d}"
        return {"name": f"img{n}", "image": f"01_Multi-Atlas_Labeling/img/img{n}.nii.gz",
                "label": f"label/multi-atlas-label{n}.nii.gz", "organs": f"01_Multi-Atlas_Labeling/label/label{n}.nii.gz",
                "pancreas_label": f"label/pancreas-label{n}.nii.gz", "kidney_label": f"label/kidney-label{n}.nii.gz",
                "multiorgan_label": f"label/multiorgan-label{n}.nii.gz"}
    if group == "tumor":
        return {"name": f"liver_{index}", "image": f"04_LiTS/img/liver_{index}.nii.gz",
                "label": f"04_LiTS/label/liver_{index}.nii.gz",
                "multiorgan_label": f"04_LiTS/multiorgan_label/liver_{index}.nii.gz"}
    if group in ("pancreas_tumor", "kidney_tumor"):
        organ, folder = ("pancreas", "07_Pancreas") if group == "pancreas_tumor" else ("kidney", "08_Kidney")
        name = f"{organ}_{index + 1:04d}"
        return {"name": name, "image": f"{folder}/img/{name}.nii.gz", "label": f"{folder}/label/{name}.nii.gz",
                "multiorgan_label": f"{folder}/multiorgan_label/{name}.nii.gz"}
    if group == "chest_healthy":
        n = f"{index + 1:04d}"
        return {"name": f"chest_{n}", "image": f"05_Chest/img/chest_{n}.nii.gz", "label": f"05_Chest/label/chest_{n}.nii.gz"}
    if group == "chest_nodule":
        n = f"{index + 1:04d}"
        return {"name": f"LNDb-{n}", "image": f"06_LNDb/img/LNDb-{n}.nii.gz", "label": f"06_LNDb/label/LNDb-{n}.nii.gz"}
    raise ValueError(f"unknown case group {group!r}")


def _entries(group: str, n: int, indices=None, label_key: str = "label") -> list[dict]:
    idx = range(n) if indices is None else indices
    return [{"image": case_paths(group, i)["image"], "label": case_paths(group, i)[label_key]} for i in idx]


def _datalist(name: str, description: str, labels: dict, training: list, validation: list) -> dict:
    return {
        "description": description,
        "labels": {str(k): v for k, v in labels.items()},
        "modality": {"0": "CT"},
        "name": name,
        "numTraining": len(training),
        "numValid": len(validation),
        "tensorImageSize": "3D",
        "training": training,
        "validation": validation,
    }


LIVER_LABELS = {0: "background", 1: "liver", 2: "tumor"}
LUNG_LABELS = {0: "background", 1: "lung", 2: "lesion"}
PANCREAS_LABELS = {0: "background", 1: "pancreas", 2: "tumor"}
KIDNEY_LABELS = {0: "background", 1: "kidney", 2: "tumor"}


def build_datalists(n_healthy: int, n_tumor: int, n_chest_healthy: int = 0, n_chest_nodule: int = 0,
                    n_pancreas_tumor: int = 0, n_kidney_tumor: int = 0) -> dict:
    """All datalists of a root with these case counts, by file stem (e.g. ``"healthy"``).

    - ``healthy``: training = healthy abdomens with their converted liver labels,
      validation = the tumour cases (train on synthetic tumours, test on phantom tumours).
    - ``real_k`` (k < K = min(5, n_tumor), only when K >= 2): K-fold split of the tumour
      cases; training = the other folds, validation = fold k.
    - ``mix_k``: training = healthy + real_k training, validation = real_k validation.
    - ``lits``: every tumour case in both lists (training and evaluation on all of them).
    - ``chest``: training = healthy chests (lung labels), validation = nodule cases.
    - ``pancreas`` / ``kidney``: training = healthy abdomens with their pancreas / kidney
      labels, validation = the pancreas / kidney tumour cases (labels 0/1/2).
    - ``multiorgan``: training = healthy abdomens with their multi-organ labels, validation =
      the liver, pancreas and kidney tumour cases with their multi-organ labels (0..6).

    A datalist is omitted when one of its lists would be empty.
    """
    lists = {}
    healthy, tumor = _entries("healthy", n_healthy), _entries("tumor", n_tumor)
    if healthy and tumor:
        lists["healthy"] = _datalist("healthy", "Phantom: healthy abdomen CT (liver labels) / phantom liver tumours",
                                     LIVER_LABELS, healthy, tumor)
    k_folds = min(5, n_tumor)
    if k_folds >= 2:
        folds = np.array_split(np.arange(n_tumor), k_folds)
        for k, fold in enumerate(folds):
            train_idx = [int(i) for f, other in enumerate(folds) if f != k for i in other]
            val = _entries("tumor", n_tumor, [int(i) for i in fold])
            train = _entries("tumor", n_tumor, train_idx)
            lists[f"real_{k}"] = _datalist(f"real_{k}", f"Phantom liver tumours, fold {k} of {k_folds}", LIVER_LABELS,
                                           train, val)
            if healthy:
                lists[f"mix_{k}"] = _datalist(f"mix_{k}", f"Phantom healthy + tumour cases, fold {k} of {k_folds}",
                                              LIVER_LABELS, healthy + train, val)
    if tumor:
        lists["lits"] = _datalist("lits", "Phantom liver tumour cases (all)", LIVER_LABELS, tumor, tumor)
    chest_train, chest_val = _entries("chest_healthy", n_chest_healthy), _entries("chest_nodule", n_chest_nodule)
    if chest_train and chest_val:
        lists["chest"] = _datalist("chest", "Phantom chest CT: healthy lungs / lung nodules", LUNG_LABELS, chest_train,
                                   chest_val)
    for organ, group, n, labels in (("pancreas", "pancreas_tumor", n_pancreas_tumor, PANCREAS_LABELS),
                                    ("kidney", "kidney_tumor", n_kidney_tumor, KIDNEY_LABELS)):
        train, val = _entries("healthy", n_healthy, label_key=f"{organ}_label"), _entries(group, n)
        if train and val:
            lists[organ] = _datalist(organ, f"Phantom: healthy abdomen CT ({organ} labels) / phantom {organ} tumours",
                                     labels, train, val)
    multi_train = _entries("healthy", n_healthy, label_key="multiorgan_label")
    multi_val = [e for group, n in (("tumor", n_tumor), ("pancreas_tumor", n_pancreas_tumor),
                                    ("kidney_tumor", n_kidney_tumor))
                 for e in _entries(group, n, label_key="multiorgan_label")]
    if multi_train and multi_val:
        lists["multiorgan"] = _datalist(
            "multiorgan", "Phantom: healthy abdomen CT (multi-organ labels) / liver, pancreas and kidney tumour cases "
            "(multi-organ labels, FreeTumor convention)", MULTIORGAN_LABELS, multi_train, multi_val)
    return lists


def _write_case(job: dict) -> dict:
    """Generate one case and write its files; returns its record for phantom_info.json."""
    from .preview import WINDOWS, save_preview

    group = _GROUP[job["group"]]
    root = Path(job["root"])
    paths = case_paths(group.name, job["index"])
    t0 = time.perf_counter()
    case = generate_case(group.kind, seed=job["seed"], lesions=group.lesions, spacing=job["spacing"],
                         orientation=job["orientation"], organ=group.organ)
    arrays = {"image": (case.image, np.int16), "label": (case.label, np.uint8), "organs": (case.organs, np.uint8),
              "multiorgan_label": (case.multiorgan, np.uint8)}
    for key, organ in _HEALTHY_ORGAN_LABELS.items():
        if key in paths:
            arrays[key] = (single_organ_label(case.multiorgan, organ), np.uint8)
    files = {k: v for k, v in paths.items() if k != "name"}
    for key, rel in files.items():
        array, dtype = arrays[key]
        save_nifti_atomic(array, case.affine, root / rel, dtype=dtype)
    if job["previews"]:
        save_preview(case.image, case.label, case.affine, root / "previews" / f"{paths['name']}.png",
                     window=WINDOWS[group.kind], title=f"{paths['name']} ({group.name}, seed {case.seed})")
    if group.organ == "lung":
        host_volume = case.volumes_ml["right_lung"] + case.volumes_ml["left_lung"]
    elif group.organ == "kidney":
        host_volume = case.volumes_ml["right_kidney"] + case.volumes_ml["left_kidney"]
    else:
        host_volume = case.volumes_ml[group.organ]
    return {
        "name": paths["name"],
        "group": group.name,
        "kind": group.kind,
        "organ": group.organ,
        "seed": case.seed,
        **files,
        "shape": list(case.image.shape),
        "spacing": list(case.spacing),
        f"{group.organ}_volume_ml": round(host_volume, 1),
        "volumes_ml": case.volumes_ml,
        "noise_std_hu": round(case.noise_std, 2),
        "tissue_hu": case.hu,
        "n_lesions": sum(1 for r in case.lesions if r["n_voxels"] > 0),
        "lesions": case.lesions,
        "bytes": sum(os.path.getsize(root / files[k]) for k in files),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _check_output_dir(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"output path {root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"output directory {root} is not empty; pass overwrite=True (--overwrite) to replace its phantom data "
                f"or choose another directory"
            )
        for entry in ROOT_ENTRIES:
            path = root / entry
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def make_phantom_dataset(
    out_dir,
    n_healthy: int = 8,
    n_tumor: int = 4,
    n_chest_healthy: int = 2,
    n_chest_nodule: int = 2,
    n_pancreas_tumor: int = 2,
    n_kidney_tumor: int = 2,
    seed: int = 0,
    spacing=DEFAULT_SPACING,
    orientation: str = "RAS",
    overwrite: bool = False,
    previews: bool = True,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Generate a phantom data root (NIfTI files, datalists, phantom_info.json, previews).

    Args:
        out_dir: the root directory; must be empty or absent unless ``overwrite``.
        n_healthy: healthy abdomen cases (training of the synthetic-tumour method).
        n_tumor: abdomen cases with phantom liver tumours (validation / real-tumour training).
        n_chest_healthy: healthy chest cases.
        n_chest_nodule: chest cases with lung nodules.
        n_pancreas_tumor: abdomen cases with pancreatic tumours (07_Pancreas).
        n_kidney_tumor: abdomen cases with kidney tumours and cysts (08_Kidney).
        seed: master seed.
        spacing: voxel size (mm).
        orientation: ``"RAS"`` or ``"LPS"`` voxel order of the files.
        overwrite: replace the phantom entries of a non-empty ``out_dir`` (other files are kept).
        previews: write ``previews/<case>.png``.
        workers: processes generating cases in parallel (results do not depend on it).
        progress: show a tqdm progress bar.

    Returns:
        The content of ``phantom_info.json`` (with per-case records under ``"cases"``).
    """
    counts = {"healthy": n_healthy, "tumor": n_tumor, "chest_healthy": n_chest_healthy, "chest_nodule": n_chest_nodule,
              "pancreas_tumor": n_pancreas_tumor, "kidney_tumor": n_kidney_tumor}
    for name, n in counts.items():
        if int(n) < 0:
            raise ValueError(f"n_{name} must be >= 0, got {n}")
    if sum(counts.values()) == 0:
        raise ValueError("nothing to generate: all case counts are 0")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive numbers (mm), got {spacing}")
    root = Path(out_dir)
    _check_output_dir(root, overwrite)
    root.mkdir(parents=True, exist_ok=True)

    jobs = [
        {"group": g, "index": i, "seed": case_seed(seed, g, i), "root": str(root), "spacing": spacing,
         "orientation": orientation.upper(), "previews": previews}
        for g, n in counts.items() for i in range(int(n))
    ]
    t0 = time.perf_counter()
    records = _run_jobs(jobs, workers, progress)
    elapsed = time.perf_counter() - t0

    datalists = build_datalists(n_healthy, n_tumor, n_chest_healthy, n_chest_nodule, n_pancreas_tumor, n_kidney_tumor)
    for stem, content in datalists.items():
        write_json_atomic(root / "datafolds" / f"{stem}.json", content)
    info = {
        "generator": "phantom (procedural CT phantom of this project)",
        "version": PHANTOM_VERSION,
        "seed": int(seed),
        "spacing_mm": list(spacing),
        "orientation": orientation.upper(),
        "counts": counts,
        "labels": {"abdomen": LIVER_LABELS, "chest": LUNG_LABELS, "pancreas": PANCREAS_LABELS, "kidney": KIDNEY_LABELS,
                   "multiorgan": MULTIORGAN_LABELS,
                   "organs_btcv": "01_Multi-Atlas_Labeling/label: 1 spleen, 2 right kidney, 3 left kidney, "
                                  "4 gallbladder, 6 liver, 7 stomach, 8 aorta, 9 IVC, 10 portal/splenic vein, 11 pancreas"},
        "datalists": sorted(f"datafolds/{s}.json" for s in datalists),
        "generation_seconds": round(elapsed, 1),
        "total_bytes": sum(r["bytes"] for r in records),
        "cases": records,
    }
    write_json_atomic(root / "phantom_info.json", info)
    return info


def _run_jobs(jobs: list[dict], workers: int, progress: bool) -> list[dict]:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="phantom cases", unit="case", disable=not progress)
    try:
        if workers == 1:
            records = []
            for job in jobs:
                records.append(_write_case(job))
                bar.update()
            return records
        # "spawn": forking a parent that already runs threads (e.g. torch in a test session)
        # can deadlock; the workers only need numpy/scipy/nibabel.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_write_case, job) for job in jobs]
            for fut in futures:
                fut.add_done_callback(lambda _: bar.update())
            return [fut.result() for fut in futures]
    finally:
        bar.close()
