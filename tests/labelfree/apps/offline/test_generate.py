"""labelfree.apps.offline.generate: offline synthetic-tumor datasets from real phantom files on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from labelfree.io.atomic import save_nifti_atomic, write_json_atomic
from labelfree.apps.offline.generate import main
from labelfree.phantom.case import generate_case

#: Coarse voxels (mm): the phantom's anatomy in about 60k voxels, so each copy takes well under a second.
SPACING = (5.0, 5.0, 5.0)


def _write_cases(root: Path, orientation: str = "RAS") -> Path:
    """Two healthy phantom abdomens and one with liver tumors, plus their datalist."""
    training = []
    for name, seed, lesions in (("healthy_a", 1, False), ("healthy_b", 2, False), ("tumor_c", 3, True)):
        case = generate_case("abdomen", seed=seed, lesions=lesions, spacing=SPACING, orientation=orientation)
        save_nifti_atomic(case.image, case.affine, root / "img" / f"{name}.nii.gz", dtype=np.int16)
        save_nifti_atomic(case.label, case.affine, root / "lab" / f"{name}.nii.gz", dtype=np.uint8)
        training.append({"image": f"img/{name}.nii.gz", "label": f"lab/{name}.nii.gz"})
    write_json_atomic(root / "list.json", {"training": training, "validation": training[2:]})
    return root / "list.json"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("offline_src")
    return root, _write_cases(root)


def _run(source, out: Path, *extra) -> int:
    root, datalist = source
    return main(["--json_dir", str(datalist), "--train_dir", str(root), "--out", str(out), "--no_progress", *extra])


def _load(path: Path):
    img = nib.load(str(path))
    return np.asanyarray(img.dataobj), img


@pytest.fixture(scope="module")
def generated(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("offline_out")
    assert _run(source, out, "--copies", "2", "--seed", "7", "--workers", "1", "--include_source") == 0
    return out


def test_copies_keep_geometry_and_change_only_the_organ(source, generated):
    root, _ = source
    for case in ("healthy_a", "healthy_b"):
        src_image, src_img = _load(root / "img" / f"{case}.nii.gz")
        src_label, _ = _load(root / "lab" / f"{case}.nii.gz")
        for k in range(2):
            image, img = _load(generated / "imagesTr" / f"{case}_syn{k:02d}_0000.nii.gz")
            label, _ = _load(generated / "labelsTr" / f"{case}_syn{k:02d}.nii.gz")
            assert image.shape == src_image.shape and image.dtype == src_image.dtype == np.int16
            np.testing.assert_allclose(img.affine, src_img.affine)
            tumor = label == 2
            assert tumor.any(), f"{case} copy {k} has no synthetic tumor"
            # Tumors only inside the source organ; the organ stays 1 elsewhere; nothing outside changes.
            assert np.all(src_label[tumor] == 1)
            np.testing.assert_array_equal(label[~tumor], src_label[~tumor])
            np.testing.assert_array_equal(image[src_label == 0], src_image[src_label == 0])
            assert image[tumor].mean() < src_image[tumor].mean() - 20  # liver tumors are darker
        # The two copies differ (own seeds).
        a, _ = _load(generated / "labelsTr" / f"{case}_syn00.nii.gz")
        b, _ = _load(generated / "labelsTr" / f"{case}_syn01.nii.gz")
        assert not np.array_equal(a, b)


def test_lesion_manifest_matches_the_written_labels(generated):
    lesions = json.loads((generated / "lesions.json").read_text())["lesions"]
    records = {p.stem: json.loads(p.read_text()) for p in (generated / "records").glob("*.json")}
    for name, record in records.items():
        label, img = _load(generated / record["label"])
        components, n = ndimage.label(label == 2, structure=np.ones((3, 3, 3)))
        mine = [l for l in lesions if l["sample"] == name]
        assert len(mine) == n, name
        if n == 0:
            continue
        sizes = np.bincount(components.ravel())[1:]
        assert sorted(l["voxels"] for l in mine) == sorted(sizes.tolist())
        voxel_ml = float(np.prod(img.header.get_zooms()[:3])) / 1000
        for lesion in mine:
            centre = np.array(lesion["center_voxel"])
            # The centre's component is the one of that size (centres of compact blobs lie inside them).
            lo, hi = np.array(lesion["bbox_voxel"]).T
            assert np.all(lo <= centre) and np.all(centre <= hi)
            assert lesion["volume_ml"] == pytest.approx(lesion["voxels"] * voxel_ml, rel=1e-3)
            world = img.affine @ np.array([*centre, 1.0])
            np.testing.assert_allclose(lesion["center_mm"], world[:3], atol=0.02)
            if record["kind"] == "synthetic":
                assert lesion["tumor_type"] == record["tumor_type"] in ("tiny", "small", "medium", "large", "mix")
                assert lesion["seed"] == record["seed"] and isinstance(lesion["seed"], int)
            else:  # the real tumors of a copied source case
                assert lesion["tumor_type"] is None and lesion["seed"] is None


def test_tumor_case_is_copied_not_painted_and_datalist_loads(generated, source):
    from labelfree.data.datalist import load_datalist

    assert not (generated / "imagesTr" / "tumor_c_syn00_0000.nii.gz").exists()
    assert (generated / "imagesTr" / "tumor_c_src_0000.nii.gz").is_file()
    src = json.loads((generated / "records" / "tumor_c_src.json").read_text())
    assert src["healthy"] is False and src["lesions"]
    items = load_datalist(generated / "datalist.json", "training", generated)
    assert len(items) == 2 * 2 + 3
    assert all(os.path.isfile(i["image"]) and os.path.isfile(i["label"]) for i in items)
    validation = load_datalist(generated / "datalist.json", "validation", "/nonexistent")
    assert validation and all(os.path.isfile(i["image"]) for i in validation)


@pytest.mark.slow
def test_same_seed_same_dataset_whatever_the_workers(source, generated, tmp_path):
    out = tmp_path / "again"
    assert _run(source, out, "--copies", "2", "--seed", "7", "--workers", "2", "--include_source") == 0
    for path in sorted((generated / "labelsTr").glob("*.nii.gz")):
        np.testing.assert_array_equal(_load(path)[0], _load(out / "labelsTr" / path.name)[0])
        image = path.parent.parent / "imagesTr" / path.name.replace(".nii.gz", "_0000.nii.gz")
        np.testing.assert_array_equal(_load(image)[0], _load(out / "imagesTr" / image.name)[0])
    assert (json.loads((out / "lesions.json").read_text()) == json.loads((generated / "lesions.json").read_text()))
    other = tmp_path / "other_seed"
    assert _run(source, other, "--copies", "1", "--seed", "8", "--workers", "1") == 0
    a = _load(generated / "labelsTr" / "healthy_a_syn00.nii.gz")[0]
    assert not np.array_equal(a, _load(other / "labelsTr" / "healthy_a_syn00.nii.gz")[0])


def test_resume_rewrites_only_missing_samples_and_refuses_other_settings(source, tmp_path, capsys):
    out = tmp_path / "resume"
    args = ("--copies", "2", "--seed", "3", "--workers", "1")
    assert _run(source, out, *args) == 0
    kept = out / "labelsTr" / "healthy_a_syn00.nii.gz"
    first = _load(out / "labelsTr" / "healthy_b_syn01.nii.gz")[0]
    mtime = kept.stat().st_mtime_ns
    # An interrupted run: the record (written last) of one sample is missing.
    (out / "records" / "healthy_b_syn01.json").unlink()
    (out / "labelsTr" / "healthy_b_syn01.nii.gz").unlink()
    assert _run(source, out, *args) == 0
    assert kept.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(_load(out / "labelsTr" / "healthy_b_syn01.nii.gz")[0], first)
    capsys.readouterr()
    assert _run(source, out, "--copies", "2", "--seed", "4", "--workers", "1") == 2
    assert "other settings" in capsys.readouterr().err


def test_nnunet_dataset_json_and_lps_input(tmp_path):
    root = tmp_path / "lps"
    datalist = _write_cases(root, orientation="LPS")
    out = tmp_path / "out"
    assert main(["--json_dir", str(datalist), "--train_dir", str(root), "--out", str(out), "--copies", "1",
                 "--nnunet_dataset", "Dataset901_Test", "--tumor_prob", "0", "0", "0", "1", "0", "--no_progress",
                 "--workers", "1"]) == 0
    dataset = json.loads((out / "Dataset901_Test" / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "liver": 1, "tumor": 2}
    assert dataset["channel_names"] == {"0": "CT"} and dataset["file_ending"] == ".nii.gz"
    assert dataset["numTraining"] == len(list((out / "Dataset901_Test" / "imagesTr").iterdir())) == 2
    src_label, src = _load(root / "lab" / "healthy_a.nii.gz")
    label, img = _load(out / "Dataset901_Test" / "labelsTr" / "healthy_a_syn00.nii.gz")
    np.testing.assert_allclose(img.affine, src.affine)
    assert (label == 2).any() and np.all(src_label[label == 2] == 1)
    dataset_dir = out / "Dataset901_Test"
    lesions = json.loads((dataset_dir / "lesions.json").read_text())["lesions"]
    assert {l["tumor_type"] for l in lesions} == {"large"}
    listed = json.loads((dataset_dir / "datalist.json").read_text())["training"]
    assert all((dataset_dir / e["image"]).is_file() for e in listed)
    # A second dataset can share the nnUNet_raw folder.
    assert main(["--json_dir", str(datalist), "--train_dir", str(root), "--out", str(out), "--copies", "0",
                 "--include_source", "--nnunet_dataset", "Dataset902_Healthy", "--no_progress", "--workers", "1"]) == 0
    assert json.loads((out / "Dataset902_Healthy" / "dataset.json").read_text())["numTraining"] == 3


def test_bad_input_names_the_problem(tmp_path, capsys):
    root = tmp_path / "bad"
    case = generate_case("abdomen", seed=1, spacing=SPACING)
    save_nifti_atomic(case.image, case.affine, root / "a.nii.gz", dtype=np.int16)
    save_nifti_atomic(case.organs, case.affine, root / "a_organs.nii.gz", dtype=np.uint8)  # raw BTCV labels
    write_json_atomic(root / "list.json", {"training": [{"image": "a.nii.gz", "label": "a_organs.nii.gz"}]})
    assert main(["--json_dir", str(root / "list.json"), "--train_dir", str(root), "--out", str(tmp_path / "o"),
                 "--no_progress", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "a_organs.nii.gz" in err and "outside the liver convention" in err
    assert main(["--json_dir", str(root / "list.json"), "--out", str(tmp_path / "p"), "--tumor_prob", "0.5",
                 "0.5"]) == 2
    assert "--tumor_prob" in capsys.readouterr().err
    assert main(["--json_dir", str(root / "list.json"), "--out", str(tmp_path / "q"), "--synthesis", "no_such_model"]) == 2
    assert "no_such_model" in capsys.readouterr().err
