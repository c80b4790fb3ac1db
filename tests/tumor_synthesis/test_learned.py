"""Learned synthesis (FreeTumor): the generator's invariants, one training step, syn_train.py, main.py --synthesis gan."""

from __future__ import annotations

import json

import pytest
import torch

from labelfree.cli import syn_train
from labelfree.cli import train as train_cli
from labelfree.io.checkpoint import load_checkpoint, save_checkpoint
from labelfree.config.settings import RunSettings
from labelfree.training.generator import LearnedSynthesis, read_generator
from tumor_synthesis.learned import (REAL_TUMOR, SYNTHETIC_TUMOR, GeneratorConfig, TumorGenerator,
                                     build_discriminator, discriminator_loss, discriminator_targets, generator_loss,
                                     paint_volume, synthetic_tumor_mask)

from labelfree.training.events import read_scalars
from tests.helpers.training import SMALL, data_flags, free_port, make_root, run_cli

LIVER = GeneratorConfig(organ="liver", window=(-21.0, 189.0), spacing=(3.0, 3.0, 3.0), sign=-1, channels=(8, 16),
                        roi=(16, 16, 16))


def _crops(n=2, size=16, seed=0):
    """Healthy crops with an organ block; the engine's tumor is a darker cube inside it (and one voxel outside)."""
    g = torch.Generator().manual_seed(seed)
    healthy = 0.3 + 0.4 * torch.rand(n, 1, size, size, size, generator=g)
    healthy_label = torch.zeros(n, 1, size, size, size, dtype=torch.uint8)
    organ, tumor = slice(3, size - 3), slice(size // 2 - 2, size // 2 + 2)
    healthy_label[:, :, organ, organ, organ] = 1
    label, engine = healthy_label.clone(), healthy.clone()
    label[:, :, tumor, tumor, tumor] = 2
    engine[:, :, tumor, tumor, tumor] -= 0.2
    label[:, :, 1, 1, 1] = 2  # an exophytic voxel the engine put outside the organ
    engine[:, :, 1, 1, 1] -= 0.2
    return healthy, engine, label, healthy_label


def _random_generator(config=LIVER, seed=0):
    torch.manual_seed(seed)
    generator = TumorGenerator(config)
    with torch.no_grad():  # a generator far from its initialisation: large, varied offsets
        for p in generator.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return generator


def _parity_contrast(net: torch.nn.Module, in_channels: int) -> float:
    """Mean |output at even - output at odd index| along each axis, for a uniform input, away from the border.

    A uniform input has no structure: what alternates voxel by voxel is the network's own checkerboard.
    """
    net.eval()
    with torch.no_grad():
        y = net(torch.full((1, in_channels, 32, 32, 32), 0.5))[0, 0, 8:-8, 8:-8, 8:-8]
    even, odd = torch.arange(0, 16, 2), torch.arange(1, 16, 2)
    return max((y.index_select(axis, even) - y.index_select(axis, odd)).abs().mean().item() for axis in range(3))


def test_the_generator_and_discriminator_paint_no_checkerboard():
    """The decoders upsample by interpolation: MONAI's transposed-convolution UNet fails the same measure."""
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    transposed = UNet(3, 3, 1, (16, 32, 64), (2, 2), num_res_units=1, norm="instance")
    assert _parity_contrast(transposed, 3) > 0.3  # the measure sees a checkerboard where there is one
    torch.manual_seed(0)
    generator = TumorGenerator(GeneratorConfig(organ="liver", window=(-21.0, 189.0), spacing=(2.0, 2.0, 2.0),
                                               sign=-1))
    assert _parity_contrast(generator.net, 3) < 0.1
    assert _parity_contrast(build_discriminator(), 1) < 0.1


@pytest.mark.parametrize("config", [LIVER, GeneratorConfig(organ="lung", window=(-1000.0, 500.0), sign=1,
                                                           spacing=(3.0, 3.0, 3.0), channels=(8, 16))])
def test_the_generator_changes_no_voxel_outside_the_organ_and_keeps_the_organ_profile_sign(config):
    healthy, engine, label, healthy_label = _crops()
    mask = synthetic_tumor_mask(label, healthy_label, [2])
    organ = healthy_label > 0
    painted = _random_generator(config)(healthy, engine, mask, organ)
    assert torch.equal(painted[~organ], healthy[~organ])
    change = painted - healthy
    inside = mask & organ
    assert change[inside].abs().max() > 0.01  # it paints
    assert (torch.sign(change[change != 0]) == config.sign).all()  # darker (liver) / brighter (lung) only
    assert change.abs().max() <= config.max_offset + 1e-6
    assert painted.min() >= 0 and painted.max() <= 1  # stays in the window, as real CT does


def test_learned_synthesis_repaints_only_crops_with_synthetic_tumor_and_drops_labels_outside_the_organ():
    healthy, engine, label, healthy_label = _crops(n=3)
    label[2], engine[2] = healthy_label[2], healthy[2]  # crop 2: nothing painted by the engine
    image, new_label = LearnedSynthesis(_random_generator(), [2])(engine, label, healthy, healthy_label)
    assert torch.equal(image[2], healthy[2]) and torch.equal(new_label[2], healthy_label[2])
    organ = healthy_label[:2] > 0
    assert torch.equal(image[:2][~organ], healthy[:2][~organ])  # the engine's exophytic voxel is healthy again
    assert (new_label[:, :, 1, 1, 1] == 0).all()
    assert torch.equal(new_label[:2][organ], label[:2][organ])
    assert not torch.equal(image[:2], engine[:2])


def test_painting_a_whole_volume_in_windows_changes_nothing_outside_the_organ():
    healthy, engine, label, healthy_label = _crops(n=1, size=24)
    mask = synthetic_tumor_mask(label, healthy_label, [2])
    organ = healthy_label > 0
    painted = paint_volume(_random_generator().eval(), healthy, engine, mask, organ)
    assert painted.shape == healthy.shape
    assert torch.equal(painted[~organ], healthy[~organ])
    assert (painted[mask & organ] < healthy[mask & organ]).float().mean() > 0.9


def _fixed_batch():
    healthy, engine, label, healthy_label = _crops(size=32)  # the segmentor UNet needs 32^3
    real_image = healthy.clone()
    real_label = healthy_label.clone()
    real_label[:, :, 18:21, 12:15, 14:17] = 2
    real_image[real_label == 2] -= 0.25
    return healthy, engine, label, healthy_label, real_image, real_label


def test_one_generator_step_lowers_its_loss_on_a_fixed_batch_and_one_discriminator_step_lowers_its_own():
    healthy, engine, label, healthy_label, real_image, real_label = _fixed_batch()
    mask, organ = synthetic_tumor_mask(label, healthy_label, [2]), healthy_label > 0
    torch.manual_seed(0)
    generator, discriminator = TumorGenerator(LIVER), build_discriminator((8, 16))
    segmentor = RunSettings.create("liver", spacing=(3.0, 3.0, 3.0), roi=(32, 32, 32)).build_model().eval()
    for p in list(segmentor.parameters()) + list(discriminator.parameters()):
        p.requires_grad_(False)

    def g_loss():
        painted = generator(healthy, engine, mask, organ)
        return generator_loss(discriminator(painted), segmentor(painted), label, mask, 0.1, 1.0)

    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-2)
    before, terms = g_loss()
    assert set(terms) == {"adversarial", "segmentor"}
    optimizer.zero_grad()
    before.backward()
    assert all(p.grad is not None for p in generator.parameters() if p.requires_grad)
    optimizer.step()
    with torch.no_grad():
        after, _ = g_loss()
    assert after < before

    for p in discriminator.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        painted = generator(healthy, engine, mask, organ)
    targets = [discriminator_targets(real_label == 2, REAL_TUMOR), discriminator_targets(mask, SYNTHETIC_TUMOR)]
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-2)
    d_before = discriminator_loss([discriminator(real_image), discriminator(painted)], targets)
    d_optimizer.zero_grad()
    d_before.backward()
    d_optimizer.step()
    with torch.no_grad():
        d_after = discriminator_loss([discriminator(real_image), discriminator(painted)], targets)
    assert d_after < d_before


