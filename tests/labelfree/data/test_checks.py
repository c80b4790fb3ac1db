"""labelfree/data/checks.py and scripts/check_data.py: every planted problem is found, a clean root passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from labelfree.data.checks import check_case, check_datalist, format_table
from labelfree.data.datalist import DatalistError

REPO = Path(__file__).resolve().parents[3]
SHAPE = (24, 24, 12)
SPACING = (0.8, 0.8, 2.5)
AFFINE = np.diag([*SPACING, 1.0])
#: The liver convention (0 background, 1 liver, 2 tumor), organ label 1.
LIVER = {"allowed_labels": (0, 1, 2), "organ_labels": (1,)}
AFFINE[:3, 3] = (-50.0, 20.0, 100.0)


def save(path: Path, data: np.ndarray, affine=AFFINE, dtype=np.uint8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data).astype(dtype), affine), str(path))
    return path


def ct(seed: int, shape=SHAPE) -> np.ndarray:
    # Noise does not compress: half of the file really is half of the data.
    return np.random.default_rng(seed).integers(-1000, 400, shape)


def liver(tumor: bool = False, shape=SHAPE) -> np.ndarray:
    label = np.zeros(shape, np.uint8)
    label[4:14, 5:15, 3:9] = 1
    if tumor:
        label[6:9, 7:10, 4:6] = 2
    return label


def make_case(root: Path, name: str, label: np.ndarray | None = None, image_affine=AFFINE, seed=0,
              shape=SHAPE, label_dtype=np.uint8) -> dict:
    save(root / f"img/{name}.nii.gz", ct(seed, shape), image_affine, np.int16)
    save(root / f"lab/{name}.nii.gz", liver() if label is None else label, AFFINE, label_dtype)
    return {"image": f"img/{name}.nii.gz", "label": f"lab/{name}.nii.gz"}


def write_list(path: Path, training: list, validation: list) -> Path:
    path.write_text(json.dumps({"training": training, "validation": validation}))
    return path


def clean_root(root: Path) -> Path:
    training = [make_case(root, f"healthy_{i}", seed=i) for i in range(3)]
    validation = [make_case(root, f"tumor_{i}", liver(tumor=True), seed=10 + i) for i in range(2)]
    return write_list(root / "list.json", training, validation)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts/check_data.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_clean_root_passes(tmp_path):
    datalist = clean_root(tmp_path)
    result = run_cli("--json_dir", str(datalist), "--train_dir", str(tmp_path), "--val_dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 case(s) checked (training, validation): 5 ok, 0 with problems" in result.stdout
    assert "problems:" not in result.stdout
    for name in ("healthy_0", "tumor_1", "24x24x12", "0.8x0.8x2.5", "0,1,2"):
        assert name in result.stdout


def test_case_figures_against_an_independent_computation(tmp_path):
    case = make_case(tmp_path, "a", liver(tumor=True))
    r = check_case(str(tmp_path / case["image"]), str(tmp_path / case["label"]), **LIVER)
    expected_organ = int((liver(tumor=True) == 1).sum())
    assert r.ok and r.shape == SHAPE and r.spacing == SPACING
    assert r.label_values == (0, 1, 2)
    assert r.label_counts[2] == 3 * 3 * 2
    assert r.organ_voxels == expected_organ
    assert r.organ_ml == pytest.approx(expected_organ * 0.8 * 0.8 * 2.5 / 1000)
    multi = check_case(str(tmp_path / case["image"]), str(tmp_path / case["label"]), (0, 1, 2), organ_labels=(1, 2))
    assert multi.organ_voxels == int((liver(tumor=True) > 0).sum())


def test_every_planted_problem_is_found(tmp_path):
    root = tmp_path
    good = make_case(root, "good", seed=1)
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.01  # 0.01 mm: above the 1e-3 mm tolerance
    affine_case = make_case(root, "affine", image_affine=shifted, seed=2)
    tiny_shift = AFFINE.copy()
    tiny_shift[0, 3] += 1e-4  # within tolerance: fine
    tolerated = make_case(root, "tolerated", image_affine=tiny_shift, seed=3)
    shape_case = make_case(root, "shape", seed=4)
    save(root / "lab/shape.nii.gz", liver(shape=(24, 24, 11)))
    missing = {"image": "img/missing.nii.gz", "label": "lab/good.nii.gz"}
    corrupt = make_case(root, "corrupt", seed=5)
    blob = (root / corrupt["image"]).read_bytes()
    (root / corrupt["image"]).write_bytes(blob[: len(blob) // 2])
    nib.load(str(root / corrupt["image"]))  # the header still loads: only reading the data finds it
    empty = make_case(root, "empty", np.zeros(SHAPE, np.uint8), seed=6)
    odd_values = liver()
    odd_values[0, 0, 0] = 7
    unexpected = make_case(root, "unexpected", odd_values, seed=7)
    fractional = make_case(root, "fractional", liver() * 0.5, seed=8, label_dtype=np.float32)
    datalist = write_list(root / "list.json",
                          [good, affine_case, tolerated, shape_case, missing, corrupt, empty, unexpected, fractional],
                          [good])  # good also in validation: a leak

    results, warnings = check_datalist(datalist, root, root, **LIVER)
    problems = {r.name: " | ".join(r.problems) for r in results if r.split == "training"}
    assert problems["good"] == "" and problems["tolerated"] == ""
    assert "affine mismatch" in problems["affine"]
    assert "shape mismatch" in problems["shape"] and "(24, 24, 11)" in problems["shape"]
    assert "image file missing" in problems["missing"]
    assert "image file unreadable" in problems["corrupt"]
    assert "organ empty" in problems["empty"]
    assert "unexpected label values [7]" in problems["unexpected"]
    assert "non-integer" in problems["fractional"]
    assert len([r for r in results if not r.ok]) == 7
    assert warnings == [f"{(root / good['image']).resolve()} is in both training and validation"]

    # The CLI reports the same and fails; restricted to the validation split it passes.
    result = run_cli("--json_dir", str(datalist), "--train_dir", str(root), "--val_dir", str(root),
                     "--report", str(root / "report.json"), "--workers", "2")
    assert result.returncode == 1
    for name in ("affine", "shape", "missing", "corrupt", "empty", "unexpected", "fractional"):
        assert f"] {name}:" in result.stdout
    assert "10 case(s) checked" in result.stdout and "3 ok, 7 with problems, 1 warning(s)" in result.stdout
    assert "warning: " in result.stdout and "is in both training and validation" in result.stdout
    report = json.loads((root / "report.json").read_text())
    assert report["ok"] is False and sum(not c["ok"] for c in report["cases"]) == 7
    only_val = run_cli("--json_dir", str(datalist), "--train_dir", str(root), "--val_dir", str(root),
                       "--split", "validation")
    assert only_val.returncode == 0, only_val.stdout


def test_overlap_is_a_warning_not_a_failure(tmp_path):
    # An evaluation list may train and validate on the same cases on purpose.
    datalist = clean_root(tmp_path)
    data = json.loads(datalist.read_text())
    data["training"] += data["validation"] + data["training"][:1]
    datalist.write_text(json.dumps(data))
    result = run_cli("--json_dir", str(datalist), "--train_dir", str(tmp_path), "--val_dir", str(tmp_path))
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("is in both training and validation") == 2
    assert "listed 2 times in training" in result.stdout and "3 warning(s)" in result.stdout


@pytest.mark.slow
def test_allowed_labels_and_organ_label_options(tmp_path):
    label = liver()
    label[label == 1] = 3  # a multi-organ style label: pancreas 3
    case = make_case(tmp_path, "pancreas", label)
    datalist = write_list(tmp_path / "list.json", [case], [])
    args = ("--json_dir", str(datalist), "--train_dir", str(tmp_path), "--split", "training")
    default = run_cli(*args)
    assert default.returncode == 1 and "unexpected label values [3]" in default.stdout and "organ empty" in default.stdout
    assert run_cli(*args, "--allowed_labels", "0,1,2,3,4", "--organ_label", "3").returncode == 0
    # Without --allowed_labels, the values the datalist declares in its "labels" header are allowed.
    data = json.loads(datalist.read_text())
    data["labels"] = {"0": "background", "1": "liver", "2": "liver tumor", "3": "pancreas", "4": "pancreas tumor"}
    datalist.write_text(json.dumps(data))
    declared = run_cli(*args, "--organ_label", "3")
    assert declared.returncode == 0, declared.stdout
    assert "allowed label values: 0,1,2,3,4" in declared.stdout


def test_workers_give_the_same_results(tmp_path):
    datalist = clean_root(tmp_path)
    one, _ = check_datalist(datalist, tmp_path, tmp_path, workers=1, **LIVER)
    two, _ = check_datalist(datalist, tmp_path, tmp_path, workers=2, **LIVER)
    assert [r.to_dict() for r in one] == [r.to_dict() for r in two]
    table = format_table(one)
    assert table.splitlines()[0].split() [:3] == ["case", "split", "shape"] and len(table.splitlines()) == 7


def test_unreadable_datalist(tmp_path):
    with pytest.raises(DatalistError):
        check_datalist(tmp_path / "nope.json", tmp_path, tmp_path, **LIVER)
    result = run_cli("--json_dir", str(tmp_path / "nope.json"))
    assert result.returncode == 1 and "datalist not found" in result.stderr
    (tmp_path / "partial.json").write_text(json.dumps({"training": []}))
    result = run_cli("--json_dir", str(tmp_path / "partial.json"), "--split", "validation")
    assert result.returncode == 1 and "no 'validation' list" in result.stderr
