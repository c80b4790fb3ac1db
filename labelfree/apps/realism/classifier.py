"""Machine Turing test: a small 3D CNN that tells real lesion crops from synthetic ones.

The crops (``(N, S, S, S)`` float32, the organ window mapped to [0, 1], one lesion centred
in each) come from :mod:`labelfree.apps.realism.cli`. The test is built so that the network can
only win on appearance:

* sizes matched: real and synthetic lesions are binned by equivalent-sphere radius (the
  detection bins 0-5-10-15-20-inf mm) and each bin keeps as many of each kind as the rarer
  kind has (:func:`match_size_bins`), so neither the size mix nor the class balance tells
  them apart;
* folds by case: every lesion of one case (a real scan, or all synthetic draws of one
  healthy scan) lies in the same fold (:func:`case_folds`), so the network is tested on
  scans it never saw. A kind with lesions from a single case (one annotated scan with many
  lesions) is folded by lesion instead (:func:`fold_groups`): its lesions are then split
  between train and test folds, and the result says so (``fold_unit``);
* the same crop size, window and flips for both kinds.

The score is the ROC AUC on each held-out fold (:func:`roc_auc`, the Mann-Whitney
statistic): 0.5 means the network cannot tell them apart, 1 that it always can. Every AUC
comes with a bootstrap 95 % interval (:func:`bootstrap_auc`: held-out crops resampled within
their fold and kind).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy import stats
from torch import nn

from labelfree.evaluation.lesions import RADIUS_BIN_EDGES_MM


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 positive); ties count half.

    NaN when one class is absent.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = stats.rankdata(scores)  # average ranks: ties count half
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def match_size_bins(radius_real: Sequence[float], radius_syn: Sequence[float], rng: np.random.Generator,
                    edges: Sequence[float] = RADIUS_BIN_EDGES_MM) -> tuple[np.ndarray, np.ndarray]:
    """Indices of real and synthetic lesions with the same count in every radius bin (mm).

    Each bin keeps ``min(n_real, n_syn)`` lesions of each kind, drawn at random.
    """
    radius_real, radius_syn = np.asarray(radius_real, dtype=float), np.asarray(radius_syn, dtype=float)
    bins_real = np.digitize(radius_real, edges[1:-1])
    bins_syn = np.digitize(radius_syn, edges[1:-1])
    keep_real, keep_syn = [], []
    for b in range(len(edges) - 1):
        r, s = np.flatnonzero(bins_real == b), np.flatnonzero(bins_syn == b)
        n = min(len(r), len(s))
        keep_real.extend(rng.choice(r, n, replace=False).tolist())
        keep_syn.extend(rng.choice(s, n, replace=False).tolist())
    return np.array(sorted(keep_real), dtype=int), np.array(sorted(keep_syn), dtype=int)


def case_folds(groups: Sequence[str], labels: Sequence[int], n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold (0..n_folds-1) of every sample; all samples of one group (case) share a fold.

    Groups are dealt round-robin in random order, separately per label, so every fold gets
    cases of both kinds when each kind has at least ``n_folds`` cases.
    """
    groups = np.asarray(groups)
    labels = np.asarray(labels)
    fold = np.full(len(groups), -1, dtype=int)
    for value in np.unique(labels):
        names = np.unique(groups[labels == value])
        names = names[rng.permutation(len(names))]
        for i, name in enumerate(names):
            fold[(groups == name) & (labels == value)] = i % n_folds
    return fold


def fold_groups(groups: Sequence[str], labels: Sequence[int]) -> tuple[np.ndarray, dict]:
    """The fold units of each crop: its case, or, for a kind whose crops come from fewer than two
    cases, the crop itself.

    Returns:
        ``(units, fold_unit)``: ``units`` the group name of each crop for :func:`case_folds`;
        ``fold_unit`` ``{"real": "case" | "lesion", "synthetic": ...}``.
    """
    groups = np.asarray(groups).astype(object)
    labels = np.asarray(labels, dtype=int)
    units = groups.copy()
    fold_unit = {}
    for value, kind in ((0, "real"), (1, "synthetic")):
        these = labels == value
        if len(np.unique(groups[these])) >= 2:
            fold_unit[kind] = "case"
        else:
            fold_unit[kind] = "lesion"
            units[these] = [f"{g}#lesion{i}" for i, g in zip(np.flatnonzero(these), groups[these])]
    return units.astype(str), fold_unit


def bootstrap_auc(scores: np.ndarray, labels: np.ndarray, fold: np.ndarray, n_boot: int = 1000,
                  seed: int = 0) -> dict:
    """Bootstrap 95 % intervals of the fold-mean AUC and the pooled AUC.

    Each replicate redraws, with replacement, the held-out crops of every fold and kind (as many
    as there were), then recomputes each fold's AUC (their mean) and the AUC of all the drawn
    scores together. Returns ``auc_ci95`` and ``auc_pooled_ci95``: [2.5, 97.5] percentiles.
    """
    rng = np.random.default_rng(seed)
    cells = [np.flatnonzero((fold == k) & (labels == v)) for k in np.unique(fold) for v in (0, 1)]
    cells = [c for c in cells if len(c)]
    means, pooled = [], []
    for _ in range(int(n_boot)):
        drawn = np.concatenate([rng.choice(c, len(c)) for c in cells])
        aucs = [roc_auc(scores[drawn][fold[drawn] == k], labels[drawn][fold[drawn] == k]) for k in np.unique(fold)]
        aucs = [a for a in aucs if np.isfinite(a)]
        if aucs:
            means.append(np.mean(aucs))
        pooled.append(roc_auc(scores[drawn], labels[drawn]))

    def ci(values):
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values.size else \
            [math.nan, math.nan]

    return {"auc_ci95": ci(means), "auc_pooled_ci95": ci(pooled), "n_boot": int(n_boot)}


