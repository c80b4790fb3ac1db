"""Diffusion synthesis in the framework: syn_train.py --model diffusion, its model file, main.py --synthesis diffusion."""

from __future__ import annotations

import json

import pytest
import torch

from labelfree.cli import syn_train
from labelfree.cli import train as train_cli
from labelfree.config.settings import RunSettings
from labelfree.io.checkpoint import load_checkpoint, save_checkpoint
from labelfree.training.events import read_scalars
from labelfree.training.generator import (
    DIFFUSION_KIND,
    GENERATOR_KIND,
    DiffusionSynthesis,
    read_generator,
)
from tests.helpers.training import SMALL, data_flags, make_root
from tumor_synthesis.diffusion import DiffusionConfig, TumorDiffusion
from tumor_synthesis.learned import GeneratorConfig, TumorGenerator

#: 16^3 crops around the tumors, two UNet levels of 8 and 16 channels, 2 sampling steps: seconds on a CPU.
DIFF_SMALL = ["--roi_x", "16", "--roi_y", "16", "--roi_z", "16", "--space_x", "3", "--space_y", "3", "--space_z", "3",
              "--workers", "0", "--gen_channels", "8", "16", "--syn_steps", "2", "--steps_per_epoch", "2",
              "--device", "cpu"]
CONFIG = DiffusionConfig(organ="liver", window=(-21.0, 189.0), spacing=(3.0, 3.0, 3.0), sign=-1, channels=(8, 16),
                         roi=(16, 16, 16), steps=2)


class RunsCode:
    """An object a plain weights file cannot hold: unpickling it would import and call this class."""


@pytest.fixture(scope="module")
def diff_root(tmp_path_factory):
    """Healthy training cases and real tumor cases (their own datalist)."""
    root = tmp_path_factory.mktemp("diff_root")
    make_root(root, n_train=2, n_val=2)
    datalist = json.loads((root / "datalist.json").read_text())
    (root / "real.json").write_text(json.dumps({"training": datalist["validation"]}))
    return root


def _flags(root, logdir, *more):
    return ["--model", "diffusion", "--train_dir", str(root), "--json_dir", str(root / "real.json"), *DIFF_SMALL,
            "--logdir", str(logdir), *more]


