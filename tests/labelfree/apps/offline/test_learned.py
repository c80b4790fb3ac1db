"""labelfree-synthesize --synthesis gan / diffusion: a trained model repaints the offline copies (the real CLI on
phantom files on disk)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from labelfree.apps.offline.generate import main
from labelfree.io.checkpoint import save_checkpoint
from labelfree.training.generator import DIFFUSION_KIND
from tests.labelfree.apps.offline.test_generate import SPACING, _load, _write_cases
from tests.tumor_synthesis.test_learned import _save_generator
from tumor_synthesis.diffusion import DiffusionConfig, TumorDiffusion
from tumor_synthesis.learned import GeneratorConfig

#: The phantom's window and voxel size; two UNet levels of 8 and 16 channels on 16^3 crops: seconds on a CPU.
LIVER = {"organ": "liver", "window": (-21.0, 189.0), "spacing": SPACING, "sign": -1, "channels": (8, 16)}
HEALTHY = ("healthy_a", "healthy_b")


class RunsCode:
    """An object a plain weights file cannot hold: unpickling it would import and call this class."""


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("learned_src")
    datalist = _write_cases(root)
    listed = json.loads(datalist.read_text())["training"]
    (root / "real.json").write_text(json.dumps({"training": [e for e in listed if "tumor" in e["image"]]}))
    return root, datalist


@pytest.fixture(scope="module")
def models(source, tmp_path_factory):
    """A diffusion model trained by syn_train.py (one epoch of 2 steps on the real tumor case) and a generator."""
    from labelfree.cli import syn_train

    root, _ = source
    folder = tmp_path_factory.mktemp("learned_models")
    syn_train.main(["--model", "diffusion", "--train_dir", str(root), "--json_dir", str(root / "real.json"),
                    *[f for axis in "xyz" for f in (f"--roi_{axis}", "16")],
                    *[f for axis in "xyz" for f in (f"--space_{axis}", str(SPACING[0]))],
                    "--gen_channels", "8", "16", "--syn_steps", "2", "--steps_per_epoch", "2", "--max_epochs", "1",
                    "--workers", "0", "--device", "cpu", "--logdir", str(folder / "diffusion")])
    gan = _save_generator(folder / "generator.pt", GeneratorConfig(**LIVER, roi=(16, 16, 16)))
    return {"diffusion": folder / "diffusion" / "diffusion.pt", "gan": gan}


def _run(source, out: Path, *extra) -> int:
    root, datalist = source
    return main(["--json_dir", str(datalist), "--train_dir", str(root), "--out", str(out), "--no_progress", *extra])


def _pair(folder: Path, name: str):
    return _load(folder / "imagesTr" / f"{name}_0000.nii.gz")[0], _load(folder / "labelsTr" / f"{name}.nii.gz")[0]


@pytest.mark.parametrize("synthesis", ["gan", "diffusion"])
def test_the_model_repaints_the_engine_tumors_inside_the_organ_and_a_seed_reproduces_the_copy(source, models,
                                                                                             synthesis, tmp_path):
    root, _ = source
    flags = ("--copies", "1", "--seed", "5", "--synthesis", synthesis, "--syn_generator", str(models[synthesis]))
    assert _run(source, tmp_path / "raw", *flags, "--workers", "1", "--nnunet_dataset", "Dataset903_Learned") == 0
    learned = tmp_path / "raw" / "Dataset903_Learned"
    assert _run(source, tmp_path / "ellipsoid", "--copies", "1", "--seed", "5", "--workers", "1") == 0
    assert _run(source, tmp_path / "again", *flags, "--workers", "0") == 0
    for case in HEALTHY:
        src_image, src_label = _load(root / "img" / f"{case}.nii.gz")[0], _load(root / "lab" / f"{case}.nii.gz")[0]
        image, label = _pair(learned, f"{case}_syn00")
        tumor, changed = label == 2, image != src_image
        assert tumor.any() and changed.any()
        # The engine's shapes for the seed, as the ellipsoid copy has them; the label changes nowhere else.
        ellipsoid_image, ellipsoid_label = _pair(tmp_path / "ellipsoid", f"{case}_syn00")
        np.testing.assert_array_equal(label, ellipsoid_label)
        assert np.all(src_label[tumor] == 1)
        np.testing.assert_array_equal(label[~tumor], src_label[~tumor])
        # Only organ voxels change (the diffusion model: only tumor voxels), never brighter (the liver's sign).
        assert np.all(src_label[changed] == 1) and np.all(image[changed] <= src_image[changed])
        if synthesis == "diffusion":
            assert np.all(tumor[changed])
        assert not np.array_equal(image, ellipsoid_image)  # painted by the model, not the engine
        # The same seed paints the same copy (here with --workers 0, in this process).
        again_image, again_label = _pair(tmp_path / "again", f"{case}_syn00")
        np.testing.assert_array_equal(again_image, image)
        np.testing.assert_array_equal(again_label, label)
    entry = json.loads((learned / "dataset.json").read_text())["labelfree_synthesis"]
    steps = {"syn_steps": 2} if synthesis == "diffusion" else {}  # the model file's default
    assert entry == {"organ": "liver", "synthesis": synthesis, "syn_generator": str(models[synthesis].resolve()),
                     **steps}
    assert json.loads((learned / "lesions.json").read_text())["settings"]["generator"] == entry["syn_generator"]
    assert models[synthesis].name in json.loads((learned / "datalist.json").read_text())["description"]
    # The engine's own models record no painter: a folder written before these settings existed still resumes.
    assert "generator" not in json.loads((tmp_path / "ellipsoid" / "offline_config.json").read_text())["settings"]


def _bad_models(folder: Path) -> dict[str, Path]:
    """Model files that must be refused: unsafe, made for the lung, or for another voxel size."""
    unsafe = folder / "unsafe.pt"
    config = DiffusionConfig(**LIVER, roi=(16, 16, 16), steps=2)
    torch.save({"kind": DIFFUSION_KIND, "diffusion_config": config.to_dict(), "hook": RunsCode()}, unsafe)
    paths = {"unsafe": unsafe}
    for name, changes in (("lung", {"organ": "lung", "window": (-1000.0, 500.0), "sign": 1}),
                          ("coarse", {"spacing": (3.0, 3.0, 3.0)})):
        other = DiffusionConfig(**{**config.__dict__, **changes})
        save_checkpoint(folder / f"{name}.pt", kind=DIFFUSION_KIND, diffusion_config=other.to_dict(),
                        state_dict=TumorDiffusion(other).net.state_dict())
        paths[name] = folder / f"{name}.pt"
    return paths


@pytest.mark.parametrize("flags, message", [
    (["--synthesis", "diffusion", "--syn_generator", "{missing}"], "--syn_generator file not found: {missing}"),
    (["--synthesis", "diffusion", "--syn_generator", "{gan}"],
     ("generator.pt is a gan model (syn_train.py --model gan); --synthesis diffusion needs one of syn_train.py "
      "--model diffusion")),
    (["--synthesis", "diffusion", "--syn_generator", "{unsafe}"], "unsafe.pt refused: it is not a plain weights file"),
    (["--synthesis", "diffusion", "--syn_generator", "{lung}"],
     "lung.pt was trained for other crops: --organ lung (this run: liver)"),
    (["--synthesis", "diffusion", "--syn_generator", "{coarse}"],
     "coarse.pt was trained for other crops than case healthy_a (and 2 more): --space_x 3.0 (this run: 5.0)"),
    (["--synthesis", "gan"], "--synthesis gan repaints tumors with a trained generator: give --syn_generator"),
    (["--synthesis", "growth", "--syn_generator", "{gan}"],
     "--syn_generator is the learned model's weights: it needs --synthesis gan or diffusion"),
    (["--synthesis", "gan", "--syn_generator", "{gan}", "--syn_steps", "4"],
     "--syn_steps is the diffusion model's sampling steps: it needs --synthesis diffusion"),
    (["--synthesis", "diffusion", "--syn_generator", "{diffusion}", "--syn_steps", "0"],
     "--syn_steps must be at least 1, got 0"),
    (["--device", "cuda"], "--device cuda is where the trained model paints: it needs --synthesis gan or diffusion"),
    (["--synthesis", "diffusion", "--syn_generator", "{diffusion}", "--device", "tpu"],
     "--device 'tpu': use auto, cpu, cuda or cuda:N"),
])
def test_a_bad_model_file_or_flag_is_refused_in_one_line_before_any_output(source, models, tmp_path, capsys, flags,
                                                                          message):
    paths = {**{k: str(v) for k, v in models.items()}, **{k: str(v) for k, v in _bad_models(tmp_path).items()},
             "missing": str(tmp_path / "nope.pt")}
    out = tmp_path / "out"
    assert _run(source, out, *[f.format(**paths) for f in flags]) == 2
    err = capsys.readouterr().err
    assert message.format(**paths) in err, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert not out.exists() or not any(out.rglob("*"))


@pytest.mark.slow
def test_worker_processes_paint_the_copies_one_process_paints(source, models, tmp_path):
    flags = ("--copies", "2", "--seed", "1", "--synthesis", "diffusion", "--syn_generator", str(models["diffusion"]),
             "--syn_steps", "1")
    assert _run(source, tmp_path / "one", *flags, "--workers", "1") == 0
    assert _run(source, tmp_path / "two", *flags, "--workers", "2") == 0
    names = sorted(p.name for p in (tmp_path / "one" / "imagesTr").iterdir())
    assert len(names) == 4 and names == sorted(p.name for p in (tmp_path / "two" / "imagesTr").iterdir())
    for name in names:
        np.testing.assert_array_equal(_load(tmp_path / "one" / "imagesTr" / name)[0],
                                      _load(tmp_path / "two" / "imagesTr" / name)[0])