def test_the_discriminator_loss_weighs_each_present_class_alike():
    logits = torch.zeros(1, 3, 4, 4, 4)
    logits[:, 0] = 5.0  # confident background everywhere
    target = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    target[0, 0, 0, 0] = REAL_TUMOR  # one real-tumor voxel of 64
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    expected = (ce[target == 0].mean() + ce[target == REAL_TUMOR].mean()) / 2
    assert torch.isclose(discriminator_loss([logits], [target]), expected)


# ------------------------------------------------------------------ syn_train.py and main.py
SYN_SMALL = [*SMALL[:-2], "--gen_channels", "8", "16", "--device", "cpu"]  # 32^3 crops: the segmentor's minimum


@pytest.fixture(scope="module")
def gan_root(tmp_path_factory):
    """Healthy training cases, real tumor cases (their own datalist) and a segmentor checkpoint."""
    root = tmp_path_factory.mktemp("gan_root")
    make_root(root, n_train=2, n_val=2)
    datalist = json.loads((root / "datalist.json").read_text())
    (root / "real.json").write_text(json.dumps({"training": datalist["validation"]}))
    torch.manual_seed(0)
    settings = RunSettings.create("liver", spacing=(3.0, 3.0, 3.0), roi=(32, 32, 32))
    save_checkpoint(root / "seg32.pt", state_dict=settings.build_model().state_dict(), settings=settings.to_dict(),
                    epoch=0)
    return root


