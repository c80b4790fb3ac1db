"""nnU-Net v2: an offline dataset passes nnU-Net's checks and plans; the on-the-fly trainer paints batches.

Needs the ``nnunet`` extra (``pip install -e ".[nnunet]"``). Runs nnU-Net's own integrity
check, fingerprinting, planning and preprocessing on a tiny phantom dataset (4 cases of
about 68 x 52 x 36 voxels at 5 mm), then its trainer on CPU. nnU-Net runs these steps in a
"spawn" process pool, which re-imports torch and nnU-Net in every worker; the tests give it
a thread pool instead (same code, same results, no re-import).
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.pool

import numpy as np
import pytest

nnunetv2 = pytest.importorskip("nnunetv2", reason="the nnunet extra is not installed (pip install -e '.[nnunet]')")
torch = pytest.importorskip("torch")

from labelfree.io.atomic import save_nifti_atomic, write_json_atomic  # noqa: E402
from labelfree.apps.offline.generate import main as synthesize  # noqa: E402
from labelfree.phantom.case import generate_case  # noqa: E402

DATASET = "Dataset987_LabelfreeTest"


class _ThreadContext:
    """Stands in for ``multiprocessing.get_context("spawn")``: a thread pool with the same API."""

    Pool = multiprocessing.pool.ThreadPool


@pytest.fixture(scope="module")
def nnunet_dirs(tmp_path_factory):
    """Raw dataset written by labelfree-synthesize, then checked, planned and preprocessed by nnU-Net."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("nnunet")
    dirs = {k: root / k for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for key, path in dirs.items():
        mp.setenv(key, str(path))
    # The planner sets torch's thread count from this; the trainer tests set 0 (augmentation in-process).
    mp.setenv("nnUNet_n_proc_DA", "1")
    mp.setattr(multiprocessing, "get_context", lambda method=None: _ThreadContext)

    src = root / "src"
    training = []
    for i in range(2):
        case = generate_case("abdomen", seed=20 + i, spacing=(5.0, 5.0, 5.0))
        save_nifti_atomic(case.image, case.affine, src / f"h{i}.nii.gz", dtype=np.int16)
        save_nifti_atomic(case.label, case.affine, src / f"h{i}_liver.nii.gz", dtype=np.uint8)
        training.append({"image": f"h{i}.nii.gz", "label": f"h{i}_liver.nii.gz"})
    write_json_atomic(src / "list.json", {"training": training})
    assert synthesize(["--json_dir", str(src / "list.json"), "--train_dir", str(src), "--out", str(dirs["nnUNet_raw"]),
                       "--copies", "1", "--include_source", "--nnunet_dataset", DATASET, "--workers", "1",
                       "--no_progress", "--tumor_prob", "0", "0", "0.5", "0.5", "0"]) == 0

    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )

    dataset_id = int(DATASET[7:10])
    threads = torch.get_num_threads()
    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=True, verbose=False)
    plan_experiments([dataset_id])
    preprocess([dataset_id], configurations=("3d_fullres",), num_processes=(1,), verbose=False)
    torch.set_num_threads(threads)
    mp.setenv("nnUNet_n_proc_DA", "0")  # data augmentation in the main process: reproducible, no workers
    yield dirs
    mp.undo()


def test_offline_dataset_passes_integrity_check_and_preprocesses(nnunet_dirs):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    raw = nnunet_dirs["nnUNet_raw"] / DATASET
    verify_dataset_integrity(str(raw), num_processes=1)  # raises on any problem
    pre = nnunet_dirs["nnUNet_preprocessed"] / DATASET
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["normalization_schemes"] == ["CTNormalization"]
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    folder = str(pre / "nnUNetPlans_3d_fullres")
    dataset = infer_dataset_class(folder)(folder)
    assert sorted(dataset.identifiers) == ["h0_src", "h0_syn00", "h1_src", "h1_syn00"]
    for identifier in dataset.identifiers:
        _, seg, _, _ = dataset.load_case(identifier)
        values = set(np.unique(np.asarray(seg[:])).tolist()) - {-1}
        assert values == ({0, 1, 2} if "_syn" in identifier else {0, 1}), identifier


