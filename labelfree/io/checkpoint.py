"""Training checkpoints: atomic save, safe load, weight-only loading with prefix stripping.

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
"""

from __future__ import annotations

import os
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


#: Flags that fix the network's architecture: a checkpoint saved with other values cannot be loaded.
ARCHITECTURE_FLAGS = ("model_name", "swin_type", "num_classes", "out_channels")
#: Flags that fix what the network was trained on: patch size and label convention.
DATA_FLAGS = ("roi_x", "roi_y", "roi_z", "organ")
#: Alternative names of a flag in checkpoints' ``args`` (validation.py's --model).
_SAVED_NAMES = {"model_name": ("model_name", "model")}


def flag_differences(saved_args: Mapping[str, Any] | None, current: Mapping[str, Any],
                     flags: tuple[str, ...]) -> list[str]:
    """``--flag saved (this run: current)`` for each of ``flags`` whose value differs.

    A flag missing on either side is not compared (old or foreign checkpoints); the
    Swin-UNETR size only when both are a Swin-UNETR.
    """
    if not saved_args:
        return []
    differences = []
    for flag in flags:
        saved = next((saved_args[k] for k in _SAVED_NAMES.get(flag, (flag,)) if saved_args.get(k) is not None), None)
        value = current.get(flag)
        if saved is None or value is None:
            continue
        if flag == "swin_type" and not all(
            str(m).startswith("swin") for m in (current.get("model_name"), _saved_model(saved_args))
        ):
            continue
        if str(saved).lower() != str(value).lower():
            differences.append(f"--{flag} {saved} (this run: {value})")
    return differences


def _saved_model(saved_args: Mapping[str, Any]) -> Any:
    return saved_args.get("model_name") or saved_args.get("model")


def check_matches_flags(checkpoint: Mapping[str, Any], path: str | os.PathLike, what: str,
                        current: Mapping[str, Any], strict: tuple[str, ...]) -> None:
    """Raise one line naming every ``strict`` flag in which ``checkpoint`` differs from ``current``.

    Args:
        checkpoint: a loaded checkpoint dict; its ``args`` are the flags it was saved with.
        path: its file, for the message.
        what: how the file was given, e.g. ``"--resume checkpoint"``.
        current: this run's flag values.
        strict: the flags compared (e.g. :data:`ARCHITECTURE_FLAGS` + :data:`DATA_FLAGS`).
    """
    saved = checkpoint.get("args") if isinstance(checkpoint.get("args"), Mapping) else None
    differences = flag_differences(saved, current, strict)
    if differences:
        raise CheckpointError(f"{what} {path} was saved with {', '.join(differences)}; give the checkpoint's "
                              f"value{'s' if len(differences) > 1 else ''} or another checkpoint")


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