def _syn_flags(root, logdir, *more):
    return ["--train_dir", str(root), "--json_dir", str(root / "real.json"), "--healthy_json",
            str(root / "datalist.json"), "--segmentor", str(root / "seg32.pt"), *SYN_SMALL, "--logdir", str(logdir),
            *more]


@pytest.mark.slow
def test_syn_train_writes_a_generator_losses_and_previews_and_resumes_where_it_stopped(gan_root, tmp_path, capsys):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    syn_train.main(_syn_flags(gan_root, straight, "--max_epochs", "2", "--preview_every", "1"))
    syn_train.main(_syn_flags(gan_root, stopped, "--max_epochs", "1"))
    syn_train.main(_syn_flags(gan_root, stopped, "--max_epochs", "2", "--resume"))
    assert "continuing at epoch 1" in capsys.readouterr().out
    a, b = load_checkpoint(straight / "generator.pt"), load_checkpoint(stopped / "generator.pt")
    assert a["epoch"] == b["epoch"] == 1 and a["global_step"] == b["global_step"] == 2
    for key in ("state_dict", "discriminator"):
        for name, tensor in a[key].items():
            assert torch.allclose(tensor, b[key][name], atol=1e-6), (key, name)
    # A finished run resumed with another learning rate: said in the one format of every resume, nothing trained.
    syn_train.main(_syn_flags(gan_root, stopped, "--max_epochs", "2", "--resume", "--lr", "1e-3"))
    out = capsys.readouterr().out
    assert (f"note: --resume checkpoint {stopped / 'generator.pt'} was saved with --lr 0.0002 (this run: 0.001); "
            "the networks' and optimizers' state come from the checkpoint") in out
    assert "nothing to train: 2 of 2 epochs already done" in out
    assert load_checkpoint(stopped / "generator.pt")["global_step"] == 2
    state = read_generator(straight / "generator.pt")
    assert state.config.roi == (32, 32, 32) and state.config.sign == -1 and state.config.channels == (8, 16)
    scalars = read_scalars(straight)
    assert {"generator/loss_d", "generator/loss_g", "generator/adversarial", "generator/segmentor"} <= set(scalars)
    assert [step for step, _ in scalars["generator/loss_g"]] == [0, 1]
    assert _image_tags(straight) == {"generator/preview"}


def _image_tags(logdir):
    from tensorboardX.proto import event_pb2

    tags = set()
    for path in logdir.glob("events.out.tfevents.*"):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            n = int.from_bytes(data[at:at + 8], "little")
            event = event_pb2.Event.FromString(data[at + 12:at + 12 + n])
            at += 12 + n + 4
            tags |= {v.tag for v in event.summary.value if v.HasField("image")}
    return tags


