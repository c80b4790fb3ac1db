"""Training checkpoints: atomic save, safe load, weight-only loading, and whether one fits a run.

A checkpoint is one dict of plain Python values and tensors, so it loads with
``torch.load(path, weights_only=True)`` (no pickled classes, no code execution):

    epoch       index (0-based) of the last completed epoch, as the original wrote it;
                a resumed run starts at ``epoch + 1``
    best_acc    best validation mean Dice so far (float; 0.0 before the first validation)
    global_step optimizer steps taken so far
    state_dict  model weights, unwrapped from DistributedDataParallel (no 'module.' prefix)
    optimizer   optimizer.state_dict()
    scheduler   learning-rate scheduler state_dict() (None without a schedule), saved after
                the epoch's scheduler step, i.e. ready for epoch ``epoch + 1``
    scaler      torch.amp.GradScaler state_dict() ({} when AMP is off)
    args        the command-line arguments as a plain dict

Whether a checkpoint fits the run that uses it is one rule for every use (:data:`USES`:
resume, initial weights, evaluation, quality-control segmentor, generator, generator resume)
with one message: ``<what> <file> was saved with --flag saved (this run: given); <advice>``
(:func:`check_fit`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from labelfree.io.atomic import save_torch_atomic

#: Key prefixes that other trainers put in front of the weights: DataParallel/DDP wrap the
#: model as ``module``; self-supervised set-ups (and the original --checkpoint) as ``backbone``.
STRIPPED_PREFIXES = ("module.", "backbone.")

#: File names in a run's logdir: the last epoch (what ``--resume`` continues) and the best one.
CHECKPOINT_FINAL = "model_final.pt"
CHECKPOINT_BEST = "model.pt"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, or does not fit the model."""