class LesionCNN(nn.Module):
    """Three conv-BN-ReLU stages (8, 16, 32 channels), two max-pools, global average, one logit.

    Input ``(B, 1, S, S, S)``; output ``(B,)`` logits (synthetic positive).
    """

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        layers, c_in = [], 1
        for i, c_out in enumerate((width, 2 * width, 4 * width)):
            layers += [nn.Conv3d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)]
            if i < 2:
                layers.append(nn.MaxPool3d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3, 4))).squeeze(1)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips on each spatial axis, per batch (lesions have no preferred side)."""
    for axis in (2, 3, 4):
        if torch.rand((), generator=generator) < 0.5:
            x = torch.flip(x, (axis,))
    return x


def train_and_score(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, epochs: int, seed: int,
                    device: torch.device, batch_size: int = 16, lr: float = 2e-3) -> np.ndarray:
    """Train a fresh :class:`LesionCNN` on ``(N, S, S, S)`` crops and return the test scores (logits).

    Args:
        x_train: training crops, float32 in [0, 1].
        y_train: 1 synthetic, 0 real.
        x_test: held-out crops.
        epochs: passes over the training crops.
        seed: seeds the weights, the batch order and the flips (torch generator).
        device: where to train (CPU or CUDA).
        batch_size: crops per step.
        lr: AdamW learning rate.
    """
    generator = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(seed))
        model = LesionCNN().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()
    xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))[:, None]
    yt = torch.from_numpy(np.asarray(y_train, dtype=np.float32))
    model.train()
    for _ in range(int(epochs)):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            xb = _augment(xt[idx], generator).to(device)
            loss = loss_fn(model(xb), yt[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        xs = torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32))[:, None]
        return torch.cat([model(xs[i:i + 64].to(device)).cpu() for i in range(0, len(xs), 64)]).numpy()


def machine_turing_test(crops: np.ndarray, labels: Sequence[int], groups: Sequence[str], n_folds: int = 5,
                        epochs: int = 20, seed: int = 0, device: torch.device | str = "cpu") -> dict:
    """Cross-validated ROC AUC of a CNN telling synthetic (1) from real (0) lesion crops.

    Args:
        crops: ``(N, S, S, S)`` float32 crops (already size matched, see :func:`match_size_bins`).
        labels: 1 synthetic, 0 real.
        groups: case of each crop; folds never split a case of a kind with at least two cases
            (a kind from one case is folded by lesion, :func:`fold_groups`).
        n_folds: folds (at most the number of fold units of the rarer kind, at least 2).
        epochs: training passes per fold.
        seed: seeds the folds and every fold's network.
        device: torch device.

    Returns:
        ``auc`` (mean over folds with both kinds), ``auc_std`` (their SD), ``auc_folds``,
        ``auc_pooled`` (all held-out scores together), ``auc_ci95`` and ``auc_pooled_ci95``
        (bootstrap 95 % intervals, :func:`bootstrap_auc`), ``fold_unit`` (per kind: "case" or
        "lesion"), ``n_folds``, ``n_real``, ``n_synthetic``.

    Raises:
        ValueError: fewer than two crops of either kind (nothing to fold).
    """
    labels = np.asarray(labels, dtype=int)
    groups = np.asarray(groups)
    units, fold_unit = fold_groups(groups, labels)
    n_units = min(len(np.unique(units[labels == v])) for v in (0, 1)) if len(set(labels.tolist())) == 2 else 0
    n_folds = min(int(n_folds), n_units)
    if n_folds < 2:
        raise ValueError(f"the machine Turing test needs at least two real and two synthetic lesions "
                         f"(got {n_units} of the rarer kind after size matching)")
    device = torch.device(device)
    rng = np.random.default_rng(seed)
    fold = case_folds(units, labels, n_folds, rng)
    scores = np.zeros(len(labels), dtype=np.float64)
    aucs = []
    for k in range(n_folds):
        test, train = fold == k, fold != k
        scores[test] = train_and_score(crops[train], labels[train], crops[test], epochs, seed + 1000 * (k + 1), device)
        aucs.append(roc_auc(scores[test], labels[test]))
    finite = [a for a in aucs if np.isfinite(a)]
    return {
        "auc": float(np.mean(finite)) if finite else math.nan,
        "auc_std": float(np.std(finite)) if finite else math.nan,
        "auc_folds": aucs,
        "auc_pooled": roc_auc(scores, labels),
        **bootstrap_auc(scores, labels, fold, seed=seed),
        "fold_unit": fold_unit,
        "n_folds": n_folds,
        "n_real": int((labels == 0).sum()),
        "n_synthetic": int((labels == 1).sum()),
        "epochs": int(epochs),
    }