@pytest.mark.parametrize("flags, message", [
    (["--seg_weight", "1", "--segmentor", None], "the segmentor term needs --segmentor CKPT"),
    (["--segmentor", "{missing}"], "--segmentor file not found"),
    (["--roi_x", "33"], "must be multiples of 2"),
])
def test_syn_train_rejects_bad_flags_before_any_work(gan_root, tmp_path, capsys, flags, message):
    argv = _syn_flags(gan_root, tmp_path / "run")
    for flag, value in zip(flags[::2], flags[1::2]):
        at = argv.index(flag) if flag in argv else None
        if value is None:
            del argv[at:at + 2]
        elif at is None:
            argv += [flag, value.format(missing=tmp_path / "nope.pt")]
        else:
            argv[at + 1] = value.format(missing=tmp_path / "nope.pt")
    with pytest.raises(SystemExit) as e:
        syn_train.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def generator_32(gan_root, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("gen32")
    syn_train.main(["--train_dir", str(gan_root), "--json_dir", str(gan_root / "real.json"), "--healthy_json",
                    str(gan_root / "datalist.json"), "--segmentor", str(gan_root / "seg32.pt"), *SYN_SMALL,
                    "--max_epochs", "1", "--logdir", str(logdir)])
    return logdir / "generator.pt"


@pytest.mark.slow
def test_main_trains_with_the_generator_and_quality_control_on_cpu(gan_root, generator_32, tmp_path, capsys):
    logdir = tmp_path / "run"
    train_cli.main([*data_flags(gan_root), *SMALL, "--syn", "--synthesis", "gan", "--syn_generator", str(generator_32),
                    "--syn_qc", str(gan_root / "seg32.pt"), "--max_epochs", "1", "--batch_size", "2", "--logdir",
                    str(logdir), "--save_checkpoint", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "repainted in the training step by the generator" in out and "qc kept" in out
    saved = load_checkpoint(logdir / "model_final.pt")["args"]
    assert saved["synthesis"] == "gan" and saved["syn_generator"] == str(generator_32)
    assert "qc/acceptance_rate" in read_scalars(logdir)


@pytest.mark.parametrize("flags, message", [
    (["--syn", "--synthesis", "gan"], "--synthesis gan repaints tumors with a trained generator: give --syn_generator"),
    (["--syn", "--synthesis", "gan", "--syn_generator", "{missing}"], "--syn_generator file not found"),
    (["--syn", "--synthesis", "gan", "--syn_generator", "{segmentor}"], "is not a tumor generator checkpoint"),
    (["--syn", "--synthesis", "gan", "--syn_generator", "{generator}", "--space_x", "2"],
     "generator.pt was saved with --space_x 3.0 (this run: 2.0); a generator repaints crops of the organ, window "
     "and spacing it was trained on"),
    (["--syn", "--syn_generator", "{generator}"], "--syn_generator is the learned model's weights: it needs --synthesis gan"),
])
def test_main_rejects_a_missing_or_wrong_generator_before_training(gan_root, generator_32, tmp_path, capsys, flags,
                                                                 message):
    paths = {"missing": tmp_path / "nope.pt", "segmentor": gan_root / "seg32.pt", "generator": generator_32}
    with pytest.raises(SystemExit) as e:
        train_cli.main([*data_flags(gan_root), *SMALL, "--logdir", str(tmp_path / "run"), "--save_checkpoint",
                        *[f.format(**paths) for f in flags]])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_syn_train_runs_under_torchrun_with_two_gloo_ranks(gan_root, tmp_path):
    logdir = tmp_path / "ddp"
    result = run_cli(["-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
                      "syn_train.py", *_syn_flags(gan_root, logdir, "--max_epochs", "2", "--batch_size", "1")],
                     env_extra={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout and result.stdout.count("generator: ") == 1  # only rank 0 prints
    checkpoint = load_checkpoint(logdir / "generator.pt")
    # 2 healthy cases over 2 ranks, batch 1: one step per epoch and rank
    assert checkpoint["epoch"] == 1 and checkpoint["global_step"] == 2
    assert not any(k.startswith("module.") for k in checkpoint["state_dict"])  # unwrapped from DDP
    read_generator(logdir / "generator.pt")  # what main.py --syn_generator reads


def _save_generator(path, config):
    from labelfree.training.generator import GENERATOR_KIND

    save_checkpoint(path, kind=GENERATOR_KIND, generator_config=config.to_dict(),
                    state_dict=_random_generator(config).state_dict())
    return path


@pytest.mark.slow
def test_the_realism_tool_paints_whole_cases_with_the_generator_inside_the_organ_only(gan_root, tmp_path):
    import argparse

    from tumor_synthesis.organs import get_organ_profile
    from labelfree.apps.realism.cli import case_loader, make_synthesizer

    config = GeneratorConfig(organ="liver", window=(-21.0, 189.0), spacing=(3.0, 3.0, 3.0), sign=-1,
                             channels=(8, 16), roi=(32, 32, 32))
    path = _save_generator(tmp_path / "generator.pt", config)
    profile = get_organ_profile("liver")
    args = argparse.Namespace(synthesis="gan", syn_generator=str(path), space=(3.0, 3.0, 3.0), type_mix=None,
                              syn_rim_mm=None, syn_label_edge=None, seed=0)
    case = case_loader(profile, (3.0, 3.0, 3.0))({"image": str(gan_root / "img/train0.nii.gz"),
                                                  "label": str(gan_root / "label/train0.nii.gz")})
    out = make_synthesizer(args, profile)({"image": case["image"], "label": case["label"]})
    healthy, image = case["image"].as_tensor().float(), out["image"]
    organ = case["label"].as_tensor() == 1
    assert (out["label"] == 2).any()
    assert torch.equal(image[~organ], healthy[~organ])
    tumor = out["label"] == 2
    assert (image[tumor] < healthy[tumor]).float().mean() > 0.9  # darker, as the liver profile says
    args.space = (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match=r"trained for other crops: --space_x 3.0 \(this run: 2.0\); "
                                         r"--space_y 3.0 \(this run: 2.0\); --space_z 3.0 \(this run: 2.0\)"):
        make_synthesizer(args, profile)


def test_inside_label_painting_keeps_the_offset_inside_the_label():
    healthy, engine, label, healthy_label = _crops()
    mask = synthetic_tumor_mask(label, healthy_label, [2])
    organ = healthy_label > 0
    generator = _random_generator()
    blurred = generator(healthy, engine, mask, organ)
    assert (blurred != healthy)[~mask].any()  # the original: the offset spreads past the label
    inside = generator.paint_options({"inside_label": True})(healthy, engine, mask, organ)
    assert torch.equal(inside[~mask], healthy[~mask])
    assert torch.equal(inside[mask & organ] != healthy[mask & organ], blurred[mask & organ] != healthy[mask & organ])
    with pytest.raises(ValueError, match="unknown painting options"):
        generator.paint_options({"halo": 0})


def test_the_realistic_preset_reaches_the_generator_of_main_py_and_of_the_realism_tool(tmp_path):
    import argparse

    from labelfree.apps.realism.cli import make_synthesizer
    from labelfree.training.generator import load_learned_synthesis
    from tumor_synthesis.organs import get_organ_profile

    path = _save_generator(tmp_path / "generator.pt", LIVER)
    settings = RunSettings.create(organ="liver", spacing=(3.0, 3.0, 3.0), roi=(16, 16, 16))
    for preset, inside in (("original", False), ("realistic", True)):
        painter = load_learned_synthesis(str(path), settings, torch.device("cpu"), False, preset=preset)
        assert painter.generator.inside_label is inside
        args = argparse.Namespace(synthesis="gan", syn_generator=str(path), space=(3.0, 3.0, 3.0), type_mix=None,
                                  syn_rim_mm=None, syn_label_edge=None, seed=0, syn_preset=preset)
        synthesizer = make_synthesizer(args, get_organ_profile("liver"))
        assert synthesizer.generator.inside_label is inside and synthesizer.engine.preset == preset