@pytest.fixture(scope="module")
def diffusion_16(diff_root, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("diff16")
    syn_train.main(_flags(diff_root, logdir, "--max_epochs", "1"))
    return logdir / "diffusion.pt"


def test_syn_train_writes_a_diffusion_model_file_that_says_its_kind(diffusion_16):
    checkpoint = load_checkpoint(diffusion_16)
    assert checkpoint["kind"] == DIFFUSION_KIND and checkpoint["global_step"] == 2
    state = read_generator(diffusion_16, synthesis="diffusion")
    assert state.config == CONFIG
    with pytest.raises(Exception, match="is a diffusion model \\(syn_train.py --model diffusion\\)"):
        read_generator(diffusion_16)  # --synthesis gan's reading


@pytest.mark.slow
def test_syn_train_diffusion_logs_losses_and_previews_and_resumes_exactly(diff_root, tmp_path, capsys):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    syn_train.main(_flags(diff_root, straight, "--max_epochs", "2", "--preview_every", "1"))
    syn_train.main(_flags(diff_root, stopped, "--max_epochs", "1"))
    syn_train.main(_flags(diff_root, stopped, "--max_epochs", "2", "--resume"))
    assert "continuing at epoch 1" in capsys.readouterr().out
    a, b = load_checkpoint(straight / "diffusion.pt"), load_checkpoint(stopped / "diffusion.pt")
    assert a["epoch"] == b["epoch"] == 1 and a["global_step"] == b["global_step"] == 4
    for name, tensor in a["state_dict"].items():
        assert torch.allclose(tensor, b["state_dict"][name], atol=1e-6), name
    scalars = read_scalars(straight)
    assert [step for step, _ in scalars["diffusion/loss"]] == [0, 1]
    from tests.tumor_synthesis.test_learned import _image_tags

    assert _image_tags(straight) == {"diffusion/preview"}


@pytest.mark.parametrize("flags, message", [
    (["--segmentor", "x.pt"], "--segmentor belong(s) to the other model: drop it with --model diffusion"),
    (["--healthy_json", "h.json"], "--healthy_json is the gan's second stream"),
    (["--gen_channels", "8", "12"], "multiples of 8"),
    (["--syn_steps", "0"], "sampling steps must be in 1..1000"),
])
def test_syn_train_diffusion_rejects_bad_flags_before_any_work(diff_root, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as e:
        syn_train.main(_flags(diff_root, tmp_path / "run", *flags))
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_syn_train_gan_refuses_the_diffusion_flags(diff_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        syn_train.main(["--train_dir", str(diff_root), "--seg_weight", "0", "--steps_per_epoch", "3",
                        "--logdir", str(tmp_path / "run")])
    assert e.value.code == 2
    assert "--steps_per_epoch belong(s) to the other model: drop it with --model gan" in capsys.readouterr().err


def _bad_files(tmp_path, diffusion_16):
    gan = tmp_path / "generator.pt"
    config = GeneratorConfig(organ="liver", window=(-21.0, 189.0), spacing=(3.0, 3.0, 3.0), sign=-1, channels=(8, 16),
                             roi=(32, 32, 32))
    save_checkpoint(gan, kind=GENERATOR_KIND, generator_config=config.to_dict(),
                    state_dict=TumorGenerator(config).state_dict())
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"kind": DIFFUSION_KIND, "diffusion_config": CONFIG.to_dict(), "hook": RunsCode()}, unsafe)
    lung = tmp_path / "lung.pt"
    lung_config = DiffusionConfig(**{**CONFIG.__dict__, "organ": "lung", "window": (-1000.0, 500.0), "sign": 1})
    save_checkpoint(lung, kind=DIFFUSION_KIND, diffusion_config=lung_config.to_dict(),
                    state_dict=TumorDiffusion(lung_config).net.state_dict())
    return {"gan": gan, "unsafe": unsafe, "lung": lung, "good": diffusion_16, "missing": tmp_path / "nope.pt"}


@pytest.mark.parametrize("flags, message", [
    (["--synthesis", "diffusion"], ("--synthesis diffusion repaints tumors with a trained diffusion model: give "
                                    "--syn_generator PATH (the diffusion.pt that syn_train.py --model diffusion writes)")),
    (["--synthesis", "diffusion", "--syn_generator", "{missing}"], "--syn_generator file not found"),
    (["--synthesis", "diffusion", "--syn_generator", "{gan}"],
     ("generator.pt is a gan model (syn_train.py --model gan); --synthesis diffusion needs one of syn_train.py "
      "--model diffusion")),
    (["--synthesis", "gan", "--syn_generator", "{good}"], "diffusion.pt is a diffusion model"),
    (["--synthesis", "diffusion", "--syn_generator", "{unsafe}"], "unsafe.pt refused: it is not a plain weights file"),
    (["--synthesis", "diffusion", "--syn_generator", "{lung}"],
     "lung.pt was saved with --organ lung (this run: liver)"),
    (["--synthesis", "diffusion", "--syn_generator", "{good}", "--space_x", "2"],
     "was saved with --space_x 3.0 (this run: 2.0)"),
    (["--synthesis", "gan", "--syn_generator", "{gan}", "--syn_steps", "4"],
     "--syn_steps is the diffusion model's sampling steps: it needs --synthesis diffusion"),
    (["--synthesis", "diffusion", "--syn_generator", "{good}", "--syn_steps", "0"], "--syn_steps must be at least 1"),
])
def test_main_refuses_bad_diffusion_files_in_one_line_before_work(diff_root, diffusion_16, tmp_path, capsys, flags,
                                                                  message):
    paths = _bad_files(tmp_path, diffusion_16)
    with pytest.raises(SystemExit) as e:
        train_cli.main([*data_flags(diff_root), *SMALL, "--logdir", str(tmp_path / "run"), "--save_checkpoint",
                        "--syn", *[f.format(**paths) for f in flags]])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def _engine_batch():
    """Healthy crops (organ block), the engine's darker cube inside the organ of crop 0 plus one exophytic
    voxel; crop 1 untouched."""
    g = torch.Generator().manual_seed(0)
    healthy = 0.3 + 0.4 * torch.rand(2, 1, 24, 24, 24, generator=g)
    healthy_label = torch.zeros(2, 1, 24, 24, 24, dtype=torch.uint8)
    healthy_label[:, :, 4:20, 4:20, 4:20] = 1
    label, image = healthy_label.clone(), healthy.clone()
    label[0, :, 10:14, 10:14, 10:14] = 2
    image[0, :, 10:14, 10:14, 10:14] -= 0.2
    label[0, :, 1, 1, 1] = 2
    image[0, :, 1, 1, 1] -= 0.2
    return image, label, healthy, healthy_label


def test_diffusion_synthesis_repaints_only_synthetic_tumor_voxels_and_is_reproducible(diffusion_16):
    model = read_generator(diffusion_16, synthesis="diffusion").build()
    paint = DiffusionSynthesis(model, tumor_labels=[2], steps=2, seed=0)
    image, label, healthy, healthy_label = _engine_batch()
    out_image, out_label = paint(image, label, healthy, healthy_label)
    region = (label == 2) & (healthy_label > 0)
    assert torch.equal(out_image[1], image[1]) and torch.equal(out_label[1], label[1])  # no synthetic tumor: as is
    assert torch.equal(out_image[0][~region[0]], healthy[0][~region[0]])  # the engine's change outside: undone
    assert ((out_image - healthy)[region] <= 0).all()  # liver tumors: darker or equal
    assert out_label[0, 0, 1, 1, 1] == 0 and torch.equal(out_label[region], label[region])  # exophytic voxel: healthy
    again, _ = paint(image, label, healthy, healthy_label)
    assert torch.equal(again, out_image)  # the same crop is painted the same (exact resume)


@pytest.mark.slow
def test_main_trains_one_epoch_with_the_diffusion_model_and_quality_control_on_cpu(diff_root, diffusion_16, tmp_path,
                                                                                   capsys):
    logdir = tmp_path / "run"
    settings = RunSettings.create("liver", spacing=(3.0, 3.0, 3.0), roi=(32, 32, 32))
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "seg32.pt", state_dict=settings.build_model().state_dict(),
                    settings=settings.to_dict(), epoch=0)
    train_cli.main([*data_flags(diff_root), *SMALL, "--syn", "--synthesis", "diffusion", "--syn_generator",
                    str(diffusion_16), "--syn_steps", "2", "--syn_qc", str(tmp_path / "seg32.pt"), "--max_epochs", "1",
                    "--batch_size", "2", "--logdir", str(logdir), "--save_checkpoint", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "repainted in the training step by the diffusion model" in out and "qc kept" in out
    saved = load_checkpoint(logdir / "model_final.pt")["args"]
    assert saved["synthesis"] == "diffusion" and saved["syn_steps"] == 2


@pytest.mark.slow
def test_the_realism_tool_paints_whole_cases_with_the_diffusion_model_inside_the_organ_only(diff_root, diffusion_16):
    import argparse

    from labelfree.apps.realism.cli import case_loader, make_synthesizer
    from tumor_synthesis.organs import get_organ_profile

    profile = get_organ_profile("liver")
    args = argparse.Namespace(synthesis="diffusion", syn_generator=str(diffusion_16), syn_steps=2,
                              space=(3.0, 3.0, 3.0), type_mix=None, syn_rim_mm=None, syn_label_edge=None, seed=0)
    case = case_loader(profile, (3.0, 3.0, 3.0))({"image": str(diff_root / "img/train0.nii.gz"),
                                                  "label": str(diff_root / "label/train0.nii.gz")})
    outputs = [make_synthesizer(args, profile)({"image": case["image"], "label": case["label"]}) for _ in range(2)]
    out = outputs[0]
    healthy, image = case["image"].as_tensor().float(), out["image"]
    organ = case["label"].as_tensor() == 1
    tumor = out["label"] == 2
    assert tumor.any()
    assert torch.equal(image[~organ], healthy[~organ])
    assert (image[tumor] <= healthy[tumor]).all()  # never brighter, as the liver profile says
    assert torch.equal(outputs[1]["image"], image)  # --seed reproduces the draw
    args.space = (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match=r"trained for other crops: --space_x 3.0 \(this run: 2.0\)"):
        make_synthesizer(args, profile)


@pytest.mark.slow
def test_syn_train_diffusion_runs_under_torchrun_with_two_gloo_ranks(diff_root, tmp_path):
    from tests.helpers.training import free_port, run_cli

    logdir = tmp_path / "ddp"
    result = run_cli(["-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
                      "syn_train.py", *_flags(diff_root, logdir, "--max_epochs", "1", "--batch_size", "1")],
                     env_extra={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout and result.stdout.count("diffusion model: ") == 1  # only rank 0 prints
    checkpoint = load_checkpoint(logdir / "diffusion.pt")
    assert checkpoint["epoch"] == 0 and checkpoint["global_step"] == 2  # 2 steps per epoch on each rank
    assert not any(k.startswith("module.") for k in checkpoint["state_dict"])  # unwrapped from DDP
    read_generator(logdir / "diffusion.pt", synthesis="diffusion")  # what main.py --syn_generator reads
