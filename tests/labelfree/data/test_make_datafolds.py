"""datafolds/folds.py (pure functions) and datafolds/make_datafolds.py (CLI), plus the chain
transfer_label -> make_datafolds -> labelfree.data.datalist on a root in the original layout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from labelfree.data import make_datafolds
from labelfree.data.folds import (
    healthy_lists,
    mix_fold_lists,
    patient_id,
    patient_of_image,
    real_fold_lists,
    shared_patients,
    split_by_patient,
)
from labelfree.data.checks import check_datalist, declared_labels
from labelfree.data.datalist import check_datalist_files, load_datalist

REPO = Path(__file__).resolve().parents[3]
SHAPE = (16, 16, 8)
AFFINE = np.diag([0.9, 0.9, 3.0, 1.0])


def save(path: Path, data: np.ndarray, dtype=np.uint8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data).astype(dtype), AFFINE), str(path))


def liver(tumor: bool) -> np.ndarray:
    label = np.zeros(SHAPE, np.uint8)
    label[3:12, 3:12, 2:6] = 1
    if tumor:
        label[5:7, 5:7, 3:5] = 2
    return label


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-200, 200, SHAPE)


def multi_scan_cases(n_patients: int = 12) -> list[dict]:
    """Patients p00..p11 with 1-3 scans each (names like case_p03_s1.nii.gz)."""
    cases = []
    for p in range(n_patients):
        for s in range(1 + p % 3):
            cases.append({"image": f"img/case_p{p:02d}_s{s}.nii.gz", "label": f"lab/case_p{p:02d}_s{s}.nii.gz"})
    return cases


PATIENT_REGEX = r"^case_(p\d+)_"


# --------------------------------------------------------------------------- pure functions


def test_patient_id_default_and_regex():
    assert patient_id("04_LiTS/img/liver_12.nii.gz") == "liver_12"
    assert patient_id("a/b/LNDb-0003.nii") == "LNDb-0003"
    assert patient_id("img/case_p03_s1.nii.gz", PATIENT_REGEX) == "p03"
    assert patient_id("img/case_p03_s1.nii.gz", r"p\d+") == "p03"  # no group: the whole match
    with pytest.raises(ValueError, match="does not match"):
        patient_id("img/other.nii.gz", PATIENT_REGEX)


def test_split_by_patient_keeps_patients_together_and_covers_every_case_once():
    cases = multi_scan_cases()
    patient_of = patient_of_image(PATIENT_REGEX)
    folds = split_by_patient(cases, 4, np.random.default_rng(0), patient_of)
    assert len(folds) == 4
    validation = [c["image"] for fold in folds for c in fold]
    assert Counter(validation) == Counter(c["image"] for c in cases)  # each case exactly once
    fold_of_patient = {}
    for i, fold in enumerate(folds):
        for case in fold:
            assert fold_of_patient.setdefault(patient_of(case), i) == i, "a patient straddles two folds"
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 3  # at most one patient's scans apart


def test_split_by_patient_is_deterministic_for_a_seed_and_order_free():
    cases = multi_scan_cases()
    patient_of = patient_of_image(PATIENT_REGEX)
    a = split_by_patient(cases, 3, np.random.default_rng(7), patient_of)
    b = split_by_patient(list(reversed(cases)), 3, np.random.default_rng(7), patient_of)
    c = split_by_patient(cases, 3, np.random.default_rng(8), patient_of)
    assert a == b
    assert a != c


def test_split_by_patient_rejects_too_few_patients():
    with pytest.raises(ValueError, match="at least 5 patients"):
        split_by_patient(multi_scan_cases(4), 5, np.random.default_rng(0), patient_of_image(PATIENT_REGEX))
    with pytest.raises(ValueError, match="k >= 2"):
        split_by_patient(multi_scan_cases(4), 1, np.random.default_rng(0), patient_of_image(PATIENT_REGEX))


def test_real_and_mix_lists_partition_the_cases():
    cases = multi_scan_cases()
    folds = split_by_patient(cases, 3, np.random.default_rng(0), patient_of_image(PATIENT_REGEX))
    tumor_free = [{"image": "img/case_p99_s0.nii.gz", "label": "lab/case_p99_s0.nii.gz"}]
    healthy = [{"image": "h/a.nii.gz", "label": "label/a.nii.gz"}, {"image": tumor_free[0]["image"],
                                                                    "label": "label/lits-p99.nii.gz"}]
    reals = real_fold_lists(folds, tumor_free)
    mixes = mix_fold_lists(healthy, reals)
    all_images = {c["image"] for c in cases}
    for real, mix, fold in zip(reals, mixes, folds):
        train = {c["image"] for c in real["training"]}
        val = {c["image"] for c in real["validation"]}
        assert not train & val
        assert train | val == all_images | {tumor_free[0]["image"]}
        assert val == {c["image"] for c in fold}
        assert tumor_free[0]["image"] in train
        mix_images = [c["image"] for c in mix["training"]]
        assert len(mix_images) == len(set(mix_images))  # the tumor-free scan listed once
        assert {"image": tumor_free[0]["image"], "label": "label/lits-p99.nii.gz"} in mix["training"]
        assert set(mix_images) == train | {"h/a.nii.gz"}
        assert mix["validation"] == real["validation"]
    h = healthy_lists(healthy, cases)
    assert len(h["training"]) == 2 and len(h["validation"]) == len(cases)
    loose = patient_of_image(PATIENT_REGEX, strict=False)  # healthy names do not match the regex
    assert shared_patients(healthy, cases, loose) == set()
    rescan = [{"image": "other/case_p03_s9.nii.gz", "label": "label/x.nii.gz"}]
    assert shared_patients(healthy + rescan, cases, loose) == {"p03"}


# --------------------------------------------------------------------------- CLI


def make_converted_root(root: Path, tumor_cases=range(6)) -> Path:
    """Root as left by the ORIGINAL transfer_label (converted labels, no manifest)."""
    for i in (1, 2, 3):
        save(root / f"01_Multi-Atlas_Labeling/img/img000{i}.nii.gz", image(i), np.int16)
        save(root / f"label/multi-atlas-label000{i}.nii.gz", liver(False))
    save(root / "02_TCIA_Pancreas-CT/img/PANCREAS_0002.nii.gz", image(9), np.int16)
    save(root / "label/tcia-label0002.nii.gz", liver(False))
    save(root / "label/chaos-4_segmentation.nii.gz", liver(False))  # its image is missing
    for case in tumor_cases:
        save(root / f"04_LiTS/img/liver_{case}.nii.gz", image(20 + case), np.int16)
        save(root / f"04_LiTS/label/liver_{case}.nii.gz", liver(True))
    save(root / "04_LiTS/img/liver_32.nii.gz", image(50), np.int16)  # tumor-free, not converted
    save(root / "04_LiTS/label/liver_32.nii.gz", liver(False))
    return root


def test_make_datafolds_liver_lists(tmp_path, capsys):
    root = make_converted_root(tmp_path / "root")
    assert make_datafolds.main(["--data_root", str(root), "--k", "3", "--seed", "0"]) == 0
    out = root / "datafolds"
    names = sorted(p.name for p in out.glob("*.json"))
    assert names == ["healthy.json", "mix_0.json", "mix_1.json", "mix_2.json", "real_0.json", "real_1.json",
                     "real_2.json"]
    healthy = json.loads((out / "healthy.json").read_text())
    assert [c["image"] for c in healthy["training"]] == [
        "01_Multi-Atlas_Labeling/img/img0001.nii.gz", "01_Multi-Atlas_Labeling/img/img0002.nii.gz",
        "01_Multi-Atlas_Labeling/img/img0003.nii.gz", "02_TCIA_Pancreas-CT/img/PANCREAS_0002.nii.gz"]
    assert healthy["training"][3]["label"] == "label/tcia-label0002.nii.gz"
    assert [c["label"] for c in healthy["validation"]] == [f"04_LiTS/label/liver_{i}.nii.gz" for i in range(6)]
    assert healthy["numTraining"] == 4 and healthy["numValidation"] == 6
    printed = capsys.readouterr().out
    assert "chaos-4_segmentation.nii.gz: image 03_CHAOS/ct/img/4_image.nii.gz missing" in printed

    validations = []
    for i in range(3):
        real = json.loads((out / f"real_{i}.json").read_text())
        validations += [c["image"] for c in real["validation"]]
        assert "04_LiTS/img/liver_32.nii.gz" in [c["image"] for c in real["training"]]  # tumor-free: training only
        mix = json.loads((out / f"mix_{i}.json").read_text())
        assert mix["validation"] == real["validation"]
        assert len(mix["training"]) == len(real["training"]) + 4
    assert sorted(validations) == sorted(f"04_LiTS/img/liver_{i}.nii.gz" for i in range(6))

    # Same seed -> same files (nothing rewritten); another seed -> refused without --overwrite.
    before = {p.name: p.read_bytes() for p in out.glob("*.json")}
    assert make_datafolds.main(["--data_root", str(root), "--k", "3", "--seed", "0"]) == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} == before
    assert make_datafolds.main(["--data_root", str(root), "--k", "3", "--seed", "1"]) == 1
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} == before
    assert make_datafolds.main(["--data_root", str(root), "--k", "3", "--seed", "1", "--overwrite"]) == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} != before


def test_make_datafolds_patient_regex_and_too_many_folds(tmp_path):
    # liver_10/liver_11 are scans of patient "1", liver_20/liver_21 of patient "2", ...
    root = make_converted_root(tmp_path / "root", tumor_cases=(10, 11, 20, 21, 30, 31))
    out = tmp_path / "lists"
    assert make_datafolds.main(["--data_root", str(root), "--out_dir", str(out), "--k", "3",
                                "--patient_regex", r"^liver_(\d)"]) == 0
    patients = []
    for i in range(3):
        val = json.loads((out / f"real_{i}.json").read_text())["validation"]
        first_digits = {Path(c["image"]).name[6] for c in val}
        assert len(val) == 2 and len(first_digits) == 1  # both scans of one patient
        patients += first_digits
    assert sorted(patients) == ["1", "2", "3"]
    real = json.loads((out / "real_0.json").read_text())
    assert real["patient_regex"] == r"^liver_(\d)" and real["k"] == 3 and real["seed"] == 0
    # no MSD folder in this root
    assert make_datafolds.main(["--data_root", str(root), "--out_dir", str(out), "--real_dataset", "msd_liver"]) == 2
    # 4 folds, 3 patients
    assert make_datafolds.main(["--data_root", str(root), "--out_dir", str(out), "--k", "4", "--overwrite",
                                "--patient_regex", r"^liver_(\d)"]) == 2


def test_make_datafolds_lung_from_dataset_labels(tmp_path):
    root = tmp_path / "root"
    for i in (1, 2):
        save(root / f"05_Chest/img/chest_000{i}.nii.gz", image(i), np.int16)
        save(root / f"05_Chest/label/chest_000{i}.nii.gz", liver(False))
    save(root / "05_Chest/img/chest_0003.nii.gz", image(3), np.int16)  # no label: left out
    save(root / "06_LNDb/img/LNDb-0001.nii.gz", image(4), np.int16)
    save(root / "06_LNDb/label/LNDb-0001.nii.gz", liver(True))
    assert make_datafolds.main(["--data_root", str(root), "--organ", "lung"]) == 0
    chest = json.loads((root / "datafolds/chest.json").read_text())
    assert chest["labels"] == {"0": "background", "1": "lung", "2": "nodule"}
    assert [c["label"] for c in chest["training"]] == ["05_Chest/label/chest_0001.nii.gz",
                                                       "05_Chest/label/chest_0002.nii.gz"]
    assert chest["validation"] == [{"image": "06_LNDb/img/LNDb-0001.nii.gz", "label": "06_LNDb/label/LNDb-0001.nii.gz"}]


# --------------------------------------------------------------------------- the chain


@pytest.mark.slow
def test_chain_transfer_label_make_datafolds_datalist(tmp_path):
    """Raw original-layout root -> transfer_label -> make_datafolds -> datalists that resolve and check clean."""
    root = tmp_path / "root"
    for i in (1, 2):
        btcv = np.zeros(SHAPE, np.uint8)
        btcv[3:12, 3:12, 2:6] = 6
        btcv[12:15, 2:5, 1:3] = 11
        save(root / f"01_Multi-Atlas_Labeling/img/img000{i}.nii.gz", image(i), np.int16)
        save(root / f"01_Multi-Atlas_Labeling/label/label000{i}.nii.gz", btcv)
    for case in range(4):
        save(root / f"04_LiTS/img/liver_{case}.nii.gz", image(10 + case), np.int16)
        save(root / f"04_LiTS/label/liver_{case}.nii.gz", liver(tumor=case != 3))  # liver_3 tumor-free

    def run(*cmd: str) -> str:
        result = subprocess.run([sys.executable, *cmd], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    run("transfer_label.py", "--data_path", str(root))
    run("-m", "datafolds.make_datafolds", "--data_root", str(root), "--k", "3")
    run("datafolds/make_datafolds.py", "--data_root", str(root), "--k", "3")  # script form: same lists

    lists = root / "datafolds"
    healthy_train = load_datalist(lists / "healthy.json", "training", root)
    healthy_val = load_datalist(lists / "healthy.json", "validation", root)
    assert [Path(c["label"]).name for c in healthy_train] == [
        "multi-atlas-label0001.nii.gz", "multi-atlas-label0002.nii.gz", "lits-liver_3.nii.gz"]
    assert [Path(c["image"]).name for c in healthy_val] == ["liver_0.nii.gz", "liver_1.nii.gz", "liver_2.nii.gz"]
    for name in ("healthy", "real_0", "mix_2"):
        for split in ("training", "validation"):
            check_datalist_files(load_datalist(lists / f"{name}.json", split, root), f"{name} {split}")
        results, problems = check_datalist(lists / f"{name}.json", root, root, allowed_labels=(0, 1, 2),
                                           organ_labels=(1,))
        assert problems == [] and all(r.ok for r in results), [r.problems for r in results]
    checked = run("scripts/check_data.py", "--json_dir", str(lists / "healthy.json"),
                  "--train_dir", str(root), "--val_dir", str(root))
    assert "6 case(s) checked" in checked and "6 ok, 0 with problems" in checked


def test_phantom_root_lists_are_reproduced_and_check_clean(phantom_root, tmp_path):
    """make_datafolds on the built-in phantom root gives the phantom's healthy and chest lists,
    and the checker passes every datalist the phantom root ships."""
    out = tmp_path / "lists"
    assert make_datafolds.main(["--data_root", str(phantom_root), "--out_dir", str(out), "--k", "2"]) == 0
    assert make_datafolds.main(["--data_root", str(phantom_root), "--out_dir", str(out), "--organ", "lung"]) == 0
    for name in ("healthy", "chest"):
        mine = json.loads((out / f"{name}.json").read_text())
        theirs = json.loads((phantom_root / "datafolds" / f"{name}.json").read_text())
        for split in ("training", "validation"):
            assert sorted(map(json.dumps, mine[split])) == sorted(map(json.dumps, theirs[split])), (name, split)
    for path in sorted((phantom_root / "datafolds").glob("*.json")):
        results, _ = check_datalist(path, phantom_root, phantom_root, allowed_labels=declared_labels(path),
                                    organ_labels=(1,))
        assert results and all(r.ok for r in results), (path.name, [r.problems for r in results if not r.ok])


@pytest.mark.slow
def test_chain_on_a_raw_phantom_root_trains_with_main_syn(tmp_path):
    """Raw phantom root (BTCV-style multi-organ labels, LiTS-style tumor cases, no converted
    labels, no datalists) -> transfer_label -> make_datafolds -> check_data -> one epoch of
    ``main.py --syn`` on the generated healthy.json, all as the user would type them."""
    import os

    import torch

    from labelfree.phantom import make_phantom_dataset

    root = tmp_path / "root"
    make_phantom_dataset(root, n_healthy=2, n_tumor=1, n_chest_healthy=0, n_chest_nodule=0, seed=0,
                         spacing=(5.0, 5.0, 5.0), previews=False, progress=False)
    shutil.rmtree(root / "label")
    shutil.rmtree(root / "datafolds")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}

    def run(*cmd: str) -> str:
        result = subprocess.run([sys.executable, *cmd], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    run("transfer_label.py", "--data_path", str(root))
    run("-m", "datafolds.make_datafolds", "--data_root", str(root), "--k", "0")
    datalist = root / "datafolds" / "healthy.json"
    run("scripts/check_data.py", "--json_dir", str(datalist), "--train_dir", str(root), "--val_dir", str(root))
    logdir = tmp_path / "runs" / "synt.no_pretrain.unet0"
    run("main.py", "--syn", "--json_dir", str(datalist), "--train_dir", str(root), "--val_dir", str(root),
        "--logdir", str(logdir), "--save_checkpoint", "--max_epochs", "1", "--val_every", "1", "--batch_size", "1",
        "--roi_x", "32", "--roi_y", "32", "--roi_z", "32", "--space_x", "5", "--space_y", "5", "--space_z", "5",
        "--workers", "0", "--warmup_epochs", "1")
    state = torch.load(logdir / "model_final.pt", map_location="cpu", weights_only=True)
    assert state["args"]["syn"] is True and state["args"]["json_dir"] == str(datalist)
    assert (logdir / "model.pt").is_file()
