"""Tumor counts, radii and deformation strengths per type, against the published values."""

import numpy as np
import pytest

from tumor_synthesis.sizes import TUMOR_TYPES, sample_tumor_specs

# Hu et al. (CVPR 2023), written out independently of the package's table.
PUBLISHED_COUNTS = {
    "tiny": {"tiny": (3, 10)},
    "small": {"small": (3, 10)},
    "medium": {"medium": (2, 5)},
    "large": {"large": (1, 3)},
    "mix": {"tiny": (3, 10), "small": (5, 10), "medium": (2, 5), "large": (1, 3)},
    # DiffTumor (CVPR 2024): 1-3 tiny/small tumors, or one medium/large tumor.
    "few_tiny": {"tiny": (1, 3)},
    "few_small": {"small": (1, 3)},
    "one_medium": {"medium": (1, 1)},
    "one_large": {"large": (1, 1)},
}
PUBLISHED_RADII = {"tiny": (3, 5), "small": (6, 10), "medium": (12, 20), "large": (24, 40)}
PUBLISHED_SIGMAS = {
    "tiny": ("uniform", 0.5, 1.0),
    "small": ("integer", 1, 2),
    "medium": ("integer", 3, 6),
    "large": ("integer", 5, 10),
}


def test_the_types_are_the_published_ones():
    assert set(TUMOR_TYPES) == set(PUBLISHED_COUNTS)


@pytest.mark.parametrize("tumor_type", list(PUBLISHED_COUNTS))
def test_counts_radii_and_sigmas_follow_the_published_laws(tumor_type):
    rng = np.random.default_rng(0)
    counts = {size: [] for size in PUBLISHED_COUNTS[tumor_type]}
    radii = {size: [] for size in PUBLISHED_COUNTS[tumor_type]}
    sigmas = {size: [] for size in PUBLISHED_COUNTS[tumor_type]}
    for _ in range(300):
        specs = sample_tumor_specs(rng, tumor_type)
        for size in counts:
            mine = [s for s in specs if s.size == size]
            counts[size].append(len(mine))
            radii[size] += [r for s in mine for r in s.radii_mm]
            sigmas[size] += [s.sigma_mm for s in mine]
        assert {s.size for s in specs} <= set(counts)
    for size, (lo, hi) in PUBLISHED_COUNTS[tumor_type].items():
        # Uniform integers: every value in the range appears, none outside, mean in the middle.
        assert sorted(set(counts[size])) == list(range(lo, hi + 1))
        assert np.mean(counts[size]) == pytest.approx((lo + hi) / 2, abs=0.5)
        r_lo, r_hi = PUBLISHED_RADII[size]
        assert sorted(set(radii[size])) == list(range(r_lo, r_hi + 1))
        kind, s_lo, s_hi = PUBLISHED_SIGMAS[size]
        values = np.array(sigmas[size])
        assert values.min() >= s_lo and values.max() <= s_hi
        if kind == "integer":
            assert sorted(set(values)) == list(range(s_lo, s_hi + 1))
        else:
            assert len(set(values)) == len(values)  # continuous
            assert values.mean() == pytest.approx((s_lo + s_hi) / 2, abs=0.05)


def test_unknown_type_is_rejected():
    with pytest.raises(ValueError, match="unknown tumor type"):
        sample_tumor_specs(np.random.default_rng(0), "huge")
