"""Shared phantom fixtures: small real data roots on disk, generated once per test session."""

from __future__ import annotations

import json

import pytest

#: Coarse voxel size (mm) of the test phantoms: same anatomy as the default, 10x fewer voxels.
TEST_SPACING = (2.0, 2.0, 3.0)
#: Case counts of the default data root (scripts/make_phantom_data.py defaults).
DEFAULT_COUNTS = {"n_healthy": 8, "n_tumor": 4, "n_chest_healthy": 2, "n_chest_nodule": 2, "n_pancreas_tumor": 2,
                  "n_kidney_tumor": 2}


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory):
    """A phantom data root with the default case counts and layout, at coarse spacing.

    Holds 8 healthy abdomens (with liver, pancreas, kidney and multi-organ labels), 4 liver-,
    2 pancreas- and 2 kidney-tumour cases, 2 healthy chests and 2 nodule chests as NIfTI files,
    ``datafolds/*.json`` (healthy, real_0..3, mix_0..3, lits, chest, pancreas, kidney,
    multiorgan) and ``phantom_info.json``; no previews. Treat it as read-only: it is shared by
    all tests.
    """
    from labelfree.phantom import make_phantom_dataset

    root = tmp_path_factory.mktemp("phantom_root")
    make_phantom_dataset(root, seed=0, spacing=TEST_SPACING, previews=False, progress=False, **DEFAULT_COUNTS)
    return root


@pytest.fixture(scope="session")
def phantom_info(phantom_root):
    """The parsed ``phantom_info.json`` of :func:`phantom_root`."""
    return json.loads((phantom_root / "phantom_info.json").read_text())


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Tools called in-process may set torch's thread count (the realism CLI's ``--threads``, for one);
    a later test that compares an in-process run with a subprocess run needs the default back."""
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
