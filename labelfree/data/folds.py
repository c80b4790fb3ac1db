"""Datalists as pure functions: cases in, MONAI decathlon dicts out.

A case is a dict ``{"image": rel_path, "label": rel_path}`` (paths relative to the data
root). Real-tumor cases are split into k folds BY PATIENT: the patient of a case is read
from its image file name (:func:`patient_id`), so several scans of one patient never end
up on both sides of a split. Randomness comes from a ``numpy.random.Generator`` passed in;
the same seed gives the same folds.

The lists mirror the original project's ``datafolds/``:

* ``healthy``: training = healthy cases (synthetic tumors are painted in), validation =
  every real tumor case;
* ``real_i``: training = the real tumor cases of the other folds (+ tumor-free cases of the
  real dataset, which have no tumor to score), validation = fold ``i``;
* ``mix_i``: training = healthy + the training part of ``real_i``, validation = fold ``i``.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence

import numpy as np

from labelfree.data.labels import nifti_stem
from labelfree.io.formats import natural_key

Case = dict
PatientOf = Callable[[Case], str]

LABEL_NAMES = {
    "liver": {"0": "background", "1": "liver", "2": "tumor"},
    "lung": {"0": "background", "1": "lung", "2": "nodule"},
}


def patient_id(path: str, pattern: str | None = None, strict: bool = True) -> str:
    """Patient of a file, from its name.

    Args:
        path: file path; only the file name is used.
        pattern: regular expression searched in the file name; its first group (or the whole
            match when it has no group) is the patient id. ``None``: the file name without
            ``.nii``/``.nii.gz`` (one scan per patient).
        strict: raise when ``pattern`` does not match; otherwise fall back to the file name
            without extension (for names of other datasets, e.g. in a leak check).

    Raises:
        ValueError: ``strict`` and the pattern does not match the file name.
    """
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    if pattern is None:
        return nifti_stem(name)
    match = re.search(pattern, name)
    if match is None:
        if not strict:
            return nifti_stem(name)
        raise ValueError(f"--patient_regex {pattern!r} does not match file name {name!r}")
    return match.group(1) if match.groups() else match.group(0)


def patient_of_image(pattern: str | None = None, strict: bool = True) -> PatientOf:
    """A ``case -> patient id`` function reading the case's image name with ``pattern``."""
    return lambda case: patient_id(case["image"], pattern, strict)


def sort_cases(cases: Iterable[Case]) -> list[Case]:
    """Cases in natural order of their image path (liver_2 before liver_10)."""
    return sorted(cases, key=lambda c: natural_key(c["image"]))


def group_by_patient(cases: Iterable[Case], patient_of: PatientOf) -> dict[str, list[Case]]:
    """Cases grouped by patient id (insertion order of first appearance)."""
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(patient_of(case), []).append(case)
    return groups


def split_by_patient(
    cases: Sequence[Case], k: int, rng: np.random.Generator, patient_of: PatientOf
) -> list[list[Case]]:
    """Split cases into ``k`` folds; all cases of a patient land in the same fold.

    Patients are shuffled with ``rng``, then placed largest group first into the fold that
    holds the fewest cases so far, so fold sizes differ by at most one patient's cases.
    The result depends only on the set of cases and the generator's state, not on the
    input order.

    Returns:
        ``k`` lists of cases, each in natural order.

    Raises:
        ValueError: ``k < 2`` or fewer patients than folds.
    """
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    groups = group_by_patient(sort_cases(cases), patient_of)
    if len(groups) < k:
        raise ValueError(f"{k} folds need at least {k} patients, found {len(groups)}; lower --k")
    patients = sorted(groups, key=natural_key)
    shuffled = [patients[i] for i in rng.permutation(len(patients))]
    # Stable sort: patients with equally many cases keep their shuffled order.
    shuffled.sort(key=lambda pid: -len(groups[pid]))
    folds: list[list[Case]] = [[] for _ in range(k)]
    for pid in shuffled:
        target = min(range(k), key=lambda f: (len(folds[f]), f))
        folds[target].extend(groups[pid])
    return [sort_cases(fold) for fold in folds]


def real_fold_lists(folds: Sequence[Sequence[Case]], always_train: Sequence[Case] = ()) -> list[dict]:
    """``real_i`` lists: validation = fold i, training = the other folds + ``always_train``."""
    lists = []
    for i, fold in enumerate(folds):
        training = [c for j, other in enumerate(folds) if j != i for c in other]
        lists.append({"training": sort_cases([*training, *always_train]), "validation": list(fold)})
    return lists


def healthy_lists(healthy: Sequence[Case], tumor_cases: Sequence[Case]) -> dict:
    """``healthy``: train on healthy scans, validate on every real tumor case."""
    return {"training": sort_cases(healthy), "validation": sort_cases(tumor_cases)}


def mix_fold_lists(healthy: Sequence[Case], real_lists: Sequence[dict]) -> list[dict]:
    """``mix_i``: healthy + real training of fold i; validation of ``real_i``.

    A scan both healthy and in the real training set (a tumor-free LiTS case, once with its
    converted label and once with its own) is listed once, with the healthy label.
    """
    seen = {c["image"] for c in healthy}
    lists = []
    for real in real_lists:
        training = list(sort_cases(healthy)) + [c for c in real["training"] if c["image"] not in seen]
        lists.append({"training": training, "validation": list(real["validation"])})
    return lists


def shared_patients(a: Iterable[Case], b: Iterable[Case], patient_of: PatientOf) -> set[str]:
    """Patients with cases in both ``a`` and ``b`` (a leak between training and validation)."""
    return {patient_of(c) for c in a} & {patient_of(c) for c in b}


def decathlon_datalist(lists: dict, *, name: str, description: str, organ: str, **extra) -> dict:
    """Wrap ``{"training": [...], "validation": [...]}`` in a MONAI decathlon header.

    Args:
        lists: the training and validation cases.
        name: short name of the list (``healthy``, ``real_0``, ...).
        description: one sentence on how the list was built.
        organ: ``liver`` or ``lung`` (selects the label names).
        **extra: further header fields (seed, k, fold, patient regex).
    """
    return {
        "name": name,
        "description": description,
        "labels": LABEL_NAMES[organ],
        "modality": {"0": "CT"},
        "tensorImageSize": "3D",
        **extra,
        "numTraining": len(lists["training"]),
        "numValidation": len(lists["validation"]),
        "training": [dict(c) for c in lists["training"]],
        "validation": [dict(c) for c in lists["validation"]],
    }
