"""Pre-flight check of every case before ``main.py`` trains or ``validation.py`` predicts.

A bad case must stop a run before its first step, with one message naming every bad file,
not three hours in with a MONAI traceback that names none (or, worse, let it train on NaN).
Two passes, both before any training or inference work:

1. **header pass**, every case, cheap (a NIfTI, NRRD or MetaImage header read, shared with the
   datalist check through :func:`labelfree.data.case_geometry.case_geometry`: each header is
   read once): files exist, are scans and open, 3D (or 4D with one channel), a voxel grid a
   scan can have (no spacing of 0, negative, NaN or infinite, no singular affine: refused
   naming the file before anything is written), image and label of equal shape, affines
   equal within :data:`labelfree.io.readers.GRID_TOLERANCE_MM`;
2. **content pass**, every case whose header passed, in parallel worker processes, each
   file read (decompressed) once, completely: a truncated ``.nii.gz`` only fails here, and a
   DICOM series' grid is first seen here (the same grid rules); no
   NaN/inf in the image; label values integers of the ``--organ`` label convention
   (0..num_classes-1: a 7 in a liver label would crash ``one_hot`` at the first step);
   the organ present in every *training* label (an empty one in an evaluation label is a
   warning: its organ Dice means nothing).

The checks themselves are :func:`labelfree.data.checks.check_case`, the same as
``scripts/check_data.py``'s. :func:`screen` raises one :class:`PreflightError` listing every
bad case with its file and problem, or, with ``--skip_bad_cases``, drops them with one
warning line each and says how many remain.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from labelfree.data.case_geometry import case_geometry
from labelfree.data.checks import CaseCheck, check_case
from labelfree.data.datalist import DatalistError

#: Splits whose labels must contain the organ (training learns the organ from them; tumor
#: synthesis paints into it).
ORGAN_REQUIRED_SPLITS = ("training",)


class PreflightError(DatalistError):
    """One or more cases cannot be used; the message lists every one with its file."""


@dataclass(frozen=True)
class LabelConvention:
    """The label values a run accepts.

    Attributes:
        allowed: every allowed value (0 .. num_classes - 1).
        organ_labels: value(s) of the organ(s); a training label must hold at least one voxel
            of one of them.
        words: the convention in words, for messages.
    """

    allowed: tuple[int, ...]
    organ_labels: tuple[int, ...]
    words: str


def label_convention(organ: str, num_classes: int) -> LabelConvention:
    """The convention of ``--organ`` with ``num_classes`` classes (background included).

    ``liver`` with 3 classes: 0 background, 1 liver, 2 tumor; ``multi`` with 7: FreeTumor's
    0..6 (organs 1, 3, 5).
    """
    from tumor_synthesis.organs import get_organ_profile

    profile = get_organ_profile(organ)
    names = list(profile.class_names)
    organ_labels = tuple(organ_label for _, organ_label, _, _ in profile.label_pairs)
    allowed = tuple(range(int(num_classes)))
    if len(names) == num_classes:
        words = f"the {profile.name} convention: " + ", ".join(f"{i} {n}" for i, n in enumerate(names))
    else:
        words = f"--num_classes {num_classes}"
    return LabelConvention(allowed, tuple(v for v in organ_labels if v in allowed), words)


# ------------------------------------------------------------------------------ the passes
def header_problems(entry: Mapping) -> list[str]:
    """Problems visible in the headers alone (no voxel data read), one line each naming the file.

    A DICOM series has no single header: its shape and affine are checked by the content
    pass, which reads its slices.
    """
    return case_geometry(entry).problems()


@dataclass
class CaseReport:
    """The outcome of both passes for one datalist entry."""

    split: str
    index: int
    entry: dict
    problems: list[str]
    warnings: list[str]

    @property
    def name(self) -> str:
        return CaseCheck(self.split, self.index, self.entry["image"], None).name

    @property
    def where(self) -> str:
        return f"{self.split}[{self.index}] {self.name}"


def check_entries(
    entries: Sequence[tuple[str, int, dict]],
    convention: LabelConvention,
    require_label: Sequence[str] = ("training",),
    workers: int = 0,
) -> list[CaseReport]:
    """Both passes over ``(split, index, entry)`` items; one report per item, in order.

    Args:
        entries: datalist entries with absolute ``image`` (and ``label``) paths.
        convention: allowed label values and organ labels.
        require_label: splits whose entries must have a label.
        workers: worker processes of the content pass (0: in this process).
    """
    reports = []
    for split, index, entry in entries:
        label = entry.get("label")
        problems = [] if label or split not in require_label else [f"{split} entry has no label: {entry['image']}"]
        problems += header_problems(entry)
        reports.append(CaseReport(split, index, entry, problems, []))

    todo = [r for r in reports if not r.problems]
    jobs = [
        (r.entry["image"], r.entry.get("label"), convention.allowed,
         convention.organ_labels if r.split in ORGAN_REQUIRED_SPLITS else (), r.split, r.index, convention.words)
        for r in todo
    ]
    for report, check in zip(todo, _run_checks(jobs, workers)):
        report.problems.extend(p for p in check.problems if p not in report.problems)
        if report.split not in ORGAN_REQUIRED_SPLITS and check.label is not None and check.label_counts:
            if not any(check.label_counts.get(v, 0) for v in convention.organ_labels):
                report.warnings.append(
                    f"organ empty: no voxel of label {'/'.join(map(str, convention.organ_labels))} in "
                    f"{check.label}: its organ Dice is 1 for an empty prediction, 0 otherwise")
    return reports


def _run_checks(jobs: list[tuple], workers: int) -> list[CaseCheck]:
    if workers <= 1 or len(jobs) <= 1:
        return [check_case(*job) for job in jobs]
    # fork, as the DataLoader's workers: no re-import of the entry point in each worker (spawn
    # and forkserver re-run main.py's imports, torch and MONAI, seconds per worker). The
    # workers only use numpy, nibabel and zlib, none of the parent's CUDA or thread state.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context,
                             initializer=_ignore_interrupts) as pool:
        return list(pool.map(_check_job, jobs, chunksize=1))


def _check_job(job: tuple) -> CaseCheck:
    return check_case(*job)


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group; the parent alone decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ------------------------------------------------------------------------------ the verdict
def screen(
    datalists: Mapping[str, Sequence[dict]],
    convention: LabelConvention,
    skip_bad: bool = False,
    workers: int = 0,
    required: Sequence[str] = ("training",),
    labels_required: bool = True,
    flag: str = "--skip_bad_cases",
    warn: Callable[[str], None] | None = None,
) -> dict[str, list[dict]]:
    """Check every case of every split; return the lists to use.

    Args:
        datalists: split name -> entries (absolute paths), e.g. ``{"training": [...],
            "validation": [...]}``.
        convention: see :func:`label_convention`.
        skip_bad: drop bad cases (one warning line each) instead of failing.
        workers: worker processes of the content pass.
        required: splits that must keep at least one case.
        labels_required: every entry needs a label (training); else image-only entries are
            fine (evaluation: segmented, not scored).
        flag: the command-line flag that sets ``skip_bad`` (named in the error).
        warn: where warning lines go (default: stderr).

    Returns:
        The same splits, bad cases removed (only possible with ``skip_bad``).

    Raises:
        PreflightError: listing every bad case (file and problem), or, with ``skip_bad``,
            when a required split has no good case left.
    """
    warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
    entries = [(split, i, entry) for split, items in datalists.items() for i, entry in enumerate(items)]
    reports = check_entries(entries, convention, require_label=tuple(datalists) if labels_required else (),
                            workers=workers)
    for report in reports:
        for line in report.warnings:
            warn(f"warning: {report.where}: {line}")
    bad = [r for r in reports if r.problems]
    if bad and not skip_bad:
        lines = [f"{r.where}: {p}" for r in bad for p in r.problems]
        raise PreflightError(
            f"{len(bad)} of {len(reports)} case(s) cannot be used, nothing was started; fix them, or give {flag} "
            f"to leave them out:\n  " + "\n  ".join(lines))
    for r in bad:
        warn(f"warning: skipping {r.where}: " + "; ".join(r.problems))
    kept = {split: [r.entry for r in reports if r.split == split and not r.problems] for split in datalists}
    if bad:
        remaining = ", ".join(f"{len(kept[s])} of {len(datalists[s])} {s}" for s in datalists if datalists[s])
        warn(f"{flag}: {len(bad)} bad case(s) left out; {remaining} case(s) remain")
    for split in required:
        if datalists.get(split) and not kept.get(split):
            raise PreflightError(f"no {split} case left after {flag}: all {len(datalists[split])} are bad")
    return kept


# ------------------------------------------------------------------------------ main.py
def screen_training_cases(args, datalists: Mapping[str, Sequence[dict]]) -> dict[str, list[dict]]:
    """:func:`screen` the training and validation lists with ``main.py``'s flags.

    Uses ``--organ`` and the resolved ``--num_classes`` (the allowed label values),
    ``--workers`` (worker processes of the content pass) and ``--skip_bad_cases``.
    """
    from labelfree.runtime.distributed import env_rank

    convention = label_convention(args.organ, args.num_classes)
    quiet = env_rank() != 0  # every rank checks the same files; rank 0 speaks
    return screen(datalists, convention, skip_bad=args.skip_bad_cases, workers=args.workers,
                  warn=(lambda line: None) if quiet else None)


def check_training_checkpoints(args) -> None:
    """Check every weight file ``main.py`` was given before any data is read.

    Each of ``--resume``, ``--checkpoint``, ``--pretrained_dir`` (with ``--resume_ckpt``) is
    loaded (safely), its stored flags compared with this run's (``--resume``: architecture,
    class count, patch size and organ must all match; weights only: architecture and class
    count), its weights compared with the network the flags build, and checked finite.
    ``--pretrained_swinvit`` (``--use_pretrained``) is checked to load.

    Raises:
        CheckpointError: one line naming the file and the differing flag(s) or the problem.
    """
    from labelfree.io.checkpoint import (
        ARCHITECTURE_FLAGS, DATA_FLAGS, CheckpointError, check_matches_flags, check_weights_match,
        extract_state_dict, load_checkpoint, non_finite_weights,
    )

    files = []
    if args.resume:
        files.append(("--resume checkpoint", args.resume, ARCHITECTURE_FLAGS + DATA_FLAGS))
    if args.checkpoint:
        files.append(("--checkpoint", args.checkpoint, ARCHITECTURE_FLAGS))
    if args.resume_ckpt and args.pretrained_dir:
        path = Path(args.pretrained_dir)
        files.append(("--pretrained_dir checkpoint", str(path / "model.pt") if path.is_dir() else str(path),
                      ARCHITECTURE_FLAGS))
    if args.use_pretrained:
        load_checkpoint(args.pretrained_swinvit)
    model_state = None
    for what, path, strict in files:
        checkpoint = load_checkpoint(path)
        check_matches_flags(checkpoint, path, what, vars(args), strict)
        if what.startswith("--resume") and not {"state_dict", "optimizer", "epoch"} <= set(checkpoint):
            raise CheckpointError(f"{what} {path} is not a training checkpoint of main.py (no optimizer state or "
                                  f"epoch); use --checkpoint to start from its weights")
        weights = extract_state_dict(checkpoint, path)
        bad = non_finite_weights(weights)
        if bad:
            raise CheckpointError(f"{what} {path} holds NaN or infinite weights ({len(bad)} tensor(s), e.g. {bad[0]})")
        if model_state is None:
            model_state = _network_state(args)
        check_weights_match(model_state, weights, path)


def _network_state(args) -> dict:
    """The state dict (names and shapes) of the network ``main.py``'s flags build, on the CPU."""
    from labelfree.config.settings import RunSettings

    return RunSettings.from_train_args(args).build_model().state_dict()


# ------------------------------------------------------------------------------ validation.py
def screen_evaluation_cases(cases: Sequence[dict], organ: str, num_classes: int, skip_bad: bool,
                            workers: int) -> list[dict]:
    """:func:`screen` the cases of ``validation.py`` (labels optional) with the resolved organ and class count."""
    convention = label_convention(organ, num_classes)
    kept = screen({"validation": list(cases)}, convention, skip_bad=skip_bad, workers=workers,
                  required=("validation",), labels_required=False)
    return kept["validation"]