def _trainer(nnunet_dirs, cls_name="nnUNetTrainerSynTumor"):
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from labelfree.apps.nnunet.install import MODULE_NAME, install_trainers, nnunet_trainer_package, uninstall_trainers

    # The documented step (labelfree-nnunet install), undone afterwards unless it was already there.
    was_installed = (nnunet_trainer_package() / MODULE_NAME).is_file()
    install_trainers()
    try:  # found by name, as nnUNetv2_train finds it
        cls = recursive_find_trainer_class_by_name(cls_name)
    finally:
        if not was_installed:
            uninstall_trainers()
    pre = nnunet_dirs["nnUNet_preprocessed"] / DATASET
    plans = load_json(str(pre / "nnUNetPlans.json"))
    # A tiny network and patch keep CPU steps short; the data and the pipeline are nnU-Net's own.
    config = plans["configurations"]["3d_fullres"]
    config["patch_size"] = [32, 32, 32]
    config["architecture"]["arch_kwargs"]["features_per_stage"] = [4, 8, 16, 32]
    plans["plans_name"] = "nnUNetPlansTiny"
    plans["continue_training"] = False
    return cls(plans, "3d_fullres", "all", load_json(str(pre / "dataset.json")), device=torch.device("cpu"))


def test_trainer_is_found_by_name_and_paints_healthy_batches(nnunet_dirs):
    from labelfree.apps.nnunet.trainer import nnUNetTrainerSynTumor

    trainer = _trainer(nnunet_dirs)
    assert isinstance(trainer, nnUNetTrainerSynTumor)
    np.random.seed(0)
    torch.manual_seed(0)
    trainer.on_train_start()
    try:
        healthy_with_tumor, losses = 0, []
        for step in range(6):
            batch = next(trainer.dataloader_train)
            target = batch["target"][0] if isinstance(batch["target"], list) else batch["target"]
            for key, sample in zip(batch["keys"], target):
                if key.endswith("_src"):  # a healthy case: every tumor voxel in its patch is synthetic
                    healthy_with_tumor += int((sample == 2).any())
            if step < 2:
                losses.append(float(trainer.train_step(batch)["loss"]))
    finally:
        trainer.on_train_end()
    assert healthy_with_tumor >= 1
    assert all(np.isfinite(losses))


def test_painter_on_a_preprocessed_case_in_hu_and_reproducible(nnunet_dirs):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    trainer = _trainer(nnunet_dirs)
    trainer.dataset_class = None
    painter = trainer.build_patch_painter()
    painter.prob = 1.0
    folder = str(nnunet_dirs["nnUNet_preprocessed"] / DATASET / "nnUNetPlans_3d_fullres")
    data, seg, _, _ = infer_dataset_class(folder)(folder).load_case("h0_src")
    image0, seg0 = np.asarray(data[:], dtype=np.float32), np.asarray(seg[:]).astype(np.int16)
    results = []
    for _ in range(2):
        image, label = image0.copy(), seg0.copy()
        rng = np.random.RandomState(5)
        assert painter(image, label, rng)
        results.append((image, label))
    (image, label), (image_b, label_b) = results
    np.testing.assert_array_equal(image, image_b)
    np.testing.assert_array_equal(label, label_b)
    tumor = label[0] == 2
    assert tumor.any() and np.all(seg0[0][tumor] == 1)  # only inside the organ
    np.testing.assert_array_equal(image[0][seg0[0] != 1], image0[0][seg0[0] != 1])  # nothing outside it changes
    window = painter.window
    hu_before, hu_after = window.to_hu(image0[0][tumor]), window.to_hu(image[0][tumor])
    assert hu_after.mean() < hu_before.mean() - 20  # darker, in HU
    assert hu_after.min() >= window.lower - 1e-3 and hu_after.max() <= window.upper + 1e-3  # nnU-Net's window
