"""realism_classifier: AUC, size matching, folds by case, and the CNN's verdict on constructed crops."""

import numpy as np
import pytest
import torch

from labelfree.apps.realism.classifier import (bootstrap_auc, case_folds, fold_groups, machine_turing_test,
                                               match_size_bins, roc_auc)


def test_roc_auc_against_pair_counting():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 60).astype(float)  # many ties
    labels = rng.integers(0, 2, 60)
    pos, neg = scores[labels == 1], scores[labels == 0]
    expected = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(scores, labels) == pytest.approx(expected)
    assert roc_auc([0.1, 0.9], [0, 1]) == 1.0 and roc_auc([0.9, 0.1], [0, 1]) == 0.0
    assert np.isnan(roc_auc([0.1, 0.2], [1, 1]))


def test_size_bins_are_matched():
    rng = np.random.default_rng(1)
    real, syn = rng.uniform(0, 25, 30), rng.uniform(0, 40, 200)
    keep_real, keep_syn = match_size_bins(real, syn, rng)
    edges = [5, 10, 15, 20]
    assert len(keep_real) == len(keep_syn) > 0
    assert np.array_equal(np.bincount(np.digitize(real[keep_real], edges), minlength=5),
                          np.bincount(np.digitize(syn[keep_syn], edges), minlength=5))


def test_folds_never_split_a_case():
    groups = np.array([f"c{i // 3}" for i in range(30)])
    labels = np.array([0] * 15 + [1] * 15)
    fold = case_folds(groups, labels, 3, np.random.default_rng(0))
    for name in np.unique(groups):
        assert len(set(fold[groups == name])) == 1
    for k in range(3):
        assert set(labels[fold == k]) == {0, 1}


def ball_crops(n, contrast_hu, rng, size=12):
    """Windowed (liver window -21..189 HU) crops: a ball of radius 2-4 voxels in a noisy 80 HU organ."""
    g = np.indices((size,) * 3).astype(float) - size / 2 + 0.5
    crops = []
    for _ in range(n):
        centre = rng.uniform(-1, 1, 3)[:, None, None, None]
        ball = np.sqrt(((g - centre) ** 2).sum(axis=0)) <= rng.uniform(2.0, 4.0)
        hu = 80.0 + contrast_hu * ball + rng.normal(0.0, 15.0, ball.shape)
        crops.append(np.clip((hu + 21.0) / 210.0, 0.0, 1.0))
    return np.array(crops, dtype=np.float32)


def turing(contrast_real, contrast_syn, n=24, seed=0):
    rng = np.random.default_rng(seed)
    crops = np.concatenate([ball_crops(n, contrast_real, rng), ball_crops(n, contrast_syn, rng)])
    labels = np.r_[np.zeros(n, int), np.ones(n, int)]
    groups = [f"real{i % 6}" for i in range(n)] + [f"syn{i % 6}" for i in range(n)]
    torch.set_num_threads(1)  # the net is tiny: threads only fight on a shared machine
    return machine_turing_test(crops, labels, groups, n_folds=3, epochs=4, seed=seed)


def test_same_distribution_is_indistinguishable():
    result = turing(-60.0, -60.0)
    assert result["n_folds"] == 3 and len(result["auc_folds"]) == 3
    assert abs(result["auc"] - 0.5) < 0.2


def test_bright_and_dark_lesions_are_told_apart():
    result = turing(100.0, -100.0)
    assert result["auc"] > 0.95
    assert result == turing(100.0, -100.0)  # seeded: the same folds, weights and flips


def test_too_few_lesions():
    crops = np.zeros((3, 8, 8, 8), np.float32)
    with pytest.raises(ValueError, match="at least two"):
        machine_turing_test(crops, [0, 0, 1], ["a", "a", "b"])


def test_a_kind_from_one_case_is_folded_by_lesion_and_the_other_kind_still_by_case():
    labels = np.array([0] * 6 + [1] * 6)
    groups = np.array(["real:a"] * 6 + ["syn:x", "syn:x", "syn:y", "syn:y", "syn:z", "syn:z"])
    units, unit = fold_groups(groups, labels)
    assert unit == {"real": "lesion", "synthetic": "case"}
    assert len(set(units[:6])) == 6 and list(units[6:]) == list(groups[6:])
    fold = case_folds(units, labels, 3, np.random.default_rng(0))
    for name in ("syn:x", "syn:y", "syn:z"):  # a synthetic case is never split
        assert len(set(fold[groups == name])) == 1
    assert sorted(np.bincount(fold[:6])) == [2, 2, 2]  # the real case's lesions spread over the folds
    # Two cases of each kind: folded by case, as before.
    assert fold_groups(["a", "a", "b", "c", "d", "d"], [0, 0, 0, 1, 1, 1])[1] == {"real": "case", "synthetic": "case"}


def test_bootstrap_interval_holds_the_auc_and_narrows_with_more_crops():
    rng = np.random.default_rng(0)

    def interval(n):
        labels = np.r_[np.zeros(n, int), np.ones(n, int)]
        scores = rng.normal(size=2 * n) + 0.8 * labels
        fold = np.tile([0, 1], n)
        auc = np.mean([roc_auc(scores[fold == k], labels[fold == k]) for k in (0, 1)])
        ci = bootstrap_auc(scores, labels, fold, seed=1)
        low, high = ci["auc_ci95"]
        assert low <= auc <= high and ci["auc_pooled_ci95"][0] <= roc_auc(scores, labels) <= ci["auc_pooled_ci95"][1]
        return high - low

    assert interval(400) < 0.5 * interval(20)


def test_one_case_per_kind_gives_an_auc_with_its_interval():
    rng = np.random.default_rng(0)
    crops = np.concatenate([rng.normal(0.3, 0.02, (8, 8, 8, 8)),
                            rng.normal(0.7, 0.02, (8, 8, 8, 8))]).astype(np.float32)
    result = machine_turing_test(crops, [0] * 8 + [1] * 8, ["a"] * 8 + ["b"] * 8, n_folds=2, epochs=3)
    assert result["fold_unit"] == {"real": "lesion", "synthetic": "lesion"} and result["n_folds"] == 2
    assert result["auc"] > 0.9 and result["auc_ci95"][0] <= result["auc"] <= result["auc_ci95"][1] <= 1.0