def save_checkpoint(path: str | os.PathLike, **state: Any) -> Path:
    """Write ``state`` (see the module docstring) to ``path`` atomically.

    A crash or kill during the write leaves the previous file at ``path`` untouched.

    Raises:
        CheckpointError: the weights (``state_dict``) hold NaN or infinite values; the file
            at ``path`` (the last good checkpoint) is left as it is.
    """
    bad = non_finite_weights(state.get("state_dict") or {})
    if bad:
        raise CheckpointError(f"not writing {path}: {len(bad)} weight tensor(s) hold NaN or infinite values "
                              f"(e.g. {bad[0]}); the previous file is kept")
    return save_torch_atomic(_plain(state), path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict safely (``weights_only=True``) onto the CPU.

    Raises:
        CheckpointError: naming the file when it is missing, truncated, not a torch file,
            refused because unpickling it would run code, or holds something other than a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types (RuntimeError, UnpicklingError, EOFError, ...)
        raise CheckpointError(load_error_message(path, e)) from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict")
    return obj


#: Phrases of torch's weights-only unpickler that mean "this pickle names a callable or class".
_UNSAFE_MARKERS = ("unsupported global", "was not an allowed global")
_REASON_MARKER = "WeightsUnpickler error:"


def load_error_message(path: str | os.PathLike, error: Exception) -> str:
    """One line for a failed ``torch.load(weights_only=True)``: what is wrong with the file.

    torch's own message starts with advice to retry with ``weights_only=False``, which would
    run whatever code the pickle names (and is wrong for a corrupt file); that advice is
    dropped and its actual reason kept: the refused global of an unsafe pickle, the bad
    opcode of a corrupt one, the first line of other errors (truncated zip, not a torch
    file). The full error stays chained.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = ""
    for i, line in enumerate(lines):
        if _REASON_MARKER in line:
            reason = line.split(_REASON_MARKER, 1)[1].strip() or (lines[i + 1] if i + 1 < len(lines) else "")
            break
    if not reason:
        reason = next((line for line in lines if any(m in line.lower() for m in _UNSAFE_MARKERS)), "")
    if any(marker in reason.lower() for marker in _UNSAFE_MARKERS):
        return (f"checkpoint {path} refused: it is not a plain weights file; loading it would import and call "
                f"Python objects that it names, which could run arbitrary code ({reason}). Checkpoints must "
                f"hold only tensors and plain values (dicts, lists, numbers, strings), as main.py writes them")
    if not reason:
        reason = next((line for line in lines if "weights_only" not in line and "file an issue" not in line), "")
    return (f"checkpoint {path} cannot be read (truncated, corrupt, or not a PyTorch file): "
            f"{type(error).__name__}: {reason}")


# ------------------------------------------------------------------ does this checkpoint fit this run
#: Flags that fix the network's architecture: a checkpoint saved with other values cannot be loaded.
ARCHITECTURE_FLAGS = ("model_name", "swin_type", "num_classes", "out_channels")
#: Flags that fix what the network was trained on: patch size and label convention.
DATA_FLAGS = ("roi_x", "roi_y", "roi_z", "organ")
#: Flags that fix the crops a network sees: organ, intensity window (HU), voxel spacing (mm).
CROP_FLAGS = ("organ", "a_min", "a_max", "space_x", "space_y", "space_z")
#: Alternative names of a flag on either side (validation.py's --model is training's --model_name).
_ALIASES = {"model_name": ("model_name", "model"), "model": ("model", "model_name")}
#: Flags that only mean something for a Swin-UNETR: compared only when both networks are one.
_SWIN_ONLY = ("swin_type", "feature_size")


@dataclass(frozen=True)
class CheckpointUse:
    """What must match between a checkpoint and the run that uses it, for one kind of use.

    Attributes:
        what: how the file is named in messages, e.g. ``"--resume checkpoint"``.
        refused: flags whose difference makes the checkpoint unusable (an error).
        noted: flags whose difference is allowed but said (one note line).
        advice: what to do about a refused difference (ends the error).
        note: what a noted difference means (ends the note).
    """

    what: str
    refused: tuple[str, ...] = ()
    noted: tuple[str, ...] = ()
    advice: str = "give the checkpoint's values or another checkpoint"
    note: str = ""


#: The one list of what must match, per kind of use. The names are the flags of the program
#: that uses the checkpoint; the checkpoint's side is its saved ``args`` (runs) or its
#: settings flattened to the same names (``RunSettings.flat``, ``generator_crop``).
USES = {
    # main.py --resume: the same network, data and labels; the rest is said (the optimizer and
    # schedule state come from the checkpoint, so a changed LR or length does not take effect).
    "resume": CheckpointUse(
        "--resume checkpoint", refused=ARCHITECTURE_FLAGS + DATA_FLAGS,
        noted=("max_epochs", "warmup_epochs", "lrschedule", "optim_name", "optim_lr", "reg_weight", "batch_size",
               "syn", "syn_rim_mm", "syn_label_edge", "syn_qc", "syn_qc_threshold", "json_dir", "seed", "synthesis",
               "syn_grid_mm", "syn_generator"),
        note="the optimizer and learning-rate schedule state, including base LR and schedule length, come from "
             "the checkpoint"),
    # main.py --checkpoint / --resume_ckpt: weights only, into the network this run builds.
    "weights": CheckpointUse("--checkpoint", refused=ARCHITECTURE_FLAGS),
    # validation.py: the trained network and its label convention are fixed; preprocessing of
    # the scan may be overridden (a note says so).
    "evaluation": CheckpointUse(
        "checkpoint", refused=("model", "swin_type", "feature_size", "num_classes", "organ"),
        noted=("a_min", "a_max", "space_x", "space_y", "space_z", "roi_x", "roi_y", "roi_z"),
        advice="leave the flags out to use the checkpoint's values", note="using the flag"),
    # main.py --syn_qc: the segmentor judges this run's crops in its own window, grid and labels.
    "qc_segmentor": CheckpointUse(
        "--syn_qc", refused=CROP_FLAGS + ("num_classes",),
        advice="the segmentor must be trained (on real tumors) with this run's organ, classes, window and spacing"),
    # main.py --syn_generator: the generator repaints this run's crops.
    "generator": CheckpointUse(
        "--syn_generator", refused=CROP_FLAGS,
        advice="a generator repaints crops of the organ, window and spacing it was trained on: train one for "
               "these with syn_train.py"),
    # syn_train.py --resume: the state of both networks and optimizers comes from the checkpoint.
    "generator_resume": CheckpointUse(
        "--resume checkpoint",
        noted=CROP_FLAGS + ("roi_x", "roi_y", "roi_z", "batch_size", "lr", "adv_weight", "seg_weight",
                            "max_offset_hu", "gen_channels", "seed", "json_dir", "healthy_json", "segmentor"),
        note="the networks' and optimizers' state come from the checkpoint"),
}


def flag_differences(saved: Mapping[str, Any] | None, current: Mapping[str, Any],
                     flags: tuple[str, ...]) -> list[str]:
    """``--flag saved (this run: current)`` for each of ``flags`` whose value differs.

    A flag absent on either side is not compared (old or foreign checkpoints; a flag not
    given); ``None`` is a value. The Swin-UNETR size only when both networks are a
    Swin-UNETR. Numbers compare with a relative tolerance of 1e-9, text case-insensitively,
    sequences element-wise.
    """
    if not saved:
        return []
    saved_model = _lookup(saved, "model_name")
    current_model = _lookup(current, "model_name") or saved_model  # evaluation: the checkpoint's unless given
    both_swin = all(m is not None and str(m[1]).startswith("swin") for m in (saved_model, current_model))
    differences = []
    for flag in flags:
        old, new = _lookup(saved, flag), _lookup(current, flag)
        if old is None or new is None or (flag in _SWIN_ONLY and not both_swin):
            continue
        if not _same(old[1], new[1]):
            differences.append(f"--{flag} {_show(old[1])} (this run: {_show(new[1])})")
    return differences


def check_fit(saved: Mapping[str, Any] | None, path: str | os.PathLike | None, use: CheckpointUse,
              current: Mapping[str, Any], what: str | None = None,
              error: type[Exception] = CheckpointError) -> list[str]:
    """Refuse a checkpoint that does not fit this run; say what it was saved with otherwise.

    The one message format of every use: ``<what> <path> was saved with --flag saved (this
    run: given), ...; <advice>``.

    Args:
        saved: the flags the checkpoint was saved with (its ``args``, or its settings
            flattened to flag names); ``None``: nothing recorded, nothing to compare.
        path: the file, for the message (``None``: not named).
        use: what must match (one of :data:`USES`).
        current: this run's flag values (leave out flags that were not given).
        what: how the file was given, when not ``use.what``.
        error: the exception type raised (``CheckpointError``; evaluation raises its
            ``SettingsError``).

    Returns:
        One ``note: ...`` line for the :attr:`CheckpointUse.noted` flags that differ, or none.

    Raises:
        error: naming the file and every refused flag that differs, saved -> given.
    """
    name = " ".join(str(x) for x in (what or use.what, path) if x is not None)
    refused = flag_differences(saved, current, use.refused)
    if refused:
        raise error(f"{name} was saved with {', '.join(refused)}; {use.advice}")
    noted = flag_differences(saved, current, use.noted)
    return [f"note: {name} was saved with {', '.join(noted)}; {use.note}"] if noted else []


def check_matches_flags(checkpoint: Mapping[str, Any], path: str | os.PathLike, what: str,
                        current: Mapping[str, Any], strict: tuple[str, ...]) -> None:
    """:func:`check_fit` of a checkpoint's ``args`` where ``strict`` flags must match (no notes)."""
    saved = checkpoint.get("args") if isinstance(checkpoint.get("args"), Mapping) else None
    check_fit(saved, path, CheckpointUse(what, refused=strict), current)


def _lookup(values: Mapping[str, Any], flag: str) -> tuple[str, Any] | None:
    """``(name, value)`` of ``flag`` (or its alias) in ``values``; ``None`` when absent."""
    for name in _ALIASES.get(flag, (flag,)):
        if name in values and not (flag in _ALIASES and values[name] is None):
            return name, values[name]
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    return str(a).lower() == str(b).lower()


def _show(value: Any) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def non_finite_weights(state_dict: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` that hold a NaN or an infinity."""
    return [k for k, v in state_dict.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def extract_state_dict(checkpoint: Mapping[str, Any], path: str | os.PathLike = "<checkpoint>") -> dict:
    """Return the model weights of a checkpoint dict with wrapper prefixes stripped.

    Accepts this project's format (``state_dict``), torchvision's (``model``), and a bare
    state dict of tensors.
    """
    for key in ("state_dict", "model"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            weights = checkpoint[key]
            break
    else:
        weights = checkpoint
    if not weights or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"checkpoint {path} holds no model weights (no 'state_dict' of tensors)")
    return {strip_prefixes(k): v for k, v in weights.items()}


def strip_prefixes(key: str, prefixes: tuple[str, ...] = STRIPPED_PREFIXES) -> str:
    """Remove any leading ``module.`` / ``backbone.`` prefixes (in any order, repeated)."""
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
                changed = True
    return key


def load_model_weights(model: torch.nn.Module, path: str | os.PathLike) -> dict:
    """Load the weights of checkpoint ``path`` into ``model`` (strictly).

    'module.' and 'backbone.' key prefixes are stripped first, so weights saved from a
    DDP-wrapped or self-supervised model load into a plain one.

    Returns:
        The whole checkpoint dict (for its other entries, e.g. epoch).

    Raises:
        CheckpointError: naming the file, when it cannot be read or its weights do not
            match the model (missing / unexpected keys, shape mismatches are listed).
    """
    checkpoint = load_checkpoint(path)
    weights = extract_state_dict(checkpoint, path)
    check_weights_match(model.state_dict(), weights, path)
    model.load_state_dict(weights, strict=True)
    return checkpoint


def weight_differences(
    expected: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """``(missing, unexpected, mismatched)`` keys of ``weights`` against a model's ``expected`` state dict."""
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    mismatched = [k for k in expected if k in weights and tuple(weights[k].shape) != tuple(expected[k].shape)]
    return missing, unexpected, mismatched


def check_weights_match(expected: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor], path) -> None:
    """Raise :class:`CheckpointError` listing every difference between two state dicts."""
    missing, unexpected, mismatched = weight_differences(expected, weights)
    mismatched = [f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(expected[k].shape)}" for k in mismatched]
    if missing or unexpected or mismatched:
        parts = []
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                shown = ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")
                parts.append(f"{title}: {shown}")
        raise CheckpointError(
            f"weights in {path} do not match the model (wrong --model_name / --swin_type / channels?); "
            + "; ".join(parts)
        )


def _plain(obj: Any) -> Any:
    """Convert values to types ``torch.load(weights_only=True)`` accepts (no numpy, no Paths)."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple):  # kept a tuple: optimizers read e.g. betas back as given
        return tuple(_plain(v) for v in obj)
    if isinstance(obj, os.PathLike):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:  # numpy scalars
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a weights-only checkpoint")
